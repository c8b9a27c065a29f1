"""Data for training: VAP pretraining crops and the feature cache the timing head trains on.

All arrays run on the 80 ms frame clock (``backchannel.frames``); lengths are in frames unless a name
says ``_seconds``. Rows come from prepared corpora (``backchannel corpus prepare``, read with
``corpora.dataset.load_prepared``).

Backbone inputs are ``backchannel.inputs.FrameInputs`` (one schema for rows, crops and streaming).

- :class:`RowStore`: the rows of one or more corpora/splits held compactly in memory, cut
  into crops by :class:`CropSampler` (random ``[20, 40]`` s crops, one length per batch, corpora
  mixed by weight; deterministic given ``seed`` and the epoch).
- :class:`PretrainDataModule`: VAP pretraining batches from the train splits; dev = fixed chunks.
- :func:`build_feature_cache` / :class:`HeadDataModule`: the frozen backbone is run once over every
  row; hidden states are stored as a ``datasets`` Dataset on disk, keyed by backbone name,
  checkpoint hash and corpus manifest fingerprint, and re-used while the key matches.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from backchannel.corpora.dataset import load_prepared
from backchannel.corpora.events import BACKCHANNEL
from backchannel.corpora.framing import heard_listener
from datasets import Array2D, Dataset, Features, List, Value
from datasets.arrow_writer import ArrowWriter
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from backchannel.backbones.timing import IGNORE_INDEX, vap_bin_weights, vap_targets
from backchannel.frames import FRAME_S
from backchannel.inputs import FrameInputs, pad_stack
from backchannel.lexicon import BC_TYPES
from backchannel.text import VOCAB_SIZE, WORDS_PER_FRAME, TextTokenizer, tokenizer_for

VAP_HORIZON = vap_bin_weights().shape[0]  # 25 frames (2 s) of future needed for a VAP target
CACHE_FORMAT = "backchannel.feature-cache/2"


# --------------------------------------------------------------------------- one row

# --------------------------------------------------------------------------- rows in memory

@dataclass
class StoredRow:
    """One (dialogue, listener) row held for cropping: its compact ``FrameInputs`` (absent prosody None,
    text ids int16) and its pauses."""

    corpus: str
    dialogue: str
    listener: str
    inputs: FrameInputs
    hold_pauses: np.ndarray  # [k, 2] seconds
    shift_pauses: np.ndarray  # [k, 2] seconds

    def __len__(self) -> int:
        return self.inputs.n_frames

    @property
    def va_listener(self) -> np.ndarray:
        return self.inputs.va_listener.numpy()

    @property
    def va_speaker(self) -> np.ndarray:
        return self.inputs.va_speaker.numpy()

    def pauses_in(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Hold and shift pauses lying inside frames ``start:stop``, in seconds from the crop start."""
        t0, t1 = start * FRAME_S, stop * FRAME_S

        def inside(p):
            p = p[(p[:, 0] >= t0) & (p[:, 1] <= t1)] if len(p) else p
            return (p - t0).reshape(-1, 2)
        return inside(self.hold_pauses), inside(self.shift_pauses)


def select_rows(n_rows: int, max_rows: int | None, seed: int, tag: str) -> list[int]:
    """Indices of the rows to use: all, or a seeded random subset of ``max_rows`` (sorted)."""
    if max_rows is None or max_rows >= n_rows:
        return list(range(n_rows))
    rng = np.random.default_rng([seed, int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16)])
    return sorted(rng.choice(n_rows, max_rows, replace=False).tolist())


