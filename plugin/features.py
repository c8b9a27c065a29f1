"""Per-80 ms-frame backbone inputs for streaming listeners, built causally.

:class:`StreamingFeatures` turns what a duplex loop has at the end of frame ``t`` into one frame of
``backchannel.inputs.FrameInputs`` (batch 1), following the streaming protocol of every stage
(``init_state(batch)``, ``step(state, x)``, ``reset(states, mask)``; a state per session). Two paths:

- **features given** (tests, replays of framed datasets): one frame of the dataset columns
  (``va_listener``, ``va_speaker``, ``prosody``, ``prosody_mask``, ``text_listener``, ``text_speaker``;
  :func:`split_frames` cuts a row into them). The result equals frame ``t`` of
  ``FrameInputs.from_row`` of the same row (tested).
- **audio** (80 ms of float PCM per party, any rate >= 8 kHz): voice activity from webrtcvad on that
  frame (four 20 ms decisions -> fraction voiced, as ``corpora.audio.voice_activity``), and, with
  ``prosody=True``, Praat pitch and intensity (parselmouth) over the last ``CONTEXT_FRAMES`` frames,
  keeping the 10 ms samples that fall in the current frame.

Values are checked and clamped at this boundary (``FrameInputs.clamped``): voice activity to [0, 1],
prosody to its physical range; NaN raises (the listener makes that frame SILENT).

Recognised words (``(text, end_s)``, ``(text, start_s, end_s)`` or ``Word``) feed the text stream: a word
is visible in the frame holding its end time; a word that arrives late goes into the current frame; one
whose end lies in the future waits for its frame, up to ``max_pending_words`` per party and
``max_future_s`` ahead (later or surplus words are dropped and counted in ``state.dropped_words``, so a
frame shows at most ``max_pending_words`` words per party, of which the tokenizer keeps the last ``k``);
an unreadable word is dropped and counted in ``state.bad_words``; neither refuses the frame. A refused
frame (bad features) loses no queued word: the words visible in it appear in the next frame made.

Differences from the offline (whole-file) features of ``corpora.audio``, all forced by causality:

- Speaker normalisation of F0 uses the running median / 26th percentile of that party's voiced
  10 ms F0 samples seen so far (the last ``norm_window_s`` seconds of voiced samples), not the
  whole recording's; F0 stays masked and the low-pitch flag 0 until ``min_voiced_s`` of voiced
  samples have been seen.
- Praat's pitch path finder and the intensity window see only ``CONTEXT_FRAMES * 80`` ms of audio,
  so values near frame edges differ slightly; a frame without an intensity sample repeats the last
  value (0 dB at the start) instead of interpolating.
- Rates other than 16 kHz are resampled over the context window each frame, so the newest few
  samples see the resampling filter's zero padding.
- webrtcvad's noise model is warmed up on the time-reversed first frame (offline: the first 0.3 s).

Cost per frame on one CPU core (measured, AMD EPYC): the features-given path ~0.06 ms; the audio
path ~0.1 ms per party for voice activity at 16 kHz (~0.5 ms at 48 kHz: resampling) plus ~1.1 ms
per party for prosody (parselmouth). Use ``prosody=False`` when many sessions share a core.
"""
from __future__ import annotations

import bisect
import math
import numbers
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field

import numpy as np
import torch
import webrtcvad
from backchannel.corpora.audio import (
    ANALYSIS_SR,
    F0_MAX_HZ,
    F0_MIN_HZ,
    LOW_PITCH_PERCENTILE,
    PITCH_STEP_S,
    VAD_FRAME_MS,
    VAD_MODE,
    VAD_WARMUP_S,
)
from backchannel.corpora.dataset import row_prosody

from backchannel.frames import FRAME_S, time_to_frame
from backchannel.inputs import FrameInputs
from backchannel.text import TextTokenizer

CONTEXT_FRAMES = 3  # frames of audio Praat sees (240 ms: pitch needs 50 ms windows, intensity ~107 ms)
PARTIES = ("listener", "speaker")
FRAME_KEYS = ("va_listener", "va_speaker", "prosody", "prosody_mask", "text_listener", "text_speaker")


