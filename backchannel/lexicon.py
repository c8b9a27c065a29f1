"""Backchannel lexicon: word forms, their semantic types, and the form normaliser.

Types (DESIGN.md): ``continuer`` (mhm, uh-huh), ``agreement`` (yeah, right, exactly),
``assessment`` (wow, great, nice), ``surprise`` (oh, really), ``acknowledgement`` (okay, I see).
"""
from __future__ import annotations

import re

BC_TYPES = ("continuer", "agreement", "assessment", "surprise", "acknowledgement")
BC_TYPE_INDEX = {name: i for i, name in enumerate(BC_TYPES)}

# Single-word forms after normalisation (see ``normalize_word``).
WORD_TYPES: dict[str, str] = {
    # continuers
    "mhm": "continuer", "uhhuh": "continuer", "hmm": "continuer", "mm": "continuer",
    "uhum": "continuer", "mmm": "continuer", "huh": "continuer", "ah": "continuer", "uh": "continuer",
    # agreement
    "yeah": "agreement", "yes": "agreement", "yep": "agreement", "yup": "agreement", "ya": "agreement",
    "right": "agreement", "exactly": "agreement", "sure": "agreement", "true": "agreement",
    "absolutely": "agreement", "definitely": "agreement", "aye": "agreement", "correct": "agreement",
    # assessment
    "wow": "assessment", "great": "assessment", "nice": "assessment", "cool": "assessment",
    "good": "assessment", "excellent": "assessment", "interesting": "assessment", "fine": "assessment",
    "lovely": "assessment", "brilliant": "assessment", "perfect": "assessment", "neat": "assessment",
    "wonderful": "assessment",
    # surprise
    "oh": "surprise", "really": "surprise", "gosh": "surprise", "whoa": "surprise",
    # acknowledgement
    "okay": "acknowledgement", "alright": "acknowledgement", "see": "acknowledgement",
}

# Multi-word forms whose type differs from their last typed word.
PHRASE_TYPES: dict[str, str] = {
    "i see": "acknowledgement", "oh i see": "acknowledgement", "oh really": "surprise",
    "that's right": "agreement", "that's true": "agreement", "of course": "agreement",
    "oh wow": "assessment", "that's great": "assessment", "that's good": "assessment",
    "that's interesting": "assessment", "that's nice": "assessment", "oh no": "surprise",
    "no way": "surprise", "all right": "acknowledgement", "i know": "agreement",
}

# Words that may appear inside a backchannel phrase without carrying a type of their own.
FILLER_WORDS = frozenset({"i", "that's", "of", "course", "all", "no", "way", "know", "oh", "uh", "um"})

_ALIASES = {
    "mmhmm": "mhm", "mm-hmm": "mhm", "mmhm": "mhm", "mhmm": "mhm", "mhm": "mhm", "hm": "hmm",
    "hmm": "hmm", "mm-mm": "mm", "uh-huh": "uhhuh", "uhhuh": "uhhuh", "uh-hu": "uhhuh",
    "uh-hum": "uhum", "um-hum": "uhum", "ok": "okay", "o_k": "okay", "o.k.": "okay", "o.k": "okay",
    "okey": "okay", "okey-dokey": "okay", "okey-doke": "okay", "okie-dokie": "okay", "okay": "okay", "aright": "alright", "alright": "alright", "yeh": "yeah",
    "yea": "yeah", "yah": "yeah", "ye": "yeah", "yep": "yep", "mmm": "mmm", "mm": "mm",
}

_STRIP = re.compile(r"^[\s\"'(\[{<]+|[\s\"'.,;:!?)\]}>]+$")


def normalize_word(word: str) -> str:
    """Lower-case, strip punctuation and markup, and map spelling variants to one form."""
    w = _STRIP.sub("", word.strip().lower())
    w = w.replace("’", "'")
    return _ALIASES.get(w, w)


def normalize_form(words) -> str:
    """The normalised form of a sequence of words, space-joined (``"oh okay"``)."""
    return " ".join(w for w in (normalize_word(x) for x in words) if w)


def is_lexical_backchannel(words, max_words: int = 3) -> bool:
    """True when ``words`` are 1..``max_words`` words, all from the lexicon, with at least one typed word."""
    form = normalize_form(words).split()
    if not 1 <= len(form) <= max_words:
        return False
    if " ".join(form) in PHRASE_TYPES:
        return True
    return all(w in WORD_TYPES or w in FILLER_WORDS for w in form) and any(w in WORD_TYPES for w in form)


def backchannel_type(words) -> str:
    """Semantic type of a backchannel form: a phrase entry, else the last typed word, else ``acknowledgement``.

    ``oh okay`` -> acknowledgement, ``oh really`` -> surprise, ``yeah yeah`` -> agreement. Forms with no
    lexicon word are corpus-tagged repeats ("south", "the lake") that confirm what was heard: acknowledgement.
    """
    form = normalize_form(words)
    if form in PHRASE_TYPES:
        return PHRASE_TYPES[form]
    typed = [WORD_TYPES[w] for w in form.split() if w in WORD_TYPES]
    if not typed:
        return "acknowledgement"
    # A leading "oh" marks a change of state; the word after it names the response type.
    return typed[-1]
