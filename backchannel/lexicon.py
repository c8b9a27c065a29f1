"""Backchannel lexicon: word forms, their semantic types, and the form normaliser.

Types (DESIGN.md): ``continuer`` (mhm, uh-huh), ``agreement`` (yeah, right, exactly),
``assessment`` (wow, great, nice), ``surprise`` (oh, really), ``acknowledgement`` (okay, I see).
A corpus-tagged backchannel with no lexicon word is an echo (``ECHO``, no type); a lone filler (uh, um,
er) is no backchannel at all.
"""
from __future__ import annotations

import re

BC_TYPES = ("continuer", "agreement", "assessment", "surprise", "acknowledgement")
BC_TYPE_INDEX = {name: i for i, name in enumerate(BC_TYPES)}
#: ``bc_type`` of a corpus-tagged backchannel with no lexicon word: a repeat of what was heard ("east",
#: "up to this"). Kept as a backchannel for timing; not one of the ``BC_TYPES`` (no type target, never said).
ECHO = "echo"

# Single-word forms after normalisation (see ``normalize_word``).
WORD_TYPES: dict[str, str] = {
    # continuers
    "mhm": "continuer", "uhhuh": "continuer", "hmm": "continuer", "mm": "continuer",
    "mmm": "continuer", "huh": "continuer", "ah": "continuer",
    # agreement; "uh-uh" (and "mm-mm", "huh-uh"...), "no", "nope" are negative tokens (see NEGATIVE_WORDS)
    "yeah": "agreement", "yes": "agreement", "yep": "agreement", "yup": "agreement", "ya": "agreement",
    "right": "agreement", "exactly": "agreement", "sure": "agreement", "true": "agreement",
    "absolutely": "agreement", "definitely": "agreement", "aye": "agreement", "correct": "agreement",
    "uh-uh": "agreement", "no": "agreement", "nope": "agreement",
    # assessment
    "wow": "assessment", "great": "assessment", "nice": "assessment", "cool": "assessment",
    "good": "assessment", "excellent": "assessment", "interesting": "assessment", "fine": "assessment",
    "lovely": "assessment", "brilliant": "assessment", "perfect": "assessment", "neat": "assessment",
    "wonderful": "assessment",
    # surprise
    "oh": "surprise", "really": "surprise", "gosh": "surprise", "whoa": "surprise",
    # acknowledgement
    "okay": "acknowledgement", "alright": "acknowledgement", "see": "acknowledgement", "aha": "acknowledgement",
    "righto": "acknowledgement", "gotcha": "acknowledgement",
}

# Negative tokens: typed ``agreement`` (a listener agreeing with a negative statement: "it's not
# there" - "uh-uh"), but the lexicon rule alone never accepts them: as often as not they answer a
# question. A corpus tag can still make one a backchannel.
NEGATIVE_WORDS = frozenset({"uh-uh", "no", "nope"})

# Hesitation fillers: allowed inside a backchannel ("uh yeah"), never a backchannel on their own.
FILLERS = frozenset({"uh", "um", "uhm", "er", "erm", "ehm", "eh"})

# Multi-word forms whose type differs from their last typed word.
PHRASE_TYPES: dict[str, str] = {
    "i see": "acknowledgement", "oh i see": "acknowledgement", "oh really": "surprise",
    "that's right": "agreement", "that's true": "agreement", "of course": "agreement",
    "oh wow": "assessment", "that's great": "assessment", "that's good": "assessment",
    "that's interesting": "assessment", "that's nice": "assessment", "oh no": "surprise",
    "no way": "surprise", "all right": "acknowledgement", "i know": "agreement",
    "got it": "acknowledgement", "got you": "acknowledgement", "i got it": "acknowledgement",
    "i've got it": "acknowledgement", "makes sense": "acknowledgement", "that makes sense": "acknowledgement",
    "i understand": "acknowledgement",
}

# Words that may appear inside a backchannel phrase without carrying a type of their own.
FILLER_WORDS = frozenset({"i", "that's", "of", "course", "all", "way", "know", "got", "you", "it", "i've",
                          "makes", "sense", "understand"}) | FILLERS

