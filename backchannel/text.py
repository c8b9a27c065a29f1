"""Word-level tokeniser for the text stream (docs/design.md: a word becomes visible in the frame where it ends).

No downloads, no fitted vocabulary, deterministic across processes and machines:

- words are normalised with :func:`backchannel.lexicon.normalize_word` (``"Uh-huh,"`` -> ``"uhhuh"``);
- id ``0`` (:data:`PAD_ID`) means "no word";
- every word of the backchannel lexicon (single-word forms, words of multi-word forms, filler words)
  gets its own id ``1..n_lexicon`` in sorted order, so the cue words never share a bucket;
- ``words="all"``: any other word is hashed (CRC-32 of its UTF-8 bytes) into the remaining buckets
  ``n_lexicon+1 .. vocab_size-1`` (collisions between content words are accepted);
- ``words="function"``: English function words (:data:`FUNCTION_WORDS`: articles, pronouns,
  prepositions, conjunctions, auxiliaries, discourse markers) get their own ids after the lexicon's and
  every other word one shared ``CONTENT`` id: a text stream that carries syntax and cue words but no
  corpus-specific vocabulary (Map Task's landmarks, a meeting's jargon), for models that must transfer.

Per 80 ms frame and party, at most ``k`` ids are kept (the *last* ``k`` words that became visible
in that frame, the most recent ones); the rest of the ``k`` slots are padded with 0.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from backchannel.lexicon import FILLER_WORDS, PHRASE_TYPES, WORD_TYPES, normalize_word

PAD_ID = 0
VOCAB_SIZE = 4096
WORDS_PER_FRAME = 2

LEXICON_WORDS: tuple[str, ...] = tuple(
    sorted(set(WORD_TYPES) | set(FILLER_WORDS) | {w for phrase in PHRASE_TYPES for w in phrase.split()})
)
WORD_SETS = ("all", "function")
#: Closed-class English words (normalised), the ``words="function"`` vocabulary besides the lexicon.
FUNCTION_WORDS: tuple[str, ...] = tuple(sorted(set("""
a an the this that these those there here
i me my mine myself you your yours yourself he him his himself she her hers herself it its itself
we us our ours ourselves they them their theirs themselves one ones someone something anything nothing
everything everyone anyone somebody anybody nobody
and or but nor so because if then than though although while when whenever where wherever whereas
until unless since as whether either neither both
of to in on at by for with from into onto over under above below about around through across along
between behind beside past up down out off away back towards toward near after before during without
within upon against among
is am are was were be been being do does did doing done have has had having will would shall should
can could may might must ought going gonna wanna gotta got get gets getting
not no yes never always just only also too very really quite rather even still already yet again more
most less least much many some any all each every other another such same own few lot lots
what which who whom whose why how
now well like um uh er erm hm oh ah okay right yeah so actually basically anyway
i'm you're he's she's it's we're they're i've you've we've they've i'll you'll it'll we'll they'll i'd
you'd he'd she'd we'd they'd isn't aren't wasn't weren't don't doesn't didn't haven't hasn't hadn't won't
wouldn't can't cannot couldn't shouldn't that's there's here's what's let's
""".split()) - set(LEXICON_WORDS)))


class TextTokenizer:
    """Maps the per-frame text stream to fixed-size id arrays.

    ``vocab_size``: number of ids including :data:`PAD_ID`; ``k``: ids kept per frame and party;
    ``words``: ``"all"`` or ``"function"`` (module docstring). Remembers the ids of each per-frame text it
    has seen (the same few thousand strings recur millions of times in a corpus).
    """

    def __init__(self, vocab_size: int = VOCAB_SIZE, k: int = WORDS_PER_FRAME, words: str = "all"):
        if words not in WORD_SETS:
            raise ValueError(f"words must be one of {WORD_SETS}, got {words!r}")
        fixed = LEXICON_WORDS + (FUNCTION_WORDS if words == "function" else ())
        n_fixed = len(fixed) + 1
        if vocab_size <= n_fixed:
            raise ValueError(f"vocab_size {vocab_size} must exceed {n_fixed} (pad + fixed words, words={words!r})")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.vocab_size, self.k, self.words = vocab_size, k, words
        self._fixed = {w: i + 1 for i, w in enumerate(fixed)}
        self._n_fixed = n_fixed
        self._memo: dict[str, list[int]] = {}

    @property
    def fingerprint(self) -> str:
        """SHA-256 (16 hex) of what decides the ids: the fixed words in order, ``words``, ``vocab_size``, ``k``.
        A checkpoint records it, so a model never reads text tokenized by another vocabulary."""
        import hashlib

        spec = "\n".join(self._fixed) + f"\n{self.words}:{self.vocab_size}:{self.k}"
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    @property
    def content_id(self) -> int | None:
        """The one id of every non-function word with ``words="function"`` (None with ``"all"``)."""
        return self._n_fixed if self.words == "function" else None

    def word_id(self, word: str) -> int:
        """Id of one word (``PAD_ID`` if it normalises to nothing)."""
        w = normalize_word(word)
        if not w:
            return PAD_ID
        if w in self._fixed:
            return self._fixed[w]
        if self.words == "function":
            return self._n_fixed
        return self._n_fixed + zlib.crc32(w.encode("utf-8")) % (self.vocab_size - self._n_fixed)

    def encode_frame(self, text: str | Sequence[str]) -> list[int]:
        """``k`` ids for the words visible in one frame: a space-separated string or a list of words."""
        if isinstance(text, str):
            ids = self._memo.get(text)
            if ids is None:
                ids = self._memo[text] = self._encode(text.split())
            return ids
        return self._encode([w for item in text for w in str(item).split()])

    def _encode(self, words: list[str]) -> list[int]:
        ids = [i for i in (self.word_id(w) for w in words) if i != PAD_ID][-self.k :]
        return ids + [PAD_ID] * (self.k - len(ids))

    def encode_stream(self, frames: Sequence[str | Sequence[str]]) -> np.ndarray:
        """int64 array ``[n_frames, k]`` for one party's per-frame text."""
        out = np.zeros((len(frames), self.k), dtype=np.int64)
        for t, text in enumerate(frames):
            if text:
                out[t] = self.encode_frame(text)
        return out

    def encode_pair(self, text_listener: Sequence, text_speaker: Sequence) -> np.ndarray:
        """int64 array ``[n_frames, 2, k]``: listener ids at ``[:, 0]``, speaker ids at ``[:, 1]``."""
        if len(text_listener) != len(text_speaker):
            raise ValueError(
                f"text streams differ in length: listener {len(text_listener)} frames, "
                f"speaker {len(text_speaker)} frames"
            )
        return np.stack([self.encode_stream(text_listener), self.encode_stream(text_speaker)], axis=1)


def tokenizer_for(config) -> TextTokenizer | None:
    """The tokenizer a backbone config (a ``TimingConfig`` or its dict) reads its text with; None without text."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    if not get("use_text", False):
        return None
    return TextTokenizer(get("vocab_size", VOCAB_SIZE), get("text_k", WORDS_PER_FRAME), get("text_words", "all"))
