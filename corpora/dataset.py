"""Write mined, framed dialogues as a Hugging Face ``DatasetDict`` (train/dev/test) plus ``manifest.json``.

One row per (dialogue, listener): ids, the per-frame arrays of ``framing.frame_listener`` and the
event lists. Rows stream to Arrow files (memory stays flat), the build goes to a temporary folder
next to ``out_dir`` (``.<name>.<pid>-<random>.tmp``, created with the umask's mode) that is renamed into
place only when everything succeeded, and nothing is written to the Hugging Face cache. Temporary
folders left by killed runs (their process is gone) are removed at the start of the next build. The
same input gives byte-identical Arrow files and the same content ``fingerprint``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from datasets import (
    Array2D,
    Dataset,
    DatasetDict,
    DatasetInfo,
    Features,
    List,
    NamedSplit,
    Value,
    load_from_disk,
)
from datasets.arrow_writer import ArrowWriter
from datasets.table import InMemoryTable
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from backchannel.frames import FRAME_S, PROSODY_DIM
from backchannel.progress import progress as progress_bar

from .dialogue import Dialogue
from .errors import CorpusError
from .events import BC_KINDS, LabelSettings
from .framing import frame_dialogue
from .mining import merge_spans, mine_dialogue, speech_spans

SPLITS = ("train", "dev", "test")
FORMAT = "backchannel.prepared/1"
MANIFEST = "manifest.json"

_F64, _STR = Value("float64"), Value("string")
FEATURES = Features({
    "corpus": _STR, "dialogue": _STR, "listener": _STR, "floor": _STR, "split": _STR,
    "n_frames": Value("int32"), "va_source": _STR,
    "va_listener": List(Value("float32")), "va_speaker": List(Value("float32")),
    "prosody": Array2D(shape=(None, PROSODY_DIM), dtype="float32"),
    "prosody_mask": Array2D(shape=(None, PROSODY_DIM), dtype="bool"),
    "text_listener": List(_STR), "text_speaker": List(_STR),
    "action": List(Value("int8")), "bc_type": List(Value("int8")),
    "bc_onsets": List(_F64), "bc_offsets": List(_F64), "bc_forms": List(_STR), "bc_types": List(_STR),
    "bc_sources": List(_STR), "bc_in_overlap": List(Value("bool")), "bc_kinds": List(_STR),
    "bc_isolated": List(Value("bool")),
    "shift_onsets": List(_F64), "interruption_onsets": List(_F64),
    "hold_pauses": List(List(_F64, length=2)), "shift_pauses": List(List(_F64, length=2)),
})

# Modules whose code decides the prepared data; the hash of their source files goes in the manifest.
LABELLING_MODULES = ("backchannel.frames", "backchannel.lexicon", "backchannel.corpora.dialogue",
                     "backchannel.corpora.events", "backchannel.corpora.mining", "backchannel.corpora.framing",
                     "backchannel.corpora.dataset")
LOW_SPEECH_S = 10.0  # seconds: a listener row with less voice activity is listed as "little speech"


def _digest(h, row: dict) -> None:
    """Feed ``row`` into hash ``h`` in a canonical byte form (feature order)."""
    for key in FEATURES:
        x = row[key]
        h.update(key.encode())
        if isinstance(x, np.ndarray):
            h.update(f"{x.dtype.str}{x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, list):  # of strings
            h.update(f"{len(x)}:".encode())
            h.update("\x00".join(x).encode())
        else:
            h.update(json.dumps(x).encode())


def labelling_sources() -> dict[str, Path]:
    """Module name -> source file of each of ``LABELLING_MODULES``, found through the import system
    (so an editable checkout and an installed wheel both work)."""
    out = {}
    for name in LABELLING_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            raise FileNotFoundError(f"{name}: source file not found (origin {getattr(spec, 'origin', None)})")
        out[name] = Path(spec.origin)
    return out


def _git_commit(folder: Path) -> str | None:
    """HEAD of the git checkout whose top folder is ``folder``; None elsewhere (an installed wheel)."""
    try:
        run = [subprocess.run(["git", "-C", str(folder), "rev-parse", arg], capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip() for arg in ("--show-toplevel", "HEAD")]
    except (OSError, subprocess.SubprocessError):
        return None
    top, commit = run
    return commit or None if top and Path(top).resolve() == folder.resolve() else None


def code_version() -> dict:
    """Package ``version``, ``git_commit`` (in a git checkout), ``source_sha256`` of the labelling code."""
    try:
        version = metadata.version("backchannel")
    except metadata.PackageNotFoundError:
        version = None
    h = hashlib.sha256()
    for name, path in labelling_sources().items():
        h.update(name.encode())
        h.update(path.read_bytes())
    commit = _git_commit(Path(__file__).resolve().parents[1])  # the repository root in a checkout
    return {"version": version, "git_commit": commit, "source_sha256": h.hexdigest()}


def _empty_stats() -> dict:
    return {"dialogues": 0, "rows": 0, "frames": 0, "listener_minutes": 0.0,
            "shifts": 0, "interruptions": 0, "hold_pauses": 0, "shift_pauses": 0}


def _empty_bc_counts() -> dict:
    """Mined backchannel candidates (``events``, by ``tag``/``lexicon`` source, by ``kinds``: isolated,
    turn-initial, other) and, side by side, the short non-floor-claiming utterances each rule accepts
    (``candidates``, see ``count_backchannel_sources``)."""
    return {"events": 0, "tag": 0, "lexicon": 0, "kinds": dict.fromkeys(BC_KINDS, 0),
            "candidates": {"tag": 0, "lexicon": 0, "both": 0, "tag_only": 0, "lexicon_only": 0}}


def _add_stats(stats: dict, bc: dict, row: dict, counts: dict) -> None:
    stats["rows"] += 1
    stats["frames"] += row["n_frames"]
    stats["listener_minutes"] += row["n_frames"] * FRAME_S / 60
    bc["events"] += len(row["bc_onsets"])
    bc["tag"] += row["bc_sources"].count("tag")
    bc["lexicon"] += row["bc_sources"].count("lexicon")
    for k in BC_KINDS:
        bc["kinds"][k] += row["bc_kinds"].count(k)
    for k, v in counts.items():
        bc["candidates"][k] += v
    stats["shifts"] += len(row["shift_onsets"])
    stats["interruptions"] += len(row["interruption_onsets"])
    stats["hold_pauses"] += len(row["hold_pauses"])
    stats["shift_pauses"] += len(row["shift_pauses"])


def row_prosody(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(prosody [n, 8] float32, mask [n, 8] bool)`` of a dataset row.

    Rows without any audio store prosody as 0 x 8 to keep the dataset small (MRDA would otherwise carry
    ~20 M frames of masked zeros); this expands them back to n frames, all masked.
    """
    n = int(row["n_frames"])
    prosody = np.asarray(row["prosody"], dtype=np.float32).reshape(-1, PROSODY_DIM)
    mask = np.asarray(row["prosody_mask"], dtype=bool).reshape(-1, PROSODY_DIM)
    if len(prosody) == 0:
        return np.zeros((n, PROSODY_DIM), np.float32), np.zeros((n, PROSODY_DIM), bool)
    if len(prosody) != n or mask.shape != prosody.shape:
        raise ValueError(f"row {row.get('dialogue')}/{row.get('listener')}: prosody has {len(prosody)} frames, "
                         f"expected {n}")
    return prosody, mask