def _read_word(w) -> tuple[str, float, float]:
    """``(text, start_s, end_s)`` of one recognised word (``Word`` or a 2/3-tuple); ``ValueError`` or
    ``TypeError`` saying why it cannot be read."""
    if hasattr(w, "end") and hasattr(w, "text"):
        text, start, end = w.text, getattr(w, "start", w.end), w.end
    elif isinstance(w, (tuple, list)) and len(w) in (2, 3):
        text, start, end = (w[0], w[1], w[1]) if len(w) == 2 else w
    else:
        raise ValueError(f"a word must be a Word or (text, end_s) / (text, start_s, end_s), got {w!r:.80}")
    if not isinstance(text, str):
        raise TypeError(f"word text must be a string, got {type(text).__name__}")
    if not (isinstance(start, numbers.Real) and isinstance(end, numbers.Real)):
        raise TypeError(f"word {text!r:.40} times must be numbers (s), got {type(start).__name__}, "
                        f"{type(end).__name__}")
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"word {text!r:.40} has a non-finite time (start {start}, end {end})")
    return text, start, end


def _number(x, name: str) -> float:
    """One real number given as a scalar (Python, numpy, 0-d or 1-element array); ``ValueError`` otherwise."""
    a = np.asarray(x)
    if a.size != 1 or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
        raise ValueError(f"{name} must be one real number, got {type(x).__name__} {a.dtype} of shape {a.shape}")
    return float(a.reshape(()))


