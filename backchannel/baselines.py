"""Classic baselines for backchannel timing (DESIGN.md, "Evaluation protocol", item 5).

All work on one listener's per-frame arrays on the 80 ms clock (``backchannel.frames``). The rules
return a per-frame 0/1 score whose rising edges are their decisions; :func:`rule_policy` turns it into
onsets through the one decision core (``backchannel.policy.Policy``), with the rule's cooldown as the
refractory time. All rules are causal: the score of frame ``t`` uses frames ``<= t`` only.

- ``random_onsets``: the true count at random times (Ruede et al. 2017's random baseline).
- ``pause_gate``: the rule of voice-agent plugins (speaker pauses 200 ms after >= 0.7 s of speech).
- ``ward_tsukahara``: Ward & Tsukahara (2000)'s low-pitch rule, where prosody exists.
- ``HandcraftedFeatures`` + ``LogisticBaseline``: logistic regression on causal timing and lexical
  features, predicting the 3-class frame action (SILENT / BACKCHANNEL / TAKE_TURN).
- ``TimingWordFeatures`` + ``GradientBoostingBaseline``: gradient-boosted trees on those features plus
  run lengths, more voice-activity windows and the floor party's last two words (categorical).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from backchannel.frames import FRAME_S, frame_start, time_to_frame
from backchannel.lexicon import normalize_word
from backchannel.policy import Policy

_EPS = 1e-9
N_ACTIONS = 3  # SILENT, BACKCHANNEL, TAKE_TURN (backchannel.corpora.events.ACTIONS)


#: Cooldown of the pause gate (s) and refractory time of Ward & Tsukahara's rule (s).
PAUSE_GATE_COOLDOWN, WT_REFRACTORY = 2.5, 0.8


def rule_policy(refractory: float) -> Policy:
    """The policy that speaks at every rising edge of a rule's 0/1 score, ``refractory`` s apart at least."""
    return Policy(on=0.5, refractory=refractory, take_turn=None)


def as_probs(scores) -> np.ndarray:
    """A rule's per-frame 0/1 score as action probabilities ``[n, 3]`` (SILENT, BACKCHANNEL, 0)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.column_stack([1.0 - s, s, np.zeros_like(s)])


def rule_onsets(scores, refractory: float) -> np.ndarray:
    """Onsets (seconds) a rule's score gives through :func:`rule_policy`."""
    return rule_policy(refractory).run(as_probs(scores)).backchannel_onsets


def _frames(seconds: float) -> int:
    """Whole frames needed to span at least ``seconds`` (0.2 s -> 3 frames, 0.11 s -> 2)."""
    return max(1, math.ceil(seconds / FRAME_S - _EPS))


def random_onsets(n: int, duration: float, rng=None, min_gap: float = 0.8) -> np.ndarray:
    """``n`` onsets (seconds, sorted) uniformly at random in ``[0, duration)`` with consecutive
    onsets at least ``min_gap`` s apart (the refractory period of the triggers).

    Uniform over all valid placements: draw ``n`` points in ``[0, duration - (n-1) min_gap)``,
    sort them and push the ``i``-th later by ``i * min_gap``. ``rng``: a ``numpy`` Generator or seed.
    """
    rng = np.random.default_rng(rng)
    if n < 0 or duration <= 0:
        raise ValueError(f"need n >= 0 and duration > 0 s, got n={n}, duration={duration}")
    if n == 0:
        return np.zeros(0)
    slack = duration - (n - 1) * min_gap
    if slack <= 0:
        raise ValueError(f"{n} onsets {min_gap} s apart do not fit in {duration} s")
    return np.sort(rng.uniform(0.0, slack, n)) + np.arange(n) * min_gap