class RowStore:
    """Rows of the given ``split`` of prepared corpora (folders), loaded once into numpy arrays.

    ``tokenizer=None`` leaves out the text stream. ``max_rows``: per corpus name, use a seeded random
    subset of that many rows. ``manifests``: corpus name -> manifest of its prepared folder.
    """

    def __init__(self, corpora: Sequence[str | Path], split: str, tokenizer: TextTokenizer | None,
                 max_rows: Mapping[str, int] | None = None, seed: int = 0, progress: bool = True):
        self.rows: list[StoredRow] = []
        self.manifests: dict[str, dict] = {}
        for folder in corpora:
            dsd, manifest = load_prepared(folder)
            name = manifest["corpus"]
            self.manifests[name] = manifest
            ds = dsd[split]
            keep = select_rows(len(ds), (max_rows or {}).get(name), seed, f"{name}/{split}")
            for i in tqdm(keep, desc=f"{name}/{split}: load rows", unit="row", disable=not progress):
                self.rows.append(self._store(ds[i], tokenizer))

    @staticmethod
    def _store(row: Mapping, tokenizer: TextTokenizer | None) -> StoredRow:
        return StoredRow(row["corpus"], row["dialogue"], row["listener"],
                         FrameInputs.from_row(row, tokenizer, compact=True),
                         np.asarray(row["hold_pauses"], dtype=np.float64).reshape(-1, 2),
                         np.asarray(row["shift_pauses"], dtype=np.float64).reshape(-1, 2))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def corpora(self) -> list[str]:
        return sorted({r.corpus for r in self.rows})

    def prosody_arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """All stored prosody and masks ``([N, 8], [N, 8])`` for ``FrameFeatures.fit``; None without audio."""
        rows = [r.inputs for r in self.rows if r.inputs.has_audio]
        if not rows:
            return None
        return np.concatenate([r.prosody.numpy() for r in rows]), np.concatenate([r.prosody_mask.numpy() for r in rows])


# --------------------------------------------------------------------------- crops

class CropSampler(Sampler):
    """Crop specs ``(row, start, length)`` for ``batches`` batches of ``batch_size``; all crops of one
    batch share a length drawn uniformly from ``[min_frames, max_frames]``.

    A crop's corpus is drawn with ``corpus_weights`` (default: in proportion to frames), then a row
    in proportion to its usable frames, then a uniform start. ``extra`` frames past the crop are
    included for the targets (the VAP horizon). Deterministic in ``(seed, epoch, rank)``; Lightning
    calls ``set_epoch``.
    """

    def __init__(self, lengths: Sequence[int], corpora: Sequence[str], batch_size: int, batches: int,
                 min_frames: int, max_frames: int, extra: int = 0,
                 corpus_weights: Mapping[str, float] | None = None, seed: int = 0):
        self.lengths, self.corpora = np.asarray(lengths), np.asarray(corpora)
        self.batch_size, self.batches, self.extra, self.seed = batch_size, batches, extra, seed
        self.min_frames, self.max_frames = min_frames, max_frames
        if not len(self.lengths):
            raise ValueError("no rows to crop from")
        names = sorted(set(self.corpora))
        frames = {c: float(self.lengths[self.corpora == c].sum()) for c in names}
        weights = {c: (corpus_weights or frames).get(c, 0.0) for c in names}
        if unknown := set(corpus_weights or {}) - set(names):
            raise ValueError(f"corpus_weights name corpora not in the data: {sorted(unknown)} (have {names})")
        total = sum(weights.values())
        self.names = names
        self.p_corpus = np.array([weights[c] / total for c in names])
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches * self.batch_size

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        for _ in range(self.batches):
            want = int(rng.integers(self.min_frames, self.max_frames + 1))
            for _ in range(self.batch_size):
                c = self.names[rng.choice(len(self.names), p=self.p_corpus)]
                idx = np.flatnonzero(self.corpora == c)
                length = min(want, int(self.lengths[idx].max()))
                room = np.maximum(self.lengths[idx] - length - self.extra, 0) + 1
                row = int(idx[rng.choice(len(idx), p=room / room.sum())])
                start = int(rng.integers(0, max(int(self.lengths[row]) - length - self.extra, 0) + 1))
                yield row, start, length