# Spelling variants -> one form. American transcription conventions (Switchboard, Fisher, CallHome,
# ICSI/MRDA, Santa Barbara: "um-hum", "unhunh", "huh-uh", "mm-hmm"...) and British/Scottish ones (Map Task).
_ALIASES = {
    # mhm
    "mmhmm": "mhm", "mm-hmm": "mhm", "mmhm": "mhm", "mm-hm": "mhm", "mhmm": "mhm", "m-hm": "mhm", "m-hmm": "mhm",
    "mmm-hmm": "mhm", "mm-hmmm": "mhm", "hm-hmm": "mhm", "hmm-hmm": "mhm", "hmm-hmm-hmm": "mhm", "hm-hm": "mhm",
    "um-hum": "mhm", "uh-hum": "mhm", "um-hmm": "mhm", "uhm-hmm": "mhm", "uhum": "mhm", "umhum": "mhm",
    "mhm-mhm": "mhm",
    # uh-huh
    "uh-huh": "uhhuh", "uh-hu": "uhhuh", "uh-hunh": "uhhuh", "unhunh": "uhhuh", "unh-hunh": "uhhuh",
    "un-hunh": "uhhuh", "uhhunh": "uhhuh",
    # negative tokens
    "uhuh": "uh-uh", "huh-uh": "uh-uh", "hunh-uh": "uh-uh", "hunh-unh": "uh-uh", "unh-unh": "uh-uh",
    "uh-unh": "uh-uh", "nuh-uh": "uh-uh", "mm-mm": "uh-uh", "mm-mmm": "uh-uh", "hm-mm": "uh-uh",
    "hmm-mm": "uh-uh", "hum-um": "uh-uh", "uh-uh": "uh-uh",
    # hmm, huh, mm
    "hm": "hmm", "hmmm": "hmm", "hmmmm": "hmm", "hunh": "huh", "mmmm": "mmm", "ahh": "ah",
    # okay, alright, yeah
    "ok": "okay", "o_k": "okay", "o.k.": "okay", "o.k": "okay", "okey": "okay", "okey-dokey": "okay",
    "okey-doke": "okay", "okie-dokie": "okay", "kay": "okay", "mkay": "okay", "m'kay": "okay", "mmkay": "okay",
    "aright": "alright", "alrighty": "alright", "yeh": "yeah", "yea": "yeah", "yah": "yeah", "ye": "yeah",
    "yeah-yeah": "yeah yeah", "yeap": "yep", "ah-ha": "aha", "a-ha": "aha", "right-o": "righto",
    "rightee-ho": "righto", "righty-ho": "righto", "rightio": "righto",
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


def is_filler_only(words) -> bool:
    """True when ``words`` are one or more hesitation fillers and nothing else (``uh``, ``um``, ``er``...)."""
    form = normalize_form(words).split()
    return bool(form) and all(w in FILLERS for w in form)


def is_lexical_backchannel(words, max_words: int) -> bool:
    """True when ``words`` are 1..``max_words`` words, all from the lexicon, with at least one typed word
    that is not a negative token (``NEGATIVE_WORDS``)."""
    form = normalize_form(words).split()
    if not 1 <= len(form) <= max_words:
        return False
    if " ".join(form) in PHRASE_TYPES:
        return True
    return all(w in WORD_TYPES or w in FILLER_WORDS for w in form) and \
        any(w in WORD_TYPES and w not in NEGATIVE_WORDS for w in form)


def backchannel_type(words) -> str:
    """Semantic type of a backchannel form: a phrase entry, else the last typed word, else ``ECHO``.

    ``oh okay`` -> acknowledgement, ``oh really`` -> surprise, ``yeah yeah`` -> agreement. Forms with no
    lexicon word are corpus-tagged repeats ("south", "the lake") that confirm what was heard: ``ECHO``,
    which is not one of ``BC_TYPES``.
    """
    form = normalize_form(words)
    if form in PHRASE_TYPES:
        return PHRASE_TYPES[form]
    typed = [WORD_TYPES[w] for w in form.split() if w in WORD_TYPES]
    if not typed:
        return ECHO
    # A leading "oh" marks a change of state; the word after it names the response type.
    return typed[-1]