def pause_gate(va_speaker, pause: float = 0.2, min_speech: float = 0.7, threshold: float = 0.5) -> np.ndarray:
    """The voice-agent plugin rule: backchannel when the speaker pauses ``pause`` s after at least
    ``min_speech`` s of speech (then nothing for ``PAUSE_GATE_COOLDOWN`` s: the refractory time of
    :func:`rule_policy`). Causal. Returns the per-frame 0/1 score.

    A frame is voiced when ``va_speaker >= threshold``. Speech is the count of voiced frames (x 0.08
    s) since the speaker's last silence of at least ``pause`` s. A silence "reaches" ``pause`` at the
    ``ceil(pause / 0.08)``-th consecutive unvoiced frame ``t`` (3 frames for 200 ms); if enough
    speech preceded it, the score is 1 from that frame until the speaker resumes (its rising edge is
    the decision, spoken at ``0.08 (t + 1)`` s). Either way the speech count restarts.
    """
    voiced = np.asarray(va_speaker, dtype=np.float64).reshape(-1) >= threshold
    need = _frames(pause)
    scores = np.zeros(len(voiced), dtype=np.float32)
    speech = silent = 0
    gate_open = False
    for t, v in enumerate(voiced):
        if v:
            speech, silent, gate_open = speech + 1, 0, False
            continue
        silent += 1
        if silent == need:
            gate_open = speech * FRAME_S >= min_speech - _EPS
            speech = 0
        scores[t] = gate_open
    return scores


def has_prosody(prosody_mask) -> bool:
    """True when any frame carries prosody (audio exists for this stream)."""
    return prosody_mask is not None and bool(np.any(np.asarray(prosody_mask)))