def is_prepared(path: str | Path) -> bool:
    """True when ``path`` holds a dataset written by ``build_dataset``."""
    p = Path(path)
    return (p / MANIFEST).is_file() and (p / "dataset_dict.json").is_file()


def resolve_prepared(spec: str | Path, data_root: str | Path = "data") -> Path:
    """A prepared dataset folder, or ``<data_root>/<spec>`` for a corpus name; ``CorpusError`` if neither."""
    from .errors import CorpusError

    path = Path(spec)
    for cand in (path, Path(data_root) / str(spec)):
        if is_prepared(cand):
            return cand
    named = "/" not in str(spec) and not path.exists()
    hint = Path(data_root) / str(spec) if named else path
    raise CorpusError(hint, f"not a prepared dataset; run `backchannel corpus prepare "
                            f"{spec if named else 'CORPUS'}` first")


def find_row(dsd, dataset: str | Path, dialogue: str | None = None, listener: str | None = None) -> dict:
    """The row of ``dialogue``/``listener`` of a prepared ``DatasetDict``; where either is not given, the
    matching row with the most backchannels (in the test split, else dev, else train). ``CorpusError``
    naming ``dataset`` and a few of its rows when nothing matches."""
    from .errors import CorpusError

    seen = []
    for split in ("test", "dev", "train"):
        ds = dsd[split]
        if not len(ds):
            continue
        keys = list(zip(ds["dialogue"], ds["listener"]))
        n_bc = [len(x) for x in ds["bc_onsets"]]
        hits = [i for i, (d, lst) in enumerate(keys)
                if (dialogue is None or d == dialogue) and (listener is None or lst == listener)]
        if hits:
            return ds[max(hits, key=lambda i: (n_bc[i], -i))]
        seen += [f"{d}/{lst}" for d, lst in keys]
    where = " ".join(f"{k} {v!r}" for k, v in (("dialogue", dialogue), ("listener", listener)) if v is not None)
    raise CorpusError(dataset, f"no row for {where or 'any dialogue'}; rows: {', '.join(seen[:12])}"
                               f"{' ...' if len(seen) > 12 else ''}")


