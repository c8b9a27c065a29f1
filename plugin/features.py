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
``max_future_s`` ahead (later or surplus words are dropped and counted in ``state.dropped_words``).

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
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
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

    def frame(self, pcm) -> tuple[float, list[float], list[bool]]:
        x = np.asarray(pcm, dtype=np.float64).reshape(-1)
        if len(x) != self.n:
            raise ValueError(f"audio frame has {len(x)} samples, expected {self.n} (80 ms at {self.sr} Hz)")
        if not np.isfinite(x).all():
            raise ValueError("audio frame holds NaN/inf samples")
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
    refused since the host last read it)."""

    t: int = 0
    seq: int = 0
    pending: dict[str, list] = field(default_factory=lambda: {p: [] for p in PARTIES})
    audio: dict | None = None
    dropped_words: int = 0


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
        plus the words recognised since the last call. The session's clock advances on every call, errors
        included (``ValueError`` naming the frame), so queued words keep the host's clock."""
        try:
            audio = listener_pcm is not None or speaker_pcm is not None
            if frame is not None and audio:
                raise ValueError("give either frame features or audio, not both")
            if frame is None and not audio:
                raise ValueError("no input (give frame features or audio of at least one party)")
            self.add_words(state, "listener", listener_words)
            self.add_words(state, "speaker", speaker_words)
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
        ``max_future_s`` ahead, or beyond ``max_pending_words`` queued, are dropped (``state.dropped_words``)."""
        if party not in PARTIES:
            raise ValueError(f"party must be one of {PARTIES}, got {party!r}")
        queue = state.pending[party]
        horizon = (state.t + 1) * FRAME_S + self.max_future_s
        for w in words:
            if hasattr(w, "end"):
                text, start, end = w.text, w.start, w.end
            elif len(w) == 2:
                text, end = w
                start = end
            else:
                text, start, end = w
            end, start = float(end), float(start)
            if not math.isfinite(end):
                raise ValueError(f"word {text!r} of the {party} has a non-finite end time {end}")
            if end > horizon or len(queue) >= self.max_pending_words:
                state.dropped_words += 1
                continue
            queue.append((time_to_frame(end), end, start, state.seq, str(text)))
            state.seq += 1

    def _visible(self, state: FeatureState, party: str) -> list[str]:
        """Queued words of ``party`` visible at frame ``t``, in (end, start) order; removes them."""
        queue = state.pending[party]
        ready = [w for w in queue if w[0] <= state.t]
        if ready:
            state.pending[party] = [w for w in queue if w[0] > state.t]
        return [w[4] for w in sorted(ready, key=lambda w: w[1:4])]

    def _text_ids(self, state: FeatureState, given: Mapping) -> np.ndarray:
        if "text_ids" in given:
            ids = np.asarray(given["text_ids"])
            if ids.shape != (2, self.tokenizer.k):
                raise ValueError(f"text_ids has shape {ids.shape}, expected (2, {self.tokenizer.k})")
            return ids
        rows = []
        for party in PARTIES:
            text = given.get(f"text_{party}") or ""
            words = text.split() if isinstance(text, str) else [str(x) for x in text]
            rows.append(self.tokenizer.encode_frame(words + self._visible(state, party)))
        return np.asarray(rows, dtype=np.int64)

    # ------------------------------------------------------------------ the two paths
    def _from_features(self, state: FeatureState, frame: Mapping) -> FrameInputs:
        for key in ("va_listener", "va_speaker"):
            if key not in frame:
                raise ValueError(f"missing {key!r} (have {sorted(frame)})")
        va = [float(np.asarray(frame[k]).reshape(())) for k in ("va_listener", "va_speaker")]
        return FrameInputs.frame(va[0], va[1], frame.get("prosody"), frame.get("prosody_mask"),
                                 self._text_ids(state, frame))

    def _from_audio(self, state: FeatureState, listener_pcm, speaker_pcm) -> FrameInputs:
        if state.audio is None:
            state.audio = {p: _AudioChannel(self.sample_rate, self.vad_mode, self.prosody, self.norm_window_s,
                                            self.min_voiced_s) for p in PARTIES}
        va, pros, mask = [], [], []
        for party, pcm in zip(PARTIES, (listener_pcm, speaker_pcm)):
            if pcm is None:
                v, p, m = 0.0, [0.0] * 4, [False] * 4
            else:
                try:
                    v, p, m = state.audio[party].frame(pcm)
                except ValueError as err:
                    raise ValueError(f"{party}: {err}") from None
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