def chunk_specs(lengths: Sequence[int], corpora: Sequence[str], chunk: int, max_chunks: int | None = None,
                seed: int = 0) -> list[tuple[int, int, int]]:
    """Non-overlapping ``(row, start, length)`` chunks tiling every row (the last one shorter); per
    corpus at most ``max_chunks`` of them (a seeded random subset), in row order."""
    specs = {c: [] for c in sorted(set(corpora))}
    for i, (n, c) in enumerate(zip(lengths, corpora)):
        specs[c] += [(i, s, min(chunk, int(n) - s)) for s in range(0, int(n), chunk)]
    out = []
    for c, s in specs.items():
        keep = select_rows(len(s), max_chunks, seed, f"chunks/{c}")
        out += [s[k] for k in keep]
    return sorted(out)


def vad_hangover(va: np.ndarray, frames: int, threshold: float = 0.5) -> np.ndarray:
    """Voice activity as a VAD reports it: speech held ``frames`` frames past its end (webrtcvad's hangover on
    speech rendered at word times: the offsets lag by a median 80-160 ms, the onsets not at all, measured on
    rendered Map Task audio), so pauses look shorter. Causal: frame t uses frames <= t."""
    out = np.asarray(va, dtype=np.float32).copy()
    voiced = out >= threshold
    for k in range(1, frames + 1):
        out[k:] = np.where(voiced[:-k] & (out[k:] < 1.0), 1.0, out[k:])
    return out


def hangover_of(seed: int, key, choices: Sequence[int]) -> int:
    """The hangover (frames) drawn for ``key`` (a crop or a row): deterministic in ``seed`` and ``key``."""
    if not choices:
        return 0
    digest = hashlib.sha256(json.dumps([seed, key], default=str).encode()).digest()
    return int(choices[digest[0] % len(choices)])


class VAPCrops(torch.utils.data.Dataset):
    """``store`` crops for VAP training: item = inputs of ``length`` frames, VAP targets computed with
    the ``extra`` frames after the crop (targets whose 2 s window runs past the row are -100), and
    the crop's pauses (seconds from its start) for shift/hold scoring. ``hangover``: frames of VAD hangover
    to draw from per crop for the inputs (``vad_hangover``; the targets stay the true activity)."""

    def __init__(self, store: RowStore, extra: int = VAP_HORIZON, hangover: Sequence[int] = (), seed: int = 0):
        self.store, self.extra, self.hangover, self.seed = store, extra, tuple(hangover), seed

    def __getitem__(self, spec: tuple[int, int, int]) -> dict:
        i, start, length = spec
        row = self.store.rows[i]
        stop = min(start + length, len(row))
        end = min(stop + self.extra, len(row))
        target = vap_targets(row.va_listener[start:end], row.va_speaker[start:end])[: stop - start]
        hold, shift = row.pauses_in(start, stop)
        inputs = row.inputs.crop(start, stop)
        k = hangover_of(self.seed, spec, self.hangover)
        if k:
            lo = max(start - k, 0)
            for key in ("va_listener", "va_speaker"):
                full = getattr(row, key)[lo:stop]
                setattr(inputs, key, torch.from_numpy(vad_hangover(full, k)[start - lo :]))
        return {"inputs": inputs, "vap": target, "corpus": row.corpus, "hold_pauses": hold, "shift_pauses": shift}


def collate_vap(items: Sequence[dict]) -> dict:
    inputs, lengths = FrameInputs.collate([x["inputs"] for x in items])
    return {"inputs": inputs, "lengths": lengths, "vap": pad_stack([x["vap"] for x in items], value=IGNORE_INDEX),
            "corpus": [x["corpus"] for x in items], "hold_pauses": [x["hold_pauses"] for x in items],
            "shift_pauses": [x["shift_pauses"] for x in items]}


def _loader(dataset, sampler_or_specs, batch_size: int, collate, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler_or_specs, collate_fn=collate,
                      num_workers=num_workers, drop_last=False, persistent_workers=num_workers > 0)


