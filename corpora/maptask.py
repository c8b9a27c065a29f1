"""Reader for the HCRC Map Task Corpus, NXT release (two-party, task-oriented dialogues).

Layout (``<root>`` is the NXT folder that holds ``timed-units/`` and ``moves/``)::

    timed-units/<dialogue>.<g|f>.timed-units.xml   <tu id start end>word</tu>, <sil>, <noi>
    moves/<dialogue>.<g|f>.moves.xml               <move label=...> and <ims> over timed-unit ranges

Speakers are ``g`` (instruction giver) and ``f`` (follower); times are seconds on a shared clock.
Each ``<move>`` becomes one ``Utterance`` whose words are the ``<tu>`` elements in its range(s)
(``<sil>``/``<noi>`` inside a move are not words), ``act`` is the move label and
``gold_backchannel`` is ``label == "acknowledge"``. Words outside every move (under an ``<ims>``
element, or referenced by nothing) still count as speech: each ``<ims>`` with words, and each run
of unreferenced words, becomes an ``Utterance`` with ``act=None, gold_backchannel=False``.
Moves without words (silence or noise only) are dropped.

Official split for this project, by name prefix: train ``q1``-``q5``, dev ``q6``, test ``q7``-``q8``.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path

from .dialogue import Channel, Dialogue, Utterance, Word, gc_paused
from .errors import CorpusError

SPEAKERS = ("g", "f")
MOVE_LABELS = frozenset({
    "acknowledge", "align", "check", "clarify", "explain", "instruct", "query_w", "query_yn",
    "ready", "reply_n", "reply_w", "reply_y", "uncodable",
})
BACKCHANNEL_LABEL = "acknowledge"
OVERLAP_TOLERANCE_S = 0.02  # seconds two words of one speaker may overlap (rounding in the release)
_SPLITS = {"q1": "train", "q2": "train", "q3": "train", "q4": "train", "q5": "train",
           "q6": "dev", "q7": "test", "q8": "test"}
_HREF = re.compile(r"^([^#]+)#id\(([^)]+)\)(?:\.\.id\(([^)]+)\))?$")
_NITE_CHILD = "{http://nite.sourceforge.net/}child"


def maptask_root(path: str | Path) -> Path:
    """The NXT folder holding ``timed-units/`` and ``moves/``, given it, its ``timed-units/``, or a parent."""
    path = Path(path)
    for cand in (path, path.parent, path / "maptask"):
        if (cand / "timed-units").is_dir():
            return cand
    raise CorpusError(path, "no Map Task timed-units/ folder here")


def maptask_split(dialogue_id: str) -> str | None:
    """Official split (``train``/``dev``/``test``) from the name prefix; None for a non-corpus name."""
    return _SPLITS.get(dialogue_id[:2])


def list_maptask(root: str | Path) -> list[str]:
    """Sorted dialogue ids that have at least one timed-units file."""
    tu_dir = maptask_root(root) / "timed-units"
    return sorted({p.name.split(".")[0] for p in tu_dir.glob("*.timed-units.xml")})


def _parse(path: Path) -> ET.Element:
    if not path.is_file():
        raise CorpusError(path, "missing file (a dialogue needs timed-units and moves files for both g and f)")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        raise CorpusError(path, f"malformed XML: {err}", f"line {err.position[0]}") from None
    except (LookupError, ValueError) as err:  # an unknown or wrong encoding in the XML declaration
        raise CorpusError(path, f"malformed XML: {type(err).__name__}: {err}") from None


def _time(path: Path, el: ET.Element, attr: str) -> float:
    try:
        t = float(el.attrib[attr])
    except (KeyError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and t >= 0):
        raise CorpusError(path, f"<{el.tag}> has missing, negative or non-numeric {attr}={el.get(attr)!r}",
                          el.get("id"))
    return t


def _read_speaker(root: Path, dialogue_id: str, speaker: str) -> list[Utterance]:
    tu_path = root / "timed-units" / f"{dialogue_id}.{speaker}.timed-units.xml"
    mv_path = root / "moves" / f"{dialogue_id}.{speaker}.moves.xml"
    elems = list(_parse(tu_path))
    index = {el.get("id"): i for i, el in enumerate(elems)}
    words: dict[int, Word] = {}  # element position -> word, for <tu> only
    for i, el in enumerate(elems):
        if el.tag != "tu":
            continue
        start, end = _time(tu_path, el, "start"), _time(tu_path, el, "end")
        if end < start:
            raise CorpusError(tu_path, f"reversed word times {start}..{end}", el.get("id"))
        words[i] = Word(start, end, (el.text or "").strip())
    _check_overlap(tu_path, [(w, elems[i].get("id")) for i, w in words.items()])

    owner: dict[int, str] = {}  # position of a <tu> -> id of the move/ims that covers it
    utts: list[Utterance] = []
    for el in _parse(mv_path):
        if el.tag not in ("move", "ims"):
            continue
        eid = el.get("id", "?")
        label = el.get("label") if el.tag == "move" else None
        if el.tag == "move" and label not in MOVE_LABELS:
            problem = "move without label" if not label else f"unknown move label {label!r}"
            raise CorpusError(mv_path, f"{problem} (known: {', '.join(sorted(MOVE_LABELS))})", eid)
        positions = []
        for child in el.iter(_NITE_CHILD):
            for i in _resolve(mv_path, eid, child.get("href", ""), tu_path.name, index):
                if i in words:
                    if i in owner:
                        raise CorpusError(mv_path, f"timed unit {elems[i].get('id')} also in {owner[i]}", eid)
                    owner[i] = eid
                    positions.append(i)
        if positions:
            utts.append(_utterance([words[i] for i in sorted(positions)], label))
    run: list[Word] = []  # words referenced by no move or ims, grouped into runs
    for i in sorted(words):
        if i in owner:
            if run:
                utts.append(_utterance(run, None))
            run = []
        else:
            run.append(words[i])
    if run:
        utts.append(_utterance(run, None))
    return sorted(utts, key=lambda u: (u.start, u.end))


def _resolve(path: Path, eid: str, href: str, tu_name: str, index: dict) -> Iterable[int]:
    m = _HREF.match(href)
    if not m:
        raise CorpusError(path, f"bad nite:child href {href!r}", eid)
    target, first, last = m.group(1), m.group(2), m.group(3) or m.group(2)
    if target != tu_name:
        raise CorpusError(path, f"href points into {target}, expected {tu_name}", eid)
    for ref in (first, last):
        if ref not in index:
            raise CorpusError(path, f"href names unknown timed unit {ref!r}", eid)
    if index[last] < index[first]:
        raise CorpusError(path, f"reversed range {first}..{last}", eid)
    return range(index[first], index[last] + 1)


def _utterance(words: list[Word], label: str | None) -> Utterance:
    return Utterance(words[0].start, max(w.end for w in words), tuple(words), label,
                     label == BACKCHANNEL_LABEL)


def _check_overlap(path: Path, words: list[tuple[Word, str]]) -> None:
    """Raise when two words of one speaker overlap by more than ``OVERLAP_TOLERANCE_S``."""
    last_end, last_id = float("-inf"), None
    for w, wid in sorted(words, key=lambda x: (x[0].start, x[0].end)):
        if w.start < last_end - OVERLAP_TOLERANCE_S:
            raise CorpusError(path, f"words of one speaker overlap by {last_end - w.start:.3f} s "
                              f"(> {OVERLAP_TOLERANCE_S} s tolerance) with {last_id}", wid)
        if w.end > last_end:
            last_end, last_id = w.end, wid


def read_maptask_dialogue(timed_units_dir_or_root: str | Path, dialogue_id: str) -> Dialogue:
    """One dialogue with channels ``g`` and ``f``; raises ``CorpusError`` on bad or missing files."""
    root = maptask_root(timed_units_dir_or_root)
    with gc_paused():
        channels = {s: Channel(s, _read_speaker(root, dialogue_id, s)) for s in SPEAKERS}
    source = root / "timed-units" / f"{dialogue_id}.g.timed-units.xml"
    ends = [u.end for c in channels.values() for u in c.utterances]
    if not ends:
        raise CorpusError(source, "empty dialogue: no timed words for g or f")
    # Times are checked while parsing (finite, >= 0, end >= start), so Dialogue.validate() is not needed.
    return Dialogue(dialogue_id, "maptask", channels, max(ends), str(source), maptask_split(dialogue_id))


def load_maptask(root: str | Path, splits: Iterable[str] | None = None,
                 skipped: list | None = None) -> Iterator[Dialogue]:
    """Every dialogue in sorted order, optionally only those in ``splits`` (``{"test"}``).

    With a ``skipped`` list, a dialogue that raises ``CorpusError`` (a bad file, or a name outside the
    ``q1``-``q8`` split prefixes) is recorded there as ``(path, message)`` and skipped; without one the
    error propagates. With ``splits``, dialogues without a split are not read.
    """
    root = maptask_root(root)
    keep = set(splits) if splits is not None else None
    for did in list_maptask(root):
        if keep is not None and maptask_split(did) not in keep:
            continue
        try:
            if maptask_split(did) is None:
                raise CorpusError(root / "timed-units" / f"{did}.g.timed-units.xml",
                                  f"dialogue {did} has no split (Map Task splits go by the name prefix "
                                  f"{', '.join(_SPLITS)})")
            yield read_maptask_dialogue(root, did)
        except CorpusError as err:
            if skipped is None:
                raise
            skipped.append((err.path, str(err)))