def low_pitch_frames(f0, valid, percentile: float = 26.0) -> np.ndarray:
    """Ward & Tsukahara's low-pitch flag: valid frames whose F0 is below the ``percentile``-th
    percentile of the speaker's valid F0 frames (any unit: Hz or semitones). Uses the whole stream's
    percentile, as W&T did per speaker; the corpus pipeline's precomputed flag does the same."""
    f0 = np.asarray(f0, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(f0)
    if not valid.any():
        return np.zeros(len(f0), dtype=bool)
    return valid & (f0 < np.percentile(f0[valid], percentile))


def ward_tsukahara(prosody, mask, va_speaker, va_listener, *, f0_col: int = 0, low_pitch_col: int | None = None,
                   percentile: float = 26.0, min_low: float = 0.11, min_speech: float = 0.7, wait: float = 0.7,
                   pause: float = 0.2, threshold: float = 0.5) -> np.ndarray | None:
    """Ward & Tsukahara (2000)'s rule: backchannel ``wait`` (700 ms) after the start of a region of
    low pitch (below the speaker's 26th percentile) lasting at least ``min_low`` (110 ms), coming
    after at least ``min_speech`` (700 ms) of speech, with the listener not speaking, and no
    backchannel of the rule's own in the preceding 800 ms (``WT_REFRACTORY``, the refractory time of
    :func:`rule_policy`). Returns the per-frame 0/1 score, or None without prosody.

    ``prosody`` [n, k] with ``mask`` [n] or [n, k] (False = no prosody for that frame): the
    speaker's F0 is column ``f0_col`` (NaN where unvoiced), or pass ``low_pitch_col`` to use a
    precomputed 0/1 flag instead. Frame version: a low region needs ``ceil(0.11/0.08) = 2``
    consecutive low frames; it is detected at the end of its 2nd frame (where the listener must be
    silent, ``va_listener < threshold``); speech = voiced speaker frames (``va_speaker >= threshold``)
    before the region since the speaker's last silence of ``pause`` s. The score is 1 on the frame
    holding the region's first frame start + ``wait`` (causal: decided 160 ms into the region, spoken
    at the end of that frame, so up to 80 ms after the 700 ms); one onset at most per region; regions
    whose onset frame lies past the stream's end give nothing.

    Without prosody (``has_prosody(mask)`` False) returns None: the rule does not apply there and the
    report must say so rather than count it as silent.
    """
    va_s = np.asarray(va_speaker, dtype=np.float64).reshape(-1)
    va_l = np.asarray(va_listener, dtype=np.float64).reshape(-1)
    n = len(va_s)
    if prosody is None or not has_prosody(mask):
        return None
    prosody = np.asarray(prosody, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if prosody.ndim == 1:
        prosody = prosody[:, None]
    col = f0_col if low_pitch_col is None else low_pitch_col
    valid = mask[:, col] if mask.ndim == 2 else mask
    if not len(prosody) == len(valid) == n == len(va_l):
        raise ValueError(f"prosody {prosody.shape}, mask {mask.shape}, va_speaker ({n},), "
                         f"va_listener ({len(va_l)},) must have the same number of frames")
    if low_pitch_col is None:
        low = low_pitch_frames(prosody[:, col], valid, percentile)
    else:
        low = valid & (np.nan_to_num(prosody[:, col]) > 0.5)

    voiced, listener = va_s >= threshold, va_l >= threshold
    need_low, need_pause = _frames(min_low), _frames(pause)
    scores = np.zeros(n, dtype=np.float32)
    speech = silent = run = run_start = speech_before = 0
    for t in range(n):
        if low[t]:
            if run == 0:
                run_start, speech_before = t, speech
            run += 1
        else:
            run = 0
        if voiced[t]:
            speech, silent = speech + 1, 0
        else:
            silent += 1
            if silent >= need_pause:
                speech = 0
        if run == need_low and speech_before * FRAME_S >= min_speech - _EPS and not listener[t]:
            due = time_to_frame(float(frame_start(run_start)) + wait - 1e-6)  # first frame ending at/after it
            if due < n:
                scores[due] = 1.0
    return scores


# ----------------------------------------------------------------------------------------------
# Logistic regression on handcrafted causal features
# ----------------------------------------------------------------------------------------------
#: Words after which a listener response is likely: backchannel-inviting tokens and question words.
CLAUSE_FINAL = frozenset({
    "okay", "right", "yeah", "yes", "no", "alright", "so", "then", "there", "now", "too", "know", "see",
    "mhm", "uhhuh", "what", "where", "when", "why", "how", "who", "which",
})


def _window_mean(x: np.ndarray, frames: int) -> np.ndarray:
    """Causal mean over the last ``frames`` frames (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(len(x))
    lo = np.maximum(t + 1 - frames, 0)
    return (c[t + 1] - c[lo]) / (t + 1 - lo)


def _window_sum(x: np.ndarray, frames: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(len(x))
    return c[t + 1] - c[np.maximum(t + 1 - frames, 0)]


def _frame_words(text, n: int) -> list[list[str]]:
    """Per-frame text (a string of words, a list of words, or None per frame) -> normalised words."""
    if text is None:
        return [[] for _ in range(n)]
    if len(text) != n:
        raise ValueError(f"text has {len(text)} frames, voice activity {n}")
    out = []
    for item in text:
        words = item.split() if isinstance(item, str) else list(item or [])
        out.append([w for w in (normalize_word(x) for x in words) if w])
    return out


@dataclass
class HandcraftedFeatures:
    """Causal per-frame timing, lexical and prosodic features of one listener stream.

    Row ``t`` uses frames ``<= t`` only. Times are seconds, capped at ``cap`` and ``log1p``-scaled.
    Voiced means ``va >= threshold``; an IPU is speech whose internal silences are shorter than
    ``ipu_gap`` s; a listener IPU of at most ``short_ipu`` s counts as backchannel-like once it has
    ended. Text: the speaker's words per frame (a word appears in the frame where it ends), as
    ``text_key`` in a dataset row; absent text gives zero lexical features. Prosody: ``n_prosody``
    columns, masked values and NaN set to 0, plus a "prosody present" flag.
    """

    threshold: float = 0.5
    ipu_gap: float = 0.2
    short_ipu: float = 1.0
    cap: float = 10.0
    wps_window: float = 2.0
    n_prosody: int = 8
    text_key: str = "text_speaker"

    @property
    def names(self) -> list[str]:
        return ["speaker_va", "listener_va", "log_since_speaker_end", "log_speaker_ipu",
                "speaker_speech_1s", "speaker_speech_2s", "speaker_speech_5s",
                "listener_speech_1s", "listener_speech_5s", "log_since_listener_short_ipu",
                "speaker_words_per_s", "speaker_last_word_clause_final", "log_since_speaker_word",
                ] + [f"prosody_{i}" for i in range(self.n_prosody)] + ["prosody_present"]

    def __call__(self, va_speaker, va_listener, speaker_text=None, prosody=None, prosody_mask=None) -> np.ndarray:
        """Features [n_frames, len(names)] (float32)."""
        va_s = np.asarray(va_speaker, dtype=np.float64).reshape(-1)
        va_l = np.asarray(va_listener, dtype=np.float64).reshape(-1)
        n = len(va_s)
        if len(va_l) != n:
            raise ValueError(f"va_speaker has {n} frames, va_listener {len(va_l)}")
        vs, vl = va_s >= self.threshold, va_l >= self.threshold
        big = self.cap / FRAME_S  # "never" in frames
        need_gap, short = _frames(self.ipu_gap), self.short_ipu / FRAME_S + _EPS

        since_end = np.empty(n)
        ipu = np.zeros(n)
        since_bc = np.empty(n)
        last_v = ipu_start = last_bc = None
        silent, l_run = need_gap, 0
        for t in range(n):
            if vs[t]:
                if silent >= need_gap or ipu_start is None:
                    ipu_start = t
                last_v, silent = t, 0
            else:
                silent += 1
            since_end[t] = big if last_v is None else t - last_v
            ipu[t] = 0 if ipu_start is None else last_v - ipu_start + 1
            if vl[t]:
                l_run += 1
            else:
                if 0 < l_run <= short:
                    last_bc = t - 1
                l_run = 0
            since_bc[t] = big if last_bc is None else t - last_bc

        words = _frame_words(speaker_text, n)
        counts = np.array([len(w) for w in words], dtype=np.float64)
        final = np.zeros(n)
        since_word = np.empty(n)
        last_word, last_word_t = None, None
        for t, ws in enumerate(words):
            if ws:
                last_word, last_word_t = ws[-1], t
            final[t] = last_word in CLAUSE_FINAL
            since_word[t] = big if last_word_t is None else t - last_word_t

        log_time = self.log_time
        cols = [va_s, va_l, log_time(since_end), log_time(ipu),
                _window_mean(va_s, 13), _window_mean(va_s, 25), _window_mean(va_s, 63),
                _window_mean(va_l, 13), _window_mean(va_l, 63), log_time(since_bc),
                _window_sum(counts, _frames(self.wps_window)) / self.wps_window, final, log_time(since_word)]
        pros, present = self._prosody(prosody, prosody_mask, n)
        return np.column_stack(cols + [pros, present]).astype(np.float32)

    def log_time(self, frames) -> np.ndarray:
        """Frame counts as ``log1p`` of seconds capped at ``cap``."""
        return np.log1p(np.minimum(np.asarray(frames, dtype=np.float64) * FRAME_S, self.cap))

    def _prosody(self, prosody, mask, n: int):
        if prosody is None or self.n_prosody == 0:
            return np.zeros((n, self.n_prosody)), np.zeros(n)
        p = np.asarray(prosody, dtype=np.float64).reshape(n, -1)
        if p.shape[1] != self.n_prosody:
            raise ValueError(f"prosody has {p.shape[1]} columns, features expect n_prosody={self.n_prosody}")
        m = np.ones(p.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        m = np.broadcast_to(m.reshape(n, -1), p.shape)
        p = np.where(m & np.isfinite(p), p, 0.0)
        return p, m.any(axis=1).astype(np.float64)

    def from_row(self, row: Mapping) -> np.ndarray:
        """Features of a dataset row (``va_speaker``, ``va_listener``, optional ``text_key``,
        ``prosody``, ``prosody_mask``)."""
        missing = [k for k in ("va_speaker", "va_listener") if k not in row]
        if missing:
            raise KeyError(f"dataset row lacks {missing} (has {sorted(row)})")
        prosody, mask = row.get("prosody"), row.get("prosody_mask")
        if prosody is not None and len(prosody) == 0 and len(row["va_speaker"]) > 0:
            prosody, mask = None, None  # audio-less dataset row (prosody stored 0 x 8): no prosody
        return self(row["va_speaker"], row["va_listener"], row.get(self.text_key), prosody, mask)


def last_words(text, n: int, k: int = 2) -> list[np.ndarray]:
    """The ``k`` most recent words of a per-frame text stream at each frame (causal: a word counts from
    the frame where it ends): ``k`` object arrays [n] of normalised words, the latest first, ``None``
    where there is no such word yet."""
    out = [np.full(n, None, dtype=object) for _ in range(k)]
    recent: list[str] = []
    for t, ws in enumerate(_frame_words(text, n)):
        if ws:
            recent = (ws[::-1] + recent)[:k]
        for j, w in enumerate(recent):
            out[j][t] = w
    return out


def _run_length(mask: np.ndarray) -> np.ndarray:
    """Frames in the current run of True at each frame (0 where False)."""
    t = np.arange(len(mask))
    return t - np.maximum.accumulate(np.where(mask, -1, t))


def _since_last(mask: np.ndarray, never: float) -> np.ndarray:
    """Frames since the last True frame (0 on a True frame; ``never`` before the first)."""
    t = np.arange(len(mask))
    last = np.maximum.accumulate(np.where(mask, t, -1))
    return np.where(last >= 0, t - last, never).astype(np.float64)


WORD_COLUMNS = ("speaker_last_word", "speaker_second_last_word")  # categorical word ids


@dataclass
class TimingWordFeatures(HandcraftedFeatures):
    """:class:`HandcraftedFeatures` plus, for the gradient-boosting baseline: voice-activity means of both
    parties over more windows (``va_windows``, seconds); the current speech run of both parties, the
    listener's silence run (= time since its own last speech; the floor party's is ``log_since_speaker_end``)
    and the mutual-silence run (log seconds, capped); the floor party's last two words as categorical ids.

    Word ids: the ``vocabulary`` (fitted on train by :meth:`fit_vocabulary`: the most frequent floor-party
    words) in order, then one "other" id, then one "no word" id; all < 255 (scikit-learn's native
    categorical support). Causal like the base features.
    """

    va_windows: tuple = (0.24, 0.5, 2.0)
    vocab_size: int = 200
    vocabulary: tuple = ()

    def __post_init__(self):
        if not 0 < self.vocab_size <= 253:
            raise ValueError(f"vocab_size must be 1..253 (word ids + other + none < 255), got {self.vocab_size}")

    def fit_vocabulary(self, rows: Sequence[Mapping]) -> TimingWordFeatures:
        """Keep the ``vocab_size`` most frequent floor-party words of ``rows`` (ties: alphabetical)."""
        counts: dict[str, int] = {}
        for row in rows:
            text = row.get(self.text_key)
            for ws in _frame_words(text, len(text)) if text is not None else []:
                for w in ws:
                    counts[w] = counts.get(w, 0) + 1
        self.vocabulary = tuple(sorted(counts, key=lambda w: (-counts[w], w))[: self.vocab_size])
        return self

    @property
    def other_id(self) -> int:
        return len(self.vocabulary)

    @property
    def no_word_id(self) -> int:
        return len(self.vocabulary) + 1

    def _windows(self) -> list[tuple[str, float]]:
        """(party, seconds) of the ``va_windows`` means the base features lack."""
        have = set(super().names)
        return [(who, w) for who in ("speaker", "listener") for w in self.va_windows
                if f"{who}_speech_{w:g}s" not in have]

    @property
    def names(self) -> list[str]:
        windows = [f"{who}_speech_{w:g}s" for who, w in self._windows()]
        return super().names + windows + [
            "log_speaker_speech_run", "log_listener_speech_run", "log_since_listener_speech",
            "log_mutual_silence_run", *WORD_COLUMNS]

    @property
    def categorical(self) -> np.ndarray:
        """Boolean mask over :attr:`names`: the word-id columns."""
        return np.isin(self.names, WORD_COLUMNS)

    def word_ids(self, words: np.ndarray) -> np.ndarray:
        """Ids of an object array of words (``None`` = no word)."""
        index = {w: i for i, w in enumerate(self.vocabulary)}
        return np.array([self.no_word_id if w is None else index.get(w, self.other_id) for w in words],
                        dtype=np.float64)

    def __call__(self, va_speaker, va_listener, speaker_text=None, prosody=None, prosody_mask=None) -> np.ndarray:
        base = super().__call__(va_speaker, va_listener, speaker_text, prosody, prosody_mask)
        va_s = np.asarray(va_speaker, dtype=np.float64).reshape(-1)
        va_l = np.asarray(va_listener, dtype=np.float64).reshape(-1)
        n, big = len(va_s), self.cap / FRAME_S
        vs, vl = va_s >= self.threshold, va_l >= self.threshold
        windows = [_window_mean(va_s if who == "speaker" else va_l, _frames(w)) for who, w in self._windows()]
        runs = [self.log_time(_run_length(vs)), self.log_time(_run_length(vl)),
                self.log_time(_since_last(vl, big)), self.log_time(_run_length(~vs & ~vl))]
        words = [self.word_ids(w) for w in last_words(speaker_text, n, 2)]
        return np.column_stack([base] + windows + runs + words).astype(np.float32)


class FrameClassifier:
    """A scikit-learn classifier of the per-frame action (0/1/2) on handcrafted features.

    ``fit``/``predict_proba`` take lists of per-listener items: dataset rows (mappings, featurised
    with ``features.from_row``; labels default to ``row[label_key]``) or precomputed feature arrays
    [n_frames, d]. Frames labelled < 0 (padding) are ignored. ``max_frames`` subsamples training
    frames at random (seeded) to bound fitting time.
    """

    def __init__(self, features: HandcraftedFeatures, model, max_frames: int | None, seed: int,
                 label_key: str = "action"):
        self.features, self.model = features, model
        self.max_frames, self.seed, self.label_key = max_frames, seed, label_key

    def featurize(self, item) -> np.ndarray:
        if isinstance(item, np.ndarray) and item.ndim == 2:
            return item
        return self.features.from_row(item)

    def training_frames(self, items: Sequence, labels: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the labelled frames of ``items`` (subsampled to ``max_frames``)."""
        items = list(items)
        if labels is None:
            labels = [item[self.label_key] for item in items]
        if len(labels) != len(items):
            raise ValueError(f"{len(items)} items but {len(labels)} label arrays")
        xs, ys = [], []
        for i, (item, y) in enumerate(zip(items, labels)):
            x, y = self.featurize(item), np.asarray(y).reshape(-1)
            if len(x) != len(y):
                raise ValueError(f"item {i}: {len(x)} feature frames but {len(y)} labels")
            xs.append(x[y >= 0])
            ys.append(y[y >= 0])
        x, y = np.concatenate(xs), np.concatenate(ys).astype(int)
        if self.max_frames is not None and len(y) > self.max_frames:
            keep = np.random.default_rng(self.seed).choice(len(y), self.max_frames, replace=False)
            x, y = x[keep], y[keep]
        return x, y

    def fit(self, items: Sequence, labels: Sequence | None = None):
        self.model.fit(*self.training_frames(items, labels))
        return self

    def predict_proba(self, items: Sequence) -> list[np.ndarray]:
        """Per item, probabilities [n_frames, 3] (a class unseen in training gets 0)."""
        classes = self.model.classes_
        out = []
        for item in items:
            p = self.model.predict_proba(self.featurize(item))
            full = np.zeros((len(p), N_ACTIONS))
            full[:, classes] = p
            out.append(full)
        return out


class LogisticBaseline(FrameClassifier):
    """Multinomial logistic regression (scikit-learn, ``class_weight="balanced"``, standardised
    inputs) on ``HandcraftedFeatures`` (see :class:`FrameClassifier`)."""

    def __init__(self, features: HandcraftedFeatures | None = None, C: float = 1.0, max_iter: int = 1000,
                 max_frames: int | None = None, seed: int = 0, label_key: str = "action"):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced"))
        super().__init__(features or HandcraftedFeatures(), model, max_frames, seed, label_key)


class GradientBoostingBaseline(FrameClassifier):
    """scikit-learn's ``HistGradientBoostingClassifier`` on :class:`TimingWordFeatures` (the word ids as
    native categorical features), early-stopped on a 10 % validation share of the training frames
    (see :class:`FrameClassifier`). ``class_weight``: ``"balanced"`` or None. Fitting on dataset rows
    first fits the word vocabulary on them."""

    def __init__(self, features: TimingWordFeatures | None = None, *, class_weight: str | None = None,
                 max_iter: int = 100, learning_rate: float = 0.25, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 100, max_frames: int | None = None, seed: int = 0,
                 label_key: str = "action"):
        features = features or TimingWordFeatures()
        model = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
            min_samples_leaf=min_samples_leaf, categorical_features=features.categorical,
            class_weight=class_weight, early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
            random_state=seed)
        super().__init__(features, model, max_frames, seed, label_key)

    def fit(self, items: Sequence, labels: Sequence | None = None):
        items = list(items)
        rows = [it for it in items if isinstance(it, Mapping)]
        if rows and not self.features.vocabulary:
            self.features.fit_vocabulary(rows)
        return super().fit(items, labels)
