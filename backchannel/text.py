"""Word-level tokeniser for the text stream (DESIGN.md: a word becomes visible in the frame where it ends).

No downloads, no fitted vocabulary, deterministic across processes and machines:

- words are normalised with :func:`backchannel.lexicon.normalize_word` (``"Uh-huh,"`` -> ``"uhhuh"``);
- id ``0`` (:data:`PAD_ID`) means "no word";
- every word of the backchannel lexicon (single-word forms, words of multi-word forms, filler words)
  gets its own id ``1..n_lexicon`` in sorted order, so the cue words never share a bucket;
- any other word is hashed (CRC-32 of its UTF-8 bytes) into the remaining buckets
  ``n_lexicon+1 .. vocab_size-1``. Collisions between content words are accepted.

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


class TextTokenizer:
    """Maps the per-frame text stream to fixed-size id arrays.

    ``vocab_size``: number of ids including :data:`PAD_ID`; ``k``: ids kept per frame and party.
    """

    def __init__(self, vocab_size: int = VOCAB_SIZE, k: int = WORDS_PER_FRAME):
        n_fixed = len(LEXICON_WORDS) + 1
        if vocab_size <= n_fixed:
            raise ValueError(f"vocab_size {vocab_size} must exceed {n_fixed} (pad + lexicon words)")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.vocab_size = vocab_size
        self.k = k
        self._fixed = {w: i + 1 for i, w in enumerate(LEXICON_WORDS)}
        self._n_fixed = n_fixed

    def word_id(self, word: str) -> int:
        """Id of one word (``PAD_ID`` if it normalises to nothing)."""
        w = normalize_word(word)
        if not w:
            return PAD_ID
        if w in self._fixed:
            return self._fixed[w]
        return self._n_fixed + zlib.crc32(w.encode("utf-8")) % (self.vocab_size - self._n_fixed)

    def encode_frame(self, text: str | Sequence[str]) -> list[int]:
        """``k`` ids for the words visible in one frame: a space-separated string or a list of words."""
        words = text.split() if isinstance(text, str) else [w for item in text for w in str(item).split()]
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