def build_dataset(dialogues, out_dir: str | Path, *, corpus: str,
                  label_settings: LabelSettings | dict | None = None, progress: bool = True,
                  skipped: list | None = None, overwrite: bool = False,
                  source: str | Path | None = None, speakers: str | None = None,
                  exclude_speakers: str | None = None, total: int | None = None) -> DatasetDict:
    """Mine, frame and write ``dialogues`` (each with ``.split`` in train/dev/test) to ``out_dir``.

    ``skipped``: the reader's list of skipped inputs (read after ``dialogues`` is exhausted; recorded
    in the manifest). ``source``: the corpus folder, recorded as ``source_root`` (default: the common
    folder of the dialogues' source files). ``speakers`` / ``exclude_speakers``: regular expressions
    (``re.search``) choosing which speakers become listener rows; every speaker's speech still counts
    as the floor. ``total``: the number of dialogues expected, for the progress bar. An existing
    ``out_dir`` is replaced only with ``overwrite=True``, and only once the new build has succeeded.
    Raises ``CorpusError`` when no row is left to write (nothing is written then). Returns the
    written ``DatasetDict`` (memory-mapped from ``out_dir``).
    """
    out_dir = Path(out_dir)
    settings = LabelSettings.of(label_settings)
    keep = _listener_filter(speakers, exclude_speakers)
    if out_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir}: already exists")
        if not is_prepared(out_dir) and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir}: exists and is not a prepared dataset; refusing to replace it "
                                  "(even with overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out_dir)
    tmp = _new_folder(out_dir, ".tmp")
    try:
        manifest = _write(dialogues, tmp, corpus=corpus, settings=settings, progress=progress, keep=keep,
                          total=total)
        manifest["skipped"] = [_skip_entry(s) for s in (skipped or [])]
        manifest["listener_filter"] = {"speakers": speakers, "exclude_speakers": exclude_speakers}
        if source is not None:
            manifest["source_root"] = str(source)
        if not manifest["rows"]:
            n_in = sum(s["dialogues"] for s in manifest["splits"].values())
            why = (f"no listener rows to write ({n_in} dialogue(s) read; the speaker filter left no listener)"
                   if n_in else f"no dialogues to write ({len(skipped or [])} inputs skipped as bad)")
            raise CorpusError(source or out_dir, why)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_from_disk(str(out_dir))


def _listener_filter(speakers: str | None, exclude: str | None):
    """``speaker -> bool`` from the two regular expressions (``re.search``; None: no condition)."""
    pats = {}
    for flag, pattern in (("--speakers", speakers), ("--exclude-speakers", exclude)):
        try:
            pats[flag] = re.compile(pattern) if pattern is not None else None
        except re.error as err:
            raise ValueError(f"bad {flag} regular expression {pattern!r}: {err}") from None
    inc, exc = pats["--speakers"], pats["--exclude-speakers"]
    return lambda s: (inc is None or inc.search(s) is not None) and (exc is None or exc.search(s) is None)


def _new_folder(out_dir: Path, suffix: str) -> Path:
    """A new, empty sibling of ``out_dir`` named ``.<name>.<pid>-<random><suffix>`` (mode from the umask)."""
    while True:
        path = out_dir.parent / f".{out_dir.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2 ** 31  # someone else's process
    return True


