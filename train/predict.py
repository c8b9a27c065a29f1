"""Per-frame predictions of a trained head checkpoint: the API evaluation uses.

    predictor = load_predictor("runs/head_timing/best.ckpt")   # or a model folder (backchannel export)
    out = predictor.predict_rows(dataset_rows)   # one dict per row, on the 80 ms clock
    out[0]["action_probs"]   # float32 [n, 3]  SILENT, BACKCHANNEL, TAKE_TURN
    out[0]["type_probs"]     # float32 [n, 5]  lexicon.BC_TYPES
    out[0]["vap_p_shift"]    # float32 [n]     the backbone's zero-shot p(listener speaks next), or None
    predictor.describe()     # backbone, config, checkpoint hash, corpora

Everything is causal: the backbone attends to past frames only and the head is frame-wise or a
forward GRU, so the probabilities at frame ``t`` use frames ``<= t`` only (frame ``t``'s words are
those that ended inside it).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backchannel.backbones.timing import vap_zero_shot
from backchannel.inputs import FrameInputs

from backchannel.text import tokenizer_for

from .data import file_sha256
from .modules import CheckpointError, build_from_meta, load_checkpoint


class Predictor:
    """A loaded head checkpoint (frozen backbone + head), run on whole rows of a prepared dataset."""

    def __init__(self, checkpoint: dict, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.meta = checkpoint["backchannel"]
        if self.meta["kind"] != "head":
            raise CheckpointError(path, f"is a {self.meta['kind']} checkpoint; predictions need a head checkpoint")
        mods = build_from_meta(self.meta, checkpoint["state_dict"])
        self.backbone, self.vap, self.head = mods["extractor"], mods["vap"], mods["head"]
        cfg = self.meta.get("backbone_config") or {}
        self.tokenizer = tokenizer_for(cfg) if self.meta["backbone"] == "timing" else None
        self.sha256 = checkpoint.get("_sha256") or file_sha256(self.path)
        self.threads = threads
        #: a model folder's ``config.json`` and ``policy.json`` settings (None for a ``.ckpt``)
        self.config, self.policy_settings = checkpoint.get("_config"), checkpoint.get("_policy")

    @classmethod
    def from_pretrained(cls, path: str | Path, threads: int | None = None) -> Predictor:
        """A model folder written by :meth:`save_pretrained` (or ``backchannel export``)."""
        if not Path(path).is_dir():
            raise CheckpointError(path, "not a folder: from_pretrained reads a model folder (config.json, "
                                        "model.safetensors); load_predictor also reads a .ckpt")
        return load_predictor(path, threads)

    def state_dict(self) -> dict:
        """The weights as a checkpoint stores them: ``backbone.*``, ``vap.*`` (with a VAP projection) and
        ``head.*`` tensors."""
        out = {}
        for prefix, module in (("backbone", self.backbone), ("vap", self.vap), ("head", self.head)):
            if module is not None:
                out |= {f"{prefix}.{k}": v for k, v in module.state_dict().items()}
        return out

    def save_pretrained(self, out_dir: str | Path, policy=None, card: str | None = None,
                        extra: dict | None = None) -> list[Path]:
        """Write this model as a folder (``train.pretrained``: config.json, model.safetensors, and policy.json /
        MODEL_CARD.md when given); :meth:`from_pretrained` loads it back with the same outputs. Returns the
        files written."""
        from .pretrained import save_pretrained

        source = (self.config or {}).get("source") or {"checkpoint": self.path.name, "sha256": self.sha256}
        return save_pretrained(self.meta, self.state_dict(), out_dir, policy=policy, card=card, source=source,
                               extra=extra)

    @torch.inference_mode()
    def predict_row(self, row: Mapping) -> dict:
        """Probabilities for one dataset row (see :meth:`predict_rows`)."""
        return self.predict_batch([row])[0]

    @torch.inference_mode()
    def predict_batch(self, rows: list[Mapping]) -> list[dict]:
        """Probabilities for a few rows in one forward pass (end-padded; every model is causal, so the
        padding after a row's last frame changes none of its outputs)."""
        inputs, lengths = FrameInputs.collate([FrameInputs.from_row(r, self.tokenizer) for r in rows])
        hidden = self.backbone(inputs)
        with _torch_threads(1):  # the GRU steps frame by frame: extra threads only wait (50x slower under load)
            out = self.head(hidden, inputs)
        actions = out.action.float().softmax(-1).numpy().astype(np.float32)
        types = out.bc_type.float().softmax(-1).numpy().astype(np.float32)
        onset = None if out.onset is None else out.onset.float().sigmoid().numpy().astype(np.float32)
        p_shift = None
        if self.vap is not None:
            p_shift = vap_zero_shot(self.vap(hidden))["p_now"].float().numpy().astype(np.float32)
        return [{"action_probs": actions[i, :n], "type_probs": types[i, :n],
                 "vap_p_shift": None if p_shift is None else p_shift[i, :n],
                 "onset_probs": None if onset is None else onset[i, :n]}
                for i, n in enumerate(lengths.tolist())]

    def predict_rows(self, rows: Iterable[Mapping], progress: bool = False,
                     max_batch_frames: int = 65536) -> list[dict]:
        """Per row (a dataset row: ``n_frames``, voice activity, prosody, text streams), a dict with
        ``action_probs`` float32 ``[n, 3]``, ``type_probs`` float32 ``[n, 5]`` and ``vap_p_shift``
        float32 ``[n]`` (the backbone's zero-shot probability that the listener holds the floor in the
        next 0.6 s, VAP ``p_now``; ``None`` for the raw-feature head). ``n = row["n_frames"]``.
        Rows of similar length are batched up to ``max_batch_frames`` padded frames per forward pass."""
        rows = list(rows) if not hasattr(rows, "__len__") else rows
        order = sorted(range(len(rows)), key=lambda i: int(rows[i]["n_frames"]))
        batches, cur = [], []
        for i in order:
            if cur and (len(cur) + 1) * int(rows[i]["n_frames"]) > max_batch_frames:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        out: list[dict | None] = [None] * len(rows)
        with _torch_threads(self.threads), tqdm(total=len(rows), desc="predict", unit="row",
                                                disable=not progress) as bar:
            for batch in batches:
                for i, o in zip(batch, self.predict_batch([rows[i] for i in batch])):
                    out[i] = o
                bar.update(len(batch))
        return out

    def describe(self) -> dict:
        """What this predictor is: backbone name and config, head config, the run config, checkpoint
        path and sha256, training corpora (fingerprints) and the metrics stored at save time."""
        m = self.meta
        out = {"checkpoint": str(self.path), "checkpoint_sha256": self.sha256, "backbone": m["backbone"],
               "backbone_config": m.get("backbone_config"), "backbone_sha256": m.get("backbone_hash"),
               "head_config": m.get("head_config"), "config": m.get("config"), "corpora": m.get("manifests"),
               "metrics": m.get("metrics"), "global_step": m.get("global_step")}
        if self.config is not None:  # a model folder: where its weights came from
            out["source"] = self.config.get("source")
        return out


def load_predictor(checkpoint_path: str | Path, threads: int | None = None) -> Predictor:
    """Load a head checkpoint (``backchannel train head``) or a model folder (``backchannel export``,
    ``train.pretrained``) for prediction; raises ``CheckpointError`` naming the file when it is missing,
    corrupt, not a head checkpoint, or inconsistent."""
    if Path(checkpoint_path).is_dir():
        from .pretrained import read_pretrained

        return Predictor(read_pretrained(checkpoint_path), checkpoint_path, threads)
    return Predictor(load_checkpoint(checkpoint_path, kind="head"), checkpoint_path, threads)


@contextmanager
def _torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then restore."""
    prev = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