def _percentile(sorted_values: list[float], q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of an already sorted list."""
    pos = q / 100.0 * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class _RunningF0:
    """Voiced F0 samples (Hz) of one party over a bounded history, kept sorted for percentiles."""

    def __init__(self, max_samples: int):
        self.order: deque[float] = deque()
        self.sorted: list[float] = []
        self.max_samples = max_samples

    def add(self, values) -> None:
        for v in values:
            self.order.append(v)
            bisect.insort(self.sorted, v)
            if len(self.order) > self.max_samples:
                old = self.order.popleft()
                del self.sorted[bisect.bisect_left(self.sorted, old)]

    def __len__(self) -> int:
        return len(self.sorted)


class _AudioChannel:
    """Causal voice activity and prosody of one party, one 80 ms frame at a time."""

    def __init__(self, sample_rate: int, vad_mode: int, prosody: bool, norm_window_s: float,
                 min_voiced_s: float):
        self.sr, self.prosody = sample_rate, prosody
        self.n = round(FRAME_S * sample_rate)
        self.vad = webrtcvad.Vad(vad_mode)
        self.raw = np.zeros(0)  # last CONTEXT_FRAMES frames at the input rate
        self.f0 = _RunningF0(int(norm_window_s / PITCH_STEP_S))
        self.min_voiced = round(min_voiced_s / PITCH_STEP_S)
        self.last_db = 0.0
        self.warm = False

    def check(self, pcm) -> np.ndarray:
        """One frame of samples as float64 ``[n]``; ``ValueError`` for a wrong length or NaN/inf."""
        x = np.asarray(pcm, dtype=np.float64).reshape(-1)
        if len(x) != self.n:
            raise ValueError(f"audio frame has {len(x)} samples, expected {self.n} (80 ms at {self.sr} Hz)")
        if not np.isfinite(x).all():
            raise ValueError("audio frame holds NaN/inf samples")
        return x

    def frame(self, x: np.ndarray) -> tuple[float, list[float], list[bool]]:
        """Voice activity, prosody and its mask of one checked frame (:meth:`check`); advances the state."""
        self.raw = np.concatenate([self.raw, x])[-CONTEXT_FRAMES * self.n:]
        if self.sr == ANALYSIS_SR:
            x16 = self.raw
        else:
            from scipy.signal import resample_poly

            g = math.gcd(ANALYSIS_SR, self.sr)
            x16 = resample_poly(self.raw, ANALYSIS_SR // g, self.sr // g)
        frame_len = round(FRAME_S * ANALYSIS_SR)
        va = self._voice_activity(x16[-frame_len:])
        if not self.prosody:
            return va, [0.0] * 4, [False] * 4
        return (va, *self._prosody(x16))

    def _voice_activity(self, x16: np.ndarray) -> float:
        pcm = np.round(np.clip(x16, -1.0, 1.0) * 32767).astype(np.int16)
        hop = ANALYSIS_SR * VAD_FRAME_MS // 1000
        if not self.warm:  # settle the noise model as corpora.audio does, causally: on this frame reversed
            rev = np.tile(pcm[::-1], math.ceil(VAD_WARMUP_S * ANALYSIS_SR / len(pcm)))
            for k in range(int(VAD_WARMUP_S * ANALYSIS_SR) // hop):
                self.vad.is_speech(rev[k * hop:(k + 1) * hop].tobytes(), ANALYSIS_SR)
            self.warm = True
        n = len(pcm) // hop
        voiced = sum(self.vad.is_speech(pcm[k * hop:(k + 1) * hop].tobytes(), ANALYSIS_SR) for k in range(n))
        return voiced / n

    def _prosody(self, x16: np.ndarray) -> tuple[list[float], list[bool]]:
        import parselmouth

        snd = parselmouth.Sound(x16, sampling_frequency=ANALYSIS_SR)
        start = len(x16) / ANALYSIS_SR - FRAME_S  # the current frame within the context (s)
        try:
            pitch = snd.to_pitch_ac(time_step=PITCH_STEP_S, pitch_floor=F0_MIN_HZ, pitch_ceiling=F0_MAX_HZ)
            times, f0 = pitch.xs(), pitch.selected_array["frequency"]
        except parselmouth.PraatError:  # context shorter than one pitch window (first frame)
            times, f0 = np.zeros(0), np.zeros(0)
        here = times >= start - 1e-9
        f0_now = f0[here]
        voiced_f0 = f0_now[f0_now > 0]
        self.f0.add(voiced_f0.tolist())
        voiced = len(voiced_f0) / len(f0_now) if len(f0_now) else 0.0
        f0_st, low = math.nan, 0.0
        if len(voiced_f0) and len(self.f0) >= self.min_voiced:
            f0_hz = float(np.median(voiced_f0))
            f0_st = 12.0 * math.log2(f0_hz / _percentile(self.f0.sorted, 50.0))
            low = float(f0_hz < _percentile(self.f0.sorted, LOW_PITCH_PERCENTILE))
        try:
            intensity = snd.to_intensity(minimum_pitch=F0_MIN_HZ, time_step=PITCH_STEP_S)
            db = np.maximum(intensity.values[0], 0.0)[intensity.xs() >= start - 1e-9]
        except parselmouth.PraatError:  # context shorter than one intensity window
            db = np.zeros(0)
        if len(db):
            self.last_db = float(db.mean())
        ok = math.isfinite(f0_st)
        return [f0_st if ok else 0.0, low, self.last_db, voiced], [ok, True, True, True]


@dataclass
class FeatureState:
    """One session's streaming feature state: ``t`` frames made, queued words per party
    ``(frame, end, start, seq, text)``, the audio channels (made on first audio), ``dropped_words`` (words
    refused by the queue's bounds) and ``bad_words`` (unreadable words; the first one's problem in
    ``bad_word``) since the host last read and zeroed them."""

    t: int = 0
    seq: int = 0
    pending: dict[str, list] = field(default_factory=lambda: {p: [] for p in PARTIES})
    audio: dict | None = None
    dropped_words: int = 0
    bad_words: int = 0
    bad_word: str = ""


class StreamingFeatures:
    """Settings of the streaming features (see the module docstring); the state lives in
    :class:`FeatureState` objects, one per session.

    ``sample_rate`` (Hz) of the audio path; ``vad_mode`` webrtcvad aggressiveness 0-3; ``prosody``:
    compute pitch/intensity on the audio path (else masked); ``norm_window_s`` and ``min_voiced_s``
    (seconds of voiced F0 samples) bound the running F0 statistics; ``max_pending_words`` per party and
    ``max_future_s`` bound the word queue.
    """

    def __init__(self, sample_rate: int = ANALYSIS_SR, *, tokenizer: TextTokenizer | None = None,
                 vad_mode: int = VAD_MODE, prosody: bool = True, norm_window_s: float = 300.0,
                 min_voiced_s: float = 0.5, max_pending_words: int = 256, max_future_s: float = 30.0):
        if sample_rate < 8000:
            raise ValueError(f"sample_rate {sample_rate} Hz is below 8000 Hz")
        self.sample_rate, self.vad_mode, self.prosody = int(sample_rate), vad_mode, prosody
        self.norm_window_s, self.min_voiced_s = norm_window_s, min_voiced_s
        self.max_pending_words, self.max_future_s = max_pending_words, max_future_s
        self.tokenizer = tokenizer or TextTokenizer()

    def with_rate(self, sample_rate: int) -> StreamingFeatures:
        """The same settings at another audio rate."""
        return type(self)(sample_rate, tokenizer=self.tokenizer, vad_mode=self.vad_mode, prosody=self.prosody,
                          norm_window_s=self.norm_window_s, min_voiced_s=self.min_voiced_s,
                          max_pending_words=self.max_pending_words, max_future_s=self.max_future_s)

    # ------------------------------------------------------------------ streaming protocol
    def init_state(self, batch: int = 1) -> list[FeatureState]:
        return [FeatureState() for _ in range(batch)]

    def reset(self, states: list[FeatureState], mask) -> None:
        """Fresh states (clock, words, audio context, running F0) where ``mask`` is true."""
        for i, m in enumerate(np.asarray(mask, dtype=bool).reshape(-1)):
            if m:
                states[i] = FeatureState()

    def step(self, state: FeatureState, frame: Mapping | None = None, *, listener_pcm=None, speaker_pcm=None,
             listener_words: Sequence = (), speaker_words: Sequence = ()) -> FrameInputs:
        """One frame of one session: ``frame`` (given features) or ``listener_pcm``/``speaker_pcm`` (audio),
        plus the words recognised since the last call (queued even when the frame is refused). The session's
        clock advances on every call, errors included (``ValueError`` naming the frame), so queued words keep
        the host's clock."""
        try:
            self.add_words(state, "listener", listener_words)  # first: a refused frame loses no word
            self.add_words(state, "speaker", speaker_words)
            audio = listener_pcm is not None or speaker_pcm is not None
            if frame is not None and audio:
                raise ValueError("give either frame features or audio, not both")
            if frame is None and not audio:
                raise ValueError("no input (give frame features or audio of at least one party)")
            if frame is not None:
                return self._from_features(state, frame)
            return self._from_audio(state, listener_pcm, speaker_pcm)
        except (ValueError, TypeError) as err:
            raise ValueError(f"frame {state.t}: {err}") from None
        finally:
            state.t += 1

    # ------------------------------------------------------------------ words
    def add_words(self, state: FeatureState, party: str, words) -> None:
        """Queue recognised words of ``party`` (``"listener"``/``"speaker"``): ``Word`` objects or
        ``(text, end_s)`` / ``(text, start_s, end_s)`` tuples. Each becomes visible in the frame holding its
        end time, or in the next frame made if that frame is already past. Words ending more than
        ``max_future_s`` ahead, or beyond ``max_pending_words`` queued, are dropped (``state.dropped_words``;
        once the queue is full the rest of ``words`` is counted, not read); a word that cannot be read (not
        one of the forms above, a time that is not a finite number) is dropped too (``state.bad_words``, its
        problem in ``state.bad_word``). ``words=None`` is no words; a string or a non-iterable is one bad
        word. Never raises for the words themselves."""
        if party not in PARTIES:
            raise ValueError(f"party must be one of {PARTIES}, got {party!r}")
        if words is None:
            return
        if isinstance(words, (str, bytes)) or not isinstance(words, Iterable):
            self._bad_word(state, party, f"words must be a sequence of words, got {type(words).__name__}")
            return
        queue = state.pending[party]
        horizon = (state.t + 1) * FRAME_S + self.max_future_s
        for i, w in enumerate(words):
            if len(queue) >= self.max_pending_words:  # full: the rest is dropped unread
                state.dropped_words += len(words) - i if isinstance(words, Sized) else 1 + sum(1 for _ in words)
                return
            try:
                text, start, end = _read_word(w)
            except (TypeError, ValueError, OverflowError) as err:
                self._bad_word(state, party, str(err))
                continue
            if end > horizon:
                state.dropped_words += 1
                continue
            queue.append((time_to_frame(end), end, start, state.seq, text))
            state.seq += 1

    @staticmethod
    def _bad_word(state: FeatureState, party: str, problem: str) -> None:
        state.bad_words += 1
        state.bad_word = state.bad_word or f"{party}: {problem}"

    def _visible(self, state: FeatureState, party: str) -> list[str]:
        """Queued words of ``party`` visible at frame ``t``, in (end, start) order; removes them."""
        queue = state.pending[party]
        ready = [w for w in queue if w[0] <= state.t]
        if ready:
            state.pending[party] = [w for w in queue if w[0] > state.t]
        return [w[4] for w in sorted(ready, key=lambda w: w[1:4])]

    def _text_ids(self, state: FeatureState, given: Mapping) -> np.ndarray:
        """``[2, K]`` ids of the frame: its given ``text_ids``, or its given text plus the queued words now
        visible. Reads everything given before taking any queued word, so a refused frame loses no word."""
        if "text_ids" in given:
            ids = np.asarray(given["text_ids"])
            if ids.shape != (2, self.tokenizer.k) or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"text_ids must be integers of shape (2, {self.tokenizer.k}), got {ids.dtype} "
                                 f"{ids.shape}")
            if ids.min() < 0 or ids.max() >= self.tokenizer.vocab_size:
                raise ValueError(f"text_ids must lie in [0, {self.tokenizer.vocab_size}), got {ids.min()}..{ids.max()}")
            return ids.astype(np.int64)
        given_words = []
        for party in PARTIES:
            text = given.get(f"text_{party}")
            if text is None or isinstance(text, str):
                given_words.append((text or "").split())
            elif isinstance(text, Sequence) and all(isinstance(x, str) for x in text):
                given_words.append([w for x in text for w in x.split()])
            else:
                raise ValueError(f"text_{party} must be a string or a list of strings, got {type(text).__name__}")
        return np.asarray([self.tokenizer.encode_frame(words + self._visible(state, party))
                           for party, words in zip(PARTIES, given_words)], dtype=np.int64)

    # ------------------------------------------------------------------ the two paths
    def _from_features(self, state: FeatureState, frame: Mapping) -> FrameInputs:
        if not isinstance(frame, Mapping):
            raise TypeError(f"frame features must be a mapping, got {type(frame).__name__}")
        for key in ("va_listener", "va_speaker"):
            if key not in frame:
                raise ValueError(f"missing {key!r} (have {sorted(map(str, frame))})")
        va = [_number(frame[k], k) for k in ("va_listener", "va_speaker")]
        x = FrameInputs.frame(va[0], va[1], frame.get("prosody"), frame.get("prosody_mask"))  # checked, clamped
        x.text_ids = torch.from_numpy(self._text_ids(state, frame)).unsqueeze(0)  # last: takes queued words
        return x

    def _from_audio(self, state: FeatureState, listener_pcm, speaker_pcm) -> FrameInputs:
        if state.audio is None:
            state.audio = {p: _AudioChannel(self.sample_rate, self.vad_mode, self.prosody, self.norm_window_s,
                                            self.min_voiced_s) for p in PARTIES}
        given = {}
        for party, pcm in zip(PARTIES, (listener_pcm, speaker_pcm)):  # check both before advancing either
            if pcm is not None:
                try:
                    given[party] = state.audio[party].check(pcm)
                except (ValueError, TypeError) as err:
                    raise ValueError(f"{party}: {err}") from None
        va, pros, mask = [], [], []
        for party in PARTIES:
            if party not in given:
                v, p, m = 0.0, [0.0] * 4, [False] * 4
            else:
                v, p, m = state.audio[party].frame(given[party])
            va.append(v)
            pros += p
            mask += m
        return FrameInputs.frame(va[0], va[1], np.asarray(pros, dtype=np.float32), np.asarray(mask, dtype=bool),
                                 self._text_ids(state, {}))


def split_frames(row: Mapping) -> Iterator[dict]:
    """Per-frame dicts (``StreamingFeatures.step`` input) from one framed listener row (a dataset row or
    ``corpora.framing.frame_listener`` output): its per-frame columns, frame by frame; prosody as
    ``corpora.dataset.row_prosody`` reads it (an audio-less row: all masked)."""
    n = len(row["va_listener"])
    cols = {k: row[k] for k in FRAME_KEYS if k in row}
    if "prosody" in cols:
        cols["prosody"], cols["prosody_mask"] = row_prosody(dict(row, n_frames=n))
    for k, v in cols.items():
        if len(v) != n:
            raise ValueError(f"row {row.get('dialogue', '?')}: column {k!r} has {len(v)} frames, "
                             f"expected {n}")
    for t in range(n):
        yield {k: v[t] for k, v in cols.items()}