def manifest_summary(manifests: Mapping[str, dict], folders: Mapping[str, str] | None = None) -> dict:
    """What a checkpoint records of its training data: per corpus, fingerprint, split fingerprints,
    label settings and folder."""
    return {name: {"fingerprint": m.get("fingerprint"), "split_fingerprints": m.get("split_fingerprints"),
                   "label_settings": m.get("label_settings"), "folder": (folders or {}).get(name)}
            for name, m in sorted(manifests.items())}


class PretrainDataModule(L.LightningDataModule):
    """VAP pretraining data: random crops of ``crop_seconds`` from the train splits of ``corpora``
    (prepared folders), ``batches_per_epoch`` batches of ``batch_size`` per epoch; validation on
    non-overlapping ``val_chunk_seconds`` chunks of the dev splits (at most ``val_max_chunks`` per
    corpus). ``use_text=False`` drops the text stream; ``vocab_size``/``text_k``/``text_words`` must match
    the backbone's (``TextTokenizer``). ``vad_hangover``: frames of VAD hangover drawn per training crop for
    the inputs (e.g. ``[0, 1, 2]``: robust to voice activity from a VAD on audio; ``vad_hangover``)."""

    def __init__(self, corpora: list[str], crop_seconds: tuple[float, float] = (20.0, 40.0), batch_size: int = 16,
                 batches_per_epoch: int = 500, corpus_weights: dict[str, float] | None = None,
                 val_chunk_seconds: float = 60.0, val_max_chunks: int | None = 200,
                 max_rows: dict[str, int] | None = None, use_text: bool = True, vocab_size: int = VOCAB_SIZE,
                 text_k: int = WORDS_PER_FRAME, text_words: str = "all", vad_hangover: list[int] | None = None,
                 seed: int = 0, num_workers: int = 0, progress: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.train_store: RowStore | None = None
        self.val_store: RowStore | None = None

    @property
    def tokenizer(self) -> TextTokenizer | None:
        h = self.hparams
        return TextTokenizer(h.vocab_size, h.text_k, h.text_words) if h.use_text else None

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_store is None:
            self.train_store = RowStore(h.corpora, "train", self.tokenizer, h.max_rows, h.seed, h.progress)
            self.val_store = RowStore(h.corpora, "dev", self.tokenizer, h.max_rows, h.seed, h.progress)

    @property
    def manifest_summary(self) -> dict:
        """Per corpus: fingerprints, label settings and folder of the training data."""
        self.setup()
        names = {m["corpus"]: str(f) for f, m in zip(self.hparams.corpora, self.train_store.manifests.values())}
        return manifest_summary(self.train_store.manifests, names)

    def train_dataloader(self) -> DataLoader:
        h, store = self.hparams, self.train_store
        lo, hi = (round(s / FRAME_S) for s in h.crop_seconds)
        sampler = CropSampler([len(r) for r in store.rows], [r.corpus for r in store.rows], h.batch_size,
                              h.batches_per_epoch, lo, hi, VAP_HORIZON, h.corpus_weights, h.seed)
        return _loader(VAPCrops(store, hangover=h.vad_hangover or (), seed=h.seed), sampler, h.batch_size, collate_vap,
                       h.num_workers)

    def val_dataloader(self) -> DataLoader:
        h, store = self.hparams, self.val_store
        specs = chunk_specs([len(r) for r in store.rows], [r.corpus for r in store.rows],
                            round(h.val_chunk_seconds / FRAME_S), h.val_max_chunks, h.seed)
        return _loader(VAPCrops(store, extra=0), specs, h.batch_size, collate_vap, 0)


# --------------------------------------------------------------------------- feature cache

CACHE_FEATURES = lambda dim, text_width: Features({
    "corpus": Value("string"), "dialogue": Value("string"), "listener": Value("string"),
    "n_frames": Value("int32"), "features": Array2D(shape=(None, dim), dtype="float16"),
    "va": Array2D(shape=(None, 2), dtype="float16"), "text_ids": Array2D(shape=(None, text_width), dtype="int16"),
    "action": List(Value("int8")), "bc_type": List(Value("int8")), "onset": List(Value("int8")),
    "bc_onsets": List(Value("float64")),
})


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(backbone: str, backbone_hash: str, manifest: Mapping, split: str, use_text: bool,
              max_rows: int | None, seed: int, hangover: Sequence[int] = (), heard: bool = False) -> dict:
    """Everything that decides the cached features of one (corpus, split)."""
    key = {"format": CACHE_FORMAT, "backbone": backbone, "backbone_hash": backbone_hash,
           "corpus": manifest["corpus"], "fingerprint": manifest["fingerprint"],
           "split_fingerprint": (manifest.get("split_fingerprints") or {}).get(split), "split": split,
           "use_text": use_text, "max_rows": max_rows, "seed": seed if max_rows is not None else None}
    if hangover:
        key["hangover"] = list(hangover)
    if heard:
        key["heard"] = True
    return key


def cache_path(cache_dir: str | Path, key: Mapping) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{key['backbone']}-{key['corpus']}-{key['split']}-{digest}"


@torch.no_grad()
def extract_features(backbone, rows: Sequence[Mapping], tokenizer: TextTokenizer | None,
                     max_batch_frames: int = 200_000) -> list[tuple[np.ndarray, FrameInputs]]:
    """``(hidden [T_i, d] float32, FrameInputs [T_i])`` of each row: batched ``forward`` over whole rows,
    grouped by length so a batch holds at most ``max_batch_frames`` (padded) frames."""
    order = sorted(range(len(rows)), key=lambda i: int(rows[i]["n_frames"]))
    out: list = [None] * len(rows)
    batch: list[int] = []

    def flush():
        items = [FrameInputs.from_row(rows[i], tokenizer) for i in batch]
        inputs, lengths = FrameInputs.collate(items)
        hidden = backbone(inputs).float()
        for j, i in enumerate(batch):
            out[i] = (hidden[j, : int(lengths[j])].numpy(), items[j])
        batch.clear()

    for i in order:
        if batch and (len(batch) + 1) * int(rows[i]["n_frames"]) > max_batch_frames:
            flush()
        batch.append(i)
    if batch:
        flush()
    return out


def build_feature_cache(backbone, backbone_name: str, backbone_hash: str, corpus_dir: str | Path, split: str,
                        cache_dir: str | Path, use_text: bool = True, max_rows: int | None = None, seed: int = 0,
                        tokenizer: TextTokenizer | None = None, progress: bool = True,
                        rows_per_step: int = 8, hangover: Sequence[int] = (), heard: bool = False) -> Dataset:
    """Cached backbone features of one prepared corpus split (a memory-mapped ``datasets.Dataset`` with, per
    row, ``features`` float16 ``[T, d]``, the frame inputs a direct head reads (``va`` ``[T, 2]``, ``text_ids``
    ``[T, 2 K]``), the labels ``action``, ``bc_type`` and ``onset`` (``evaluation.user_onsets.onset_targets``), the
    gold ``bc_onsets`` of the dataset's backchannel definition, and ids).

    ``hangover``: the voice activity of every row is first seen through ``vad_hangover`` with a number of
    frames drawn per row from these (a VAD-like copy for robust training). ``heard``: the rows as an agent
    hears its user (``corpora.framing.heard_listener``: the listener's backchannels back in its streams) with
    only the ``onset`` targets (``action`` and ``bc_type`` all -1): the user-onset task's training copy. Re-used when ``cache_dir`` holds
    one with the same key (backbone name and hash, corpus manifest fingerprint, split, text use, row subset,
    hangover); otherwise built (batched ``forward``, progress bar) into a temporary folder that is renamed
    into place when complete.
    """
    dsd, manifest = load_prepared(corpus_dir)
    key = cache_key(backbone_name, backbone_hash, manifest, split, use_text, max_rows, seed, hangover, heard)
    path = cache_path(cache_dir, key)
    if (path / "key.json").is_file() and json.loads((path / "key.json").read_text()) == key:
        return Dataset.from_file(str(path / "data.arrow"))
    ds = dsd[split]
    keep = select_rows(len(ds), max_rows, seed, f"{manifest['corpus']}/{split}")
    if tokenizer is None and use_text:
        tokenizer = tokenizer_for(getattr(backbone, "config", None) or {})
    from backchannel.evaluation.data import gold_onsets
    from backchannel.evaluation.user_onsets import onset_targets

    definition = (manifest.get("label_settings") or {}).get("bc_definition", "all")
    width = 2 * (tokenizer.k if tokenizer is not None and use_text else 0)
    backbone.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        writer = ArrowWriter(features=CACHE_FEATURES(backbone.hidden_size, width), path=str(tmp / "data.arrow"))
        n_frames = np.asarray(ds["n_frames"])
        with tqdm(total=int(n_frames[keep].sum()), unit="frame", unit_scale=True,
                  desc=f"features {backbone_name}: {manifest['corpus']}/{split}", disable=not progress) as bar:
            for s in range(0, len(keep), rows_per_step):
                rows = [ds[i] for i in keep[s : s + rows_per_step]]
                if hangover:
                    rows = [_with_hangover(r, hangover_of(seed, (r["dialogue"], r["listener"]), hangover))
                            for r in rows]
                if heard:
                    rows = [heard_listener(r) for r in rows]
                for row, (hidden, x) in zip(rows, extract_features(backbone, rows, tokenizer if use_text else None)):
                    n = int(row["n_frames"])
                    ids = x.text_ids.reshape(n, -1).numpy() if width else np.zeros((n, 0))
                    unlabelled = np.full(n, -1, dtype=np.int8)
                    writer.write({"corpus": row["corpus"], "dialogue": row["dialogue"], "listener": row["listener"],
                                  "n_frames": n, "features": hidden.astype(np.float16),
                                  "va": np.stack([x.va_listener.numpy(), x.va_speaker.numpy()], 1).astype(np.float16),
                                  "text_ids": ids.astype(np.int16),
                                  "action": unlabelled if heard else row["action"],
                                  "bc_type": unlabelled if heard else row["bc_type"],
                                  "onset": onset_targets(row, definition),
                                  "bc_onsets": gold_onsets(row, definition)})
                    bar.update(int(row["n_frames"]))
        writer.finalize()
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Dataset.from_file(str(path / "data.arrow"))


def _with_hangover(row: Mapping, frames: int) -> dict:
    return dict(row, **{k: vad_hangover(row[k], frames) for k in ("va_listener", "va_speaker")})


@dataclass
class CachedRow:
    corpus: str
    dialogue: str
    listener: str
    features: np.ndarray  # float16 [T, d]
    action: np.ndarray  # int64 [T]
    bc_type: np.ndarray  # int64 [T]
    bc_onsets: np.ndarray  # seconds: the gold of the dataset's backchannel definition
    va: np.ndarray | None = None  # float16 [T, 2]: listener, floor party
    text_ids: np.ndarray | None = None  # int16 [T, 2, K]
    onset: np.ndarray | None = None  # int64 [T]: 1 / 0 / -1 (evaluation.user_onsets.onset_targets)
    context: np.ndarray | None = None  # float32 [T, 3]: head.floor_context over the whole row (a context head's)

    def __len__(self) -> int:
        return len(self.action)

    def inputs(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """The direct head inputs of frames ``start:stop`` (the ``FrameInputs`` keys a head reads)."""
        n = stop - start
        va = torch.zeros(n, 2) if self.va is None else torch.from_numpy(self.va[start:stop].astype(np.float32))
        out = {"va_listener": va[:, 0], "va_speaker": va[:, 1]}
        if self.text_ids is not None and self.text_ids.size:
            out["text_ids"] = torch.from_numpy(self.text_ids[start:stop].astype(np.int64))
        if self.context is not None:
            out["context"] = torch.from_numpy(self.context[start:stop])
        return out


def cached_rows(ds: Dataset) -> list[CachedRow]:
    """The rows of a feature cache, features kept float16 in memory."""
    ds = ds.with_format("numpy")
    out = []
    for i in range(len(ds)):
        r = ds[i]
        n = int(r["n_frames"])
        ids = np.asarray(r["text_ids"], dtype=np.int16)
        out.append(CachedRow(str(r["corpus"]), str(r["dialogue"]), str(r["listener"]),
                             np.asarray(r["features"], dtype=np.float16), np.asarray(r["action"], dtype=np.int64),
                             np.asarray(r["bc_type"], dtype=np.int64), np.asarray(r["bc_onsets"], dtype=np.float64),
                             np.asarray(r["va"], dtype=np.float16), ids.reshape(n, 2, -1) if ids.size else None,
                             np.asarray(r["onset"], dtype=np.int64)))
    return out


def add_floor_context(rows: Sequence[CachedRow]) -> None:
    """Set each row's ``context``: ``head.floor_context`` over the whole row, so that a training crop sees the
    context as warm as a session does at that frame (the evaluation and the plugin run whole sessions)."""
    from backchannel.head import floor_context

    for r in rows:
        va = torch.from_numpy(r.va.astype(np.float32)) if r.va is not None else torch.zeros(len(r), 2)
        r.context = floor_context(va[None, :, 0], va[None, :, 1])[0][0].numpy()


class FeatureCrops(torch.utils.data.Dataset):
    """Crops (or whole rows) of cached features with their labels and direct inputs."""

    def __init__(self, rows: Sequence[CachedRow]):
        self.rows = rows

    def __getitem__(self, spec) -> dict:
        i, start, length = spec if isinstance(spec, tuple) else (spec, 0, None)
        r = self.rows[i]
        stop = len(r) if length is None else min(start + length, len(r))
        onset = r.onset[start:stop] if r.onset is not None else np.full(stop - start, -1)
        return {"features": torch.from_numpy(r.features[start:stop].astype(np.float32)),
                "inputs": r.inputs(start, stop), "action": torch.from_numpy(r.action[start:stop]),
                "bc_type": torch.from_numpy(r.bc_type[start:stop]), "onset": torch.from_numpy(onset),
                "row": i, "corpus": r.corpus}

    def __len__(self) -> int:
        return len(self.rows)


def collate_features(items: Sequence[dict]) -> dict:
    keys = items[0]["inputs"].keys()
    return {"features": pad_stack([x["features"] for x in items]),
            "inputs": {k: pad_stack([x["inputs"][k] for x in items]) for k in keys},
            "action": pad_stack([x["action"] for x in items], value=IGNORE_INDEX),
            "bc_type": pad_stack([x["bc_type"] for x in items], value=IGNORE_INDEX),
            "onset": pad_stack([x["onset"] for x in items], value=IGNORE_INDEX),
            "lengths": torch.tensor([len(x["action"]) for x in items]),
            "row": [x["row"] for x in items], "corpus": [x["corpus"] for x in items]}


class HeadDataModule(L.LightningDataModule):
    """Head training on cached features of the train splits of ``corpora`` (prepared folders); dev
    rows whole. The frozen feature extractor is the LightningModule's (``module.feature_backbone()``);
    caches live in ``cache_dir``. ``max_rows`` / ``dev_max_rows``: per corpus name, a seeded subset
    of rows (MRDA listener rows span whole meetings). Crops of ``crop_seconds``, ``batches_per_epoch``
    batches of ``batch_size``, corpora mixed by ``corpus_weights`` (default: by frames). ``vad_hangover``: also
    train on a copy of the train rows whose voice activity a VAD would report (``vad_hangover`` frames drawn
    per row from these). ``heard_onsets``: the head's onset output trains on a copy of the train rows as an
    agent hears its user (the listener's backchannels in its streams; ``build_feature_cache(heard=True)``),
    and not on the rows that leave them out (there, no speech at an onset would give the answer away)."""

    def __init__(self, corpora: list[str], cache_dir: str = "runs/cache", crop_seconds: tuple[float, float] = (60.0, 60.0),
                 batch_size: int = 16, batches_per_epoch: int = 50, corpus_weights: dict[str, float] | None = None,
                 max_rows: dict[str, int] | None = None, dev_max_rows: dict[str, int] | None = None, seed: int = 0,
                 vad_hangover: list[int] | None = None, heard_onsets: bool = False, num_workers: int = 0,
                 progress: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.train_rows: list[CachedRow] | None = None
        self.dev_rows: list[CachedRow] | None = None
        self.manifests: dict = {}
        self.manifest_summary: dict = {}
        self.cache_paths: list[str] = []

    def build(self, backbone, name: str, backbone_hash: str, use_text: bool) -> None:
        """Build or re-use the caches for ``backbone`` and load them."""
        h = self.hparams
        t0 = time.perf_counter()
        self.train_rows, self.dev_rows, self.cache_paths = [], [], []
        for folder in h.corpora:
            _, manifest = load_prepared(folder)
            cname = manifest["corpus"]
            self.manifests[cname] = manifest
            jobs = [("train", h.max_rows, self.train_rows, (), False), ("dev", h.dev_max_rows, self.dev_rows, (), False)]
            if h.vad_hangover:  # a second, VAD-like copy of the train rows
                jobs.insert(1, ("train", h.max_rows, self.train_rows, tuple(h.vad_hangover), False))
            if h.heard_onsets:  # the onset output's copy: the listener's backchannels heard
                jobs.insert(1, ("train", h.max_rows, self.train_rows, (), True))
            for split, limit, out, hangover, heard in jobs:
                n = (limit or {}).get(cname)
                ds = build_feature_cache(backbone, name, backbone_hash, folder, split, h.cache_dir, use_text, n,
                                         h.seed, progress=h.progress, hangover=hangover, heard=heard)
                self.cache_paths.append(ds.cache_files[0]["filename"])
                rows = cached_rows(ds)
                if h.heard_onsets and not heard:
                    for r in rows:
                        r.onset = None  # no onset targets where the listener's backchannels are left out
                out += rows
        names = {m["corpus"]: str(f) for f, m in zip(h.corpora, self.manifests.values())}
        self.manifest_summary = manifest_summary(self.manifests, names)
        self.cache_build_s = time.perf_counter() - t0  # seconds spent building or loading the caches

    def setup(self, stage: str | None = None) -> None:
        if self.train_rows is None:
            module = self.trainer.lightning_module
            self.build(module.feature_backbone(), module.backbone_name, module.backbone_hash, module.use_text)
            if module.head.context:
                add_floor_context(self.train_rows + self.dev_rows)

    def label_counts(self) -> np.ndarray:
        """Frames per action class in the train rows ``[3]`` (frames labelled -1, no target, left out)."""
        action = np.concatenate([r.action for r in self.train_rows])
        return np.bincount(action[action >= 0], minlength=3)

    def type_counts(self) -> np.ndarray:
        """BACKCHANNEL frames per backchannel type in the train rows ``[len(BC_TYPES)]`` (the type loss's frames)."""
        types = np.concatenate([r.bc_type[r.action == BACKCHANNEL] for r in self.train_rows])
        return np.bincount(types[types >= 0], minlength=len(BC_TYPES))

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        lo, hi = (round(s / FRAME_S) for s in h.crop_seconds)
        sampler = CropSampler([len(r) for r in self.train_rows], [r.corpus for r in self.train_rows], h.batch_size,
                              h.batches_per_epoch, lo, hi, 0, h.corpus_weights, h.seed)
        return _loader(FeatureCrops(self.train_rows), sampler, h.batch_size, collate_features, h.num_workers)

    def val_dataloader(self) -> DataLoader:
        order = sorted(range(len(self.dev_rows)), key=lambda i: len(self.dev_rows[i]))
        return _loader(FeatureCrops(self.dev_rows), order, 4, collate_features, 0)