def remove_stale_builds(out_dir: str | Path) -> list[Path]:
    """Remove the temporary folders of earlier builds of ``out_dir`` whose process is gone (or, for
    names without a process id, that are older than this call); return what was removed."""
    out_dir = Path(out_dir)
    now = time.time()
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(?:(\d+)-)?[^.]+\.(tmp|old)$")
    removed = []
    for p in out_dir.parent.iterdir() if out_dir.parent.is_dir() else ():
        m = pattern.match(p.name)
        if not m or not p.is_dir():
            continue
        if m.group(2) == "old" and not is_prepared(out_dir):
            continue  # a replace was cut short: this may be the only copy of the old dataset
        stale = not _process_alive(int(m.group(1))) if m.group(1) else p.stat().st_mtime < now
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _skip_entry(entry) -> dict | str:
    """A reader's ``(path, message)`` skip record as JSON; anything else as its string."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return {"path": str(entry[0]), "error": str(entry[1])}
    return str(entry)


def _write(dialogues, tmp: Path, *, corpus: str, settings: LabelSettings, progress: bool, keep,
           total: int | None) -> dict:
    build = tmp / "_build"
    build.mkdir()
    writers = {s: ArrowWriter(features=FEATURES, path=str(build / f"{s}.arrow")) for s in SPLITS}
    hashes = {s: hashlib.blake2b(digest_size=16) for s in SPLITS}
    stats = {s: _empty_stats() for s in SPLITS}
    bc_counts = {s: _empty_bc_counts() for s in SPLITS}
    seen, sources, low = set(), [], []
    try:
        for d in progress_bar(dialogues, f"{corpus}: mine+frame", "dialogue", total=total, enable=progress):
            if not isinstance(d, Dialogue):
                raise TypeError(f"expected a Dialogue, got {type(d).__name__}")
            if d.split not in SPLITS:
                raise CorpusError(d.source or d.id, f"dialogue {d.id} has split {d.split!r}, "
                                                    f"expected one of {SPLITS}")
            if d.id in seen:
                raise CorpusError(d.source or d.id, f"dialogue id {d.id} appears twice")
            seen.add(d.id)
            if d.source:
                sources.append(d.source)
            d.validate()
            events = mine_dialogue(d, settings)
            stats[d.split]["dialogues"] += 1
            for listener, row in zip(d.speakers, frame_dialogue(d, events, settings)):
                if not keep(listener):
                    continue
                row.update(corpus=d.corpus, split=d.split)
                spans = merge_spans(speech_spans(d.channels[listener]))  # all its speech, backchannels included
                speech_s = float(np.sum(spans[:, 1] - spans[:, 0])) if len(spans) else 0.0
                if speech_s < LOW_SPEECH_S:
                    low.append({"dialogue": d.id, "listener": listener, "split": d.split,
                                "speech_s": round(speech_s, 3),
                                "share": speech_s / (row["n_frames"] * FRAME_S)})
                if not row["prosody_mask"].any():  # no audio: store 0 x 8, read back with row_prosody()
                    row["prosody"] = np.zeros((0, PROSODY_DIM), np.float32)
                    row["prosody_mask"] = np.zeros((0, PROSODY_DIM), bool)
                writers[d.split].write_batch({k: [row[k]] for k in FEATURES})
                _digest(hashes[d.split], row)
                _add_stats(stats[d.split], bc_counts[d.split], row, events[listener].source_counts)
    finally:
        for w in writers.values():
            w.finalize()
    digests = {s: h.hexdigest() for s, h in hashes.items()}
    _save_layout(tmp, build, corpus, digests)
    fingerprint = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    for s in stats.values():
        s["listener_minutes"] = round(s["listener_minutes"], 3)
    return {
        "format": FORMAT,
        "corpus": corpus,
        "source_root": _common_folder(sources),
        "splits": stats,
        "backchannels": bc_counts,
        "rows": sum(s["rows"] for s in stats.values()),
        "low_speech_listeners": low,
        "label_settings": settings.to_dict(),
        "code": code_version(),
        "fingerprint": fingerprint,
        "split_fingerprints": digests,
    }


def _common_folder(paths: list[str]) -> str | None:
    """The deepest folder holding every file in ``paths`` (None when there are none, or no common one)."""
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if paths else None
    except ValueError:  # e.g. different drives
        return None


def _save_layout(tmp: Path, build: Path, corpus: str, digests: dict) -> None:
    """Lay the streamed ``build/<split>.arrow`` files out as ``DatasetDict.save_to_disk`` does.

    ``save_to_disk`` writes the layout (json files, one shard a split) from empty splits; the
    streamed files then take the shards' place, so the data is written once and never re-read.
    """
    info = DatasetInfo(description=f"backchannel listener frames: {corpus}", features=FEATURES)
    empty = InMemoryTable(FEATURES.arrow_schema.empty_table())
    dd = DatasetDict({s: Dataset(empty, info=info.copy(), split=NamedSplit(s), fingerprint=digests[s])
                      for s in SPLITS})
    loud = not are_progress_bars_disabled()
    if loud:
        disable_progress_bars()
    try:
        dd.save_to_disk(str(tmp), num_shards=dict.fromkeys(SPLITS, 1))  # one shard: empty splits load too
    finally:
        if loud:
            enable_progress_bars()
    for s in SPLITS:
        os.replace(build / f"{s}.arrow", tmp / s / "data-00000-of-00001.arrow")
    build.rmdir()


def _replace(tmp: Path, out_dir: Path) -> None:
    """Move the finished build ``tmp`` to ``out_dir``, replacing an old one only after the move."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = _new_folder(out_dir, ".old")
    old.rmdir()
    out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_prepared(out_dir: str | Path) -> tuple[DatasetDict, dict]:
    """``(DatasetDict, manifest)`` of a folder written by ``build_dataset``."""
    p = Path(out_dir)
    if not is_prepared(p):
        raise FileNotFoundError(f"{p}: not a prepared dataset (needs {MANIFEST} and dataset_dict.json; "
                                "build it with backchannel.corpora.dataset.build_dataset)")
    manifest = json.loads((p / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{p / MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return load_from_disk(str(p)), manifest
