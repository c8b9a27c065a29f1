"""Switchboard word alignments of Mississippi State (ISIP "ms98"), one file per side.

``swNNNNA-ms98-a-word.text`` (and ``...B-...``), one word a line, times in seconds::

    sw9001A-ms98-a-0001 0.000000 0.977625 [silence]
    sw9001A-ms98-a-0002 0.977625 1.200000 well

Words are grouped into ``Utterance``s by their utterance id (field 1). Non-speech tokens
(``[silence]``, ``[noise]``, ``[laughter]``, ``[vocalized-noise]``, ``<b_aside>``/``<e_aside>``) are
skipped; words keep their transcription (``uh-huh`` stays ``uh-huh``) except for the ISIP markup,
which is reduced to what was said (ISIP transcription guidelines):

- partial words, where brackets hold the part *not* spoken and ``-`` marks the cut:
  ``sim[ilar]-`` -> ``sim``, ``-[th]e`` -> ``e``, ``[b]ut`` -> ``ut``;
- speech while laughing ``[laughter-yeah]`` -> ``yeah``;
- mispronunciations, ``[said/meant]``: ``[splace/space]`` -> ``splace`` (what was said, as Kaldi's
  ``swbd1_map_words.pl`` does);
- coinages ``{yuppiedom}`` -> ``yuppiedom``; pronunciation variants ``i_1`` -> ``i``.
"""
from __future__ import annotations

import re
from pathlib import Path

from .dialogue import Channel, Dialogue, Utterance, Word
from .errors import CorpusError

NON_SPEECH = frozenset({"[silence]", "[noise]", "[laughter]", "[vocalized-noise]", "<b_aside>", "<e_aside>"})
_NAME = re.compile(r"^(sw\d+)([AB])(-ms98.*)$", re.IGNORECASE)
_LAUGH = re.compile(r"^\[laughter-(.+)\]$")
_MISPRON = re.compile(r"^\[(.+)/[^/\[\]]+\]-?$")
_VARIANT = re.compile(r"_\d+")


def spoken_form(token: str) -> str:
    """The spoken form of an ms98 token (``""`` for non-speech); see the module docstring."""
    if token in NON_SPEECH:
        return ""
    if m := _LAUGH.match(token):
        return spoken_form(m.group(1))
    if m := _MISPRON.match(token):
        return spoken_form(m.group(1))
    if token.startswith("[") and token.endswith("]"):
        return ""  # other bracketed events ([noise]-like)
    word = re.sub(r"\[[^\]]*\]", "", token)  # drop the unspoken part of a partial word
    if word != token:
        word = word.strip("-")  # the cut marker of a partial word
    word = _VARIANT.sub("", word.replace("{", "").replace("}", ""))
    return word


def read_side(path: str | Path) -> tuple[list[Utterance], float]:
    """Utterances of one side (speech only) and the time (seconds) its last line ends."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, "no such file")
    groups: dict[str, list[Word]] = {}
    end = 0.0
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise CorpusError(path, f"expected 4 fields (utt_id start end word), got {len(fields)}", i)
        utt_id, t0, t1, token = fields
        try:
            start, stop = float(t0), float(t1)
        except ValueError:
            raise CorpusError(path, f"non-numeric time in {t0!r} {t1!r}", i) from None
        if start < 0 or stop < start:
            raise CorpusError(path, f"negative duration: word ends ({stop}) before it starts ({start})", i)
        end = max(end, stop)
        groups.setdefault(utt_id, [])
        if word := spoken_form(token):
            groups[utt_id].append(Word(start, stop, word))
    utts = [Utterance(ws[0].start, ws[-1].end, words=tuple(ws)) for ws in groups.values() if ws]
    return sorted(utts, key=lambda u: (u.start, u.end)), end


def b_side_path(a_path: str | Path) -> Path:
    """``.../sw2001A-ms98-a-word.text`` -> ``.../sw2001B-ms98-a-word.text``."""
    a_path = Path(a_path)
    m = _NAME.match(a_path.name)
    if not m:
        raise CorpusError(a_path, "cannot find the B side: file name is not swNNNN[AB]-ms98-...")
    if m.group(2) in "Bb":
        return a_path
    return a_path.with_name(m.group(1) + ("B" if m.group(2) == "A" else "b") + m.group(3))


def read_switchboard(a_path: str | Path, b_path: str | Path | None = None,
                     dialogue_id: str | None = None) -> Dialogue:
    """Read a conversation's A and B sides into a ``Dialogue`` (corpus ``"switchboard"``, speakers A, B).

    ``b_path`` defaults to the file next to ``a_path`` with ``B`` for ``A`` in its name. The id
    defaults to ``swNNNN``; the duration is the last time either file covers (seconds). In a stereo
    recording, side A is channel 0 and B channel 1 (``Channel.audio_channel``), as in the corpus's files.
    """
    a_path = Path(a_path)
    if b_path is None:
        b_path = b_side_path(a_path)
        if b_path == a_path:
            raise CorpusError(a_path, "this is the B side; pass the A side (or both paths)")
        if not b_path.is_file():
            raise CorpusError(a_path, f"B side not found: expected {b_path}")
    a_utts, a_end = read_side(a_path)
    b_utts, b_end = read_side(b_path)
    if dialogue_id is None:
        m = _NAME.match(a_path.name)
        dialogue_id = m.group(1) if m else a_path.name.split("-")[0]
    channels = {"A": Channel("A", a_utts, audio_channel=0), "B": Channel("B", b_utts, audio_channel=1)}
    return Dialogue(id=dialogue_id, corpus="switchboard", channels=channels, duration=max(a_end, b_end),
                    source=str(a_path)).validate()
