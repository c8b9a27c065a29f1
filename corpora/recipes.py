"""One entry point over every corpus recipe: find the corpus, load its dialogues with their splits.

``maptask`` and ``mrda`` are the real corpora (official splits); ``demo`` is the small synthetic corpus the
project generates itself (Map Task format); ``textgrid``, ``stm``, ``rttm`` and ``switchboard`` read a folder of
your own files, assigning splits by a stable hash of the dialogue id (80/10/10) unless a split file is given.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from .dialogue import Dialogue
from .errors import CorpusError

REAL_CORPORA = ("maptask", "mrda")
OWN_FORMATS = {"textgrid": "*.TextGrid", "stm": "*.stm", "rttm": "*.rttm", "switchboard": "*A-ms98-a-word.text"}
CORPORA = REAL_CORPORA + ("demo",) + tuple(OWN_FORMATS)
DEMO_DIR = Path(os.environ.get("BACKCHANNEL_HOME", Path.home() / ".cache" / "backchannel")) / "demo-corpus"


def corpora_root(root: str | Path | None = None) -> Path | None:
    """The folder holding ``maptask/`` and ``mrda/``: ``root``, else ``$BACKCHANNEL_CORPORA``, else None."""
    cand = root or os.environ.get("BACKCHANNEL_CORPORA")
    return Path(cand).expanduser() if cand else None


def corpus_dir(name: str, root: str | Path | None) -> Path:
    """Where corpus ``name`` lives: ``root/name`` if that exists, else ``root`` itself."""
    if name == "demo":
        from .demo import make_demo_corpus

        if not (DEMO_DIR / "maptask" / "timed-units").is_dir():
            make_demo_corpus(DEMO_DIR)
        return DEMO_DIR / "maptask"
    base = corpora_root(root)
    if base is None:
        raise CorpusError(name, "no corpus path: pass --root PATH or set BACKCHANNEL_CORPORA")
    if (base / name).is_dir():
        return base / name
    if base.is_dir():
        return base
    raise CorpusError(base, "corpus folder does not exist")


def hash_split(dialogue_id: str) -> str:
    """Stable 80/10/10 train/dev/test split of a dialogue id (for corpora with no official split)."""
    bucket = int(hashlib.sha1(dialogue_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def load_corpus(name: str, root: str | Path | None = None, *, splits=None, skipped: list | None = None,
                split_file: str | Path | None = None) -> Iterator[Dialogue]:
    """Yield the dialogues of corpus ``name`` (see module docstring) with ``.split`` set.

    ``splits``: keep only these splits. ``skipped``: if a list, bad dialogues are appended as
    ``(path, message)`` and skipped instead of raising ``CorpusError`` (per dialogue: one bad
    recording of an STM/RTTM file holding many does not cost the others).
    """
    if name not in CORPORA:
        raise CorpusError(name, f"unknown corpus; choose one of {', '.join(CORPORA)}")
    path = corpus_dir(name, root)
    if name in ("maptask", "demo"):
        from .maptask import load_maptask

        for d in load_maptask(path, splits=splits, skipped=skipped):
            if name == "demo":
                d.corpus = "demo"
            yield d
        return
    if name == "mrda":
        from .mrda import load_mrda

        yield from load_mrda(path, splits=splits, skipped=skipped)
        return
    yield from _load_own(name, path, splits=splits, skipped=skipped, split_file=split_file)


def count_dialogues(name: str, root: str | Path | None = None) -> int | None:
    """How many dialogues ``load_corpus(name, root)`` will read (before any is skipped), for progress
    totals: listed ids, files, or the distinct recording ids of STM/RTTM files; None if unknown."""
    path = corpus_dir(name, root)
    try:
        if name in ("maptask", "demo"):
            from .maptask import list_maptask

            return len(list_maptask(path))
        if name == "mrda":
            from .mrda import list_mrda

            return len(list_mrda(path))
        files = sorted(path.rglob(OWN_FORMATS[name])) if path.is_dir() else [path]
        if name not in ("stm", "rttm"):
            return len(files)
        field = 0 if name == "stm" else 1
        ids = set()
        for f in files:
            for line in f.read_bytes().splitlines():
                parts = line.split()
                if len(parts) > field and not parts[0].startswith(b";;"):
                    ids.add((f, parts[field]))
        return len(ids)
    except (CorpusError, OSError):
        return None


def _read_own(name: str, file: Path, skipped: list | None) -> list[Dialogue]:
    if name == "textgrid":
        from .textgrid import read_textgrid

        return [read_textgrid(file)]
    if name == "stm":
        from .stm import read_stm

        return read_stm(file, skipped=skipped)
    if name == "rttm":
        from .stm import read_rttm

        return read_rttm(file, skipped=skipped)
    from .switchboard import read_switchboard

    return [read_switchboard(file)]


def _load_own(name, path: Path, *, splits, skipped, split_file) -> Iterator[Dialogue]:
    assigned = {}
    if split_file:
        try:
            assigned = json.loads(Path(split_file).read_text())
        except (OSError, ValueError) as err:
            raise CorpusError(split_file, f"cannot read split file (JSON dialogue id -> split): {err}") from err
    files = sorted(path.rglob(OWN_FORMATS[name])) if path.is_dir() else [path]
    if not files:
        raise CorpusError(path, f"no {OWN_FORMATS[name]} files found")
    for file in files:
        try:
            dialogues = _read_own(name, file, skipped)
        except CorpusError as err:
            if skipped is None:
                raise
            skipped.append((str(file), str(err)))
            continue
        for d in dialogues:
            d.split = assigned.get(d.id, hash_split(d.id))
            if splits is None or d.split in splits:
                yield d
