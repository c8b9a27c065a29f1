"""Attach audio to a ``Dialogue``: per-80 ms-frame voice activity and prosody in ``ChannelAudio``.

Audio comes as one multi-channel (stereo) file or one mono file per speaker, at any common rate
(8-48 kHz). Which channel of a stereo file is whose (``stereo_mapping``), in this order: the mapping
given (``channels=``, the CLI's ``--channel-map``); else the channel the transcript states for every
speaker (``Channel.audio_channel``: the STM/RTTM channel field, Switchboard's A/B side); else a
**guess**, sorted speaker labels on channels 0, 1, ... (the file must then have one channel per
speaker). The mapping used is reported (``log``), and a check compares each speaker's voice activity
from the transcript (word or segment times) with webrtcvad's on every mapped channel (Pearson
correlation per frame): when another assignment of the same channels fits better by more than
``SWAP_MARGIN`` (mean correlation), the mapping looks swapped. A guessed mapping that looks swapped
is refused (``CorpusError``, suggesting ``--channel-map``); a given or stated one is used with a
warning. Per-speaker files get the same check.

Every signal is first resampled to 16 kHz (``scipy.signal.resample_poly``) so features do not depend
on the recording rate. Then, per channel:

- ``voice_activity``: webrtcvad decisions on 20 ms frames (10/30 ms possible), turned into the
  fraction of each 80 ms frame covered by voiced VAD frames (``frames.interval_activity``).
  webrtcvad is an energy/spectral detector: it also fires on harmonic tones and loud noise. Its
  noise model needs ~0.1 s to settle (it calls the first frames of a recording speech), so it is
  first run over a time-reversed copy of the first ``VAD_WARMUP_S`` and those decisions dropped.
- ``prosody``: Praat's autocorrelation pitch (parselmouth ``to_pitch_ac``, 10 ms step, 60-500 Hz) and
  intensity (``to_intensity``, 10 ms step), summarised per 80 ms frame: F0 in Hz (median of the
  voiced 10 ms samples) and in semitones re the speaker's median voiced F0, Ward & Tsukahara's
  low-pitch flag (F0 below the speaker's 26th percentile), mean intensity in dB re 20 uPa (samples
  read as pascals, floored at 0 dB so digital silence is 0 dB, not -300 dB), voiced fraction.

The speaker statistics (median, 26th percentile) use the whole recording: these offline features
are for corpora, not for a streaming runtime.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from itertools import permutations
from math import gcd
from pathlib import Path

import numpy as np
import parselmouth
import soundfile
import webrtcvad
from scipy.signal import resample_poly

from backchannel.frames import FRAME_HZ, FRAME_S, interval_activity, num_frames

from .dialogue import ChannelAudio, Dialogue
from .errors import CorpusError

ANALYSIS_SR = 16000  # Hz: every signal is analysed at this rate
MIN_SR = 8000  # Hz
PITCH_STEP_S = 0.01
F0_MIN_HZ, F0_MAX_HZ = 60.0, 500.0
LOW_PITCH_PERCENTILE = 26.0  # Ward & Tsukahara (2000)
INTENSITY_FLOOR_DB = 0.0
TRANSCRIPT_SLACK_S = 1.0  # a transcript may end this much after its audio
VAD_WARMUP_S = 0.3  # seconds of reflected signal that webrtcvad's noise model settles on
VAD_FRAME_MS = 20  # webrtcvad decision frame (10, 20 or 30 ms)
VAD_MODE = 2  # webrtcvad aggressiveness 0-3
SWAP_MARGIN = 0.2  # mean correlation by which another speaker -> channel assignment must fit better
MAX_SWAP_CHECK_SPEAKERS = 7  # the check tries every permutation of the mapped channels
GUESSED = "guessed: sorted speaker labels; give the mapping with --channel-map if this is wrong"
_EPS = 1e-9


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file (WAV, FLAC, ... via soundfile): ``(samples float32 [channels, n], rate Hz)``."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, "no such audio file")
    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile.LibsndfileError, RuntimeError on unknown formats
        raise CorpusError(path, f"unreadable audio: {err}") from err
    if sr < MIN_SR:
        raise CorpusError(path, f"sample rate {sr} Hz is below {MIN_SR} Hz")
    return np.ascontiguousarray(data.T), int(sr)


def _to_16k(samples: np.ndarray, sr: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples [n], got shape {samples.shape}")
    if sr == ANALYSIS_SR:
        return samples
    g = gcd(ANALYSIS_SR, int(sr))
    return resample_poly(samples, ANALYSIS_SR // g, int(sr) // g)


def voice_activity(samples_mono: np.ndarray, sr: int, mode: int = VAD_MODE, frame_ms: int = VAD_FRAME_MS) -> np.ndarray:
    """Fraction (0..1) of each 80 ms frame judged speech by webrtcvad (aggressiveness ``mode`` 0-3).

    Returns ``num_frames(len / sr)`` float32 values. ``frame_ms`` is webrtcvad's frame (10, 20 or 30 ms).
    """
    if frame_ms not in (10, 20, 30):
        raise ValueError(f"webrtcvad frames are 10, 20 or 30 ms, not {frame_ms}")
    n_frames = num_frames(len(samples_mono) / sr)
    x = _to_16k(samples_mono, sr)
    hop = ANALYSIS_SR * frame_ms // 1000
    n_vad = int(np.ceil(n_frames * FRAME_S * 1000 / frame_ms - _EPS))
    pcm = np.zeros(n_vad * hop, dtype=np.int16)
    x = x[: len(pcm)]
    pcm[: len(x)] = np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    vad = webrtcvad.Vad(mode)
    step = 2 * hop  # bytes per VAD frame
    warmup = pcm[: int(VAD_WARMUP_S * ANALYSIS_SR) // hop * hop][::-1].tobytes()
    for k in range(len(warmup) // step):
        vad.is_speech(warmup[k * step:(k + 1) * step], ANALYSIS_SR)
    buf = pcm.tobytes()
    voiced = [(k * frame_ms / 1000, (k + 1) * frame_ms / 1000) for k in range(n_vad)
              if vad.is_speech(buf[k * step:(k + 1) * step], ANALYSIS_SR)]
    return interval_activity(voiced, n_frames)


def _frame_table(times: np.ndarray, values: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n_frames, k]`` table of the ``values`` whose ``times`` (s, increasing) fall in each frame,
    NaN-padded, and the number of values per frame."""
    idx = np.floor(times * FRAME_HZ + _EPS).astype(np.int64)
    keep = (idx >= 0) & (idx < n_frames)
    idx, values = idx[keep], values[keep]
    counts = np.bincount(idx, minlength=n_frames)
    table = np.full((n_frames, max(int(counts.max(initial=0)), 1)), np.nan)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table[idx, np.arange(len(idx)) - first[idx]] = values  # idx is sorted: times increase
    return table, counts


def prosody(samples_mono: np.ndarray, sr: int, f0_min: float = F0_MIN_HZ,
            f0_max: float = F0_MAX_HZ) -> dict[str, np.ndarray]:
    """Per-80 ms-frame prosody (``num_frames(len / sr)`` values each), float32 arrays:

    ``f0_hz`` median voiced F0 (Hz, NaN if no voiced 10 ms sample), ``f0_st`` semitones re the
    speaker's median voiced F0 (NaN where unvoiced), ``low_pitch`` 1.0 where F0 is below the speaker's
    26th percentile else 0.0, ``intensity_db`` mean intensity (dB), ``voiced`` fraction of voiced
    10 ms pitch samples.
    """
    n_frames = num_frames(len(samples_mono) / sr)
    snd = parselmouth.Sound(_to_16k(samples_mono, sr), sampling_frequency=ANALYSIS_SR)
    try:
        pitch = snd.to_pitch_ac(time_step=PITCH_STEP_S, pitch_floor=f0_min, pitch_ceiling=f0_max)
        f0_times, f0 = pitch.xs(), pitch.selected_array["frequency"]
    except parselmouth.PraatError:  # sound shorter than one pitch window (3 / f0_min s)
        f0_times, f0 = np.zeros(0), np.zeros(0)
    try:
        intensity = snd.to_intensity(minimum_pitch=f0_min, time_step=PITCH_STEP_S)
        db_times, db_10ms = intensity.xs(), np.maximum(intensity.values[0], INTENSITY_FLOOR_DB)
    except parselmouth.PraatError:  # sound shorter than one intensity window (6.4 / f0_min s)
        db_times, db_10ms = np.zeros(0), np.zeros(0)

    f0 = np.where(f0 > 0, f0, np.nan)  # Praat writes 0 Hz for unvoiced
    table, n_all = _frame_table(f0_times, f0, n_frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames give NaN, as intended
        f0_hz = np.nanmedian(table, axis=1)
        db = np.nanmean(_frame_table(db_times, db_10ms, n_frames)[0], axis=1)
    voiced = np.divide(np.sum(np.isfinite(table), axis=1), n_all, out=np.zeros(n_frames), where=n_all > 0)

    f0_voiced = f0[np.isfinite(f0)]
    f0_st, low_pitch = np.full(n_frames, np.nan), np.zeros(n_frames)
    if len(f0_voiced):
        f0_st = 12.0 * np.log2(f0_hz / np.median(f0_voiced))
        low_pitch = (np.nan_to_num(f0_hz, nan=np.inf) < np.percentile(f0_voiced, LOW_PITCH_PERCENTILE))

    ok = np.isfinite(db)  # frames before the first / after the last intensity window: nearest value
    db = np.interp(np.arange(n_frames), np.flatnonzero(ok), db[ok]) if ok.any() else \
        np.full(n_frames, INTENSITY_FLOOR_DB)
    out = {"f0_hz": f0_hz, "f0_st": f0_st, "low_pitch": low_pitch, "intensity_db": db, "voiced": voiced}
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def _fit(x: np.ndarray, n: int, fill: float) -> np.ndarray:
    """Truncate or pad ``x`` to ``n`` frames."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.full(n - len(x), fill, dtype=x.dtype)])


def channel_audio(samples_mono: np.ndarray, sr: int, n_frames: int, path: str = "",
                  vad_mode: int = 2, channel: int = 0, vad: np.ndarray | None = None) -> ChannelAudio:
    """Voice activity and prosody of one channel as a ``ChannelAudio`` of exactly ``n_frames`` frames.

    Frames past the audio's end get vad 0, voiced 0, F0 NaN, low_pitch 0, intensity 0 dB. ``vad``:
    this channel's ``voice_activity`` if already computed.
    """
    if vad is None:
        vad = voice_activity(samples_mono, sr, mode=vad_mode)
    p = prosody(samples_mono, sr)
    return ChannelAudio(vad=_fit(vad, n_frames, 0.0), f0_st=_fit(p["f0_st"], n_frames, np.nan),
                        low_pitch=_fit(p["low_pitch"], n_frames, 0.0),
                        intensity_db=_fit(p["intensity_db"], n_frames, INTENSITY_FLOOR_DB),
                        voiced=_fit(p["voiced"], n_frames, 0.0), path=str(path), sample_rate=int(sr),
                        duration=len(samples_mono) / sr, channel=int(channel))


def _check_length(dialogue: Dialogue, speakers, path: Path, audio_s: float) -> None:
    ends = [u.end for s in speakers for u in dialogue.channels[s].utterances]
    if ends and max(ends) > audio_s + TRANSCRIPT_SLACK_S:
        raise CorpusError(path, f"transcript longer than its audio: {max(ends):.1f} s vs {audio_s:.1f} s")


def stereo_mapping(dialogue: Dialogue, n_channels: int, path: str | Path,
                   channels: dict[str, int] | None = None) -> tuple[dict[str, int], str]:
    """``(speaker -> channel index, how it was chosen)`` for a file of ``n_channels`` (module docstring).

    Raises ``CorpusError`` naming ``path`` on a speaker without a channel, an index out of range, two
    speakers on one channel, or (for the guess) a channel count other than the number of speakers.
    """
    speakers = dialogue.speakers
    stated = {s: dialogue.channels[s].audio_channel for s in speakers}
    if channels is not None:
        how = "given"
    elif all(c is not None for c in stated.values()):
        channels, how = stated, "from the transcript's channel field"
    else:
        if n_channels != len(speakers):
            raise CorpusError(path, f"expected {len(speakers)} channels (one per speaker: {', '.join(speakers)}), "
                                    f"found {n_channels}; give the mapping with --channel-map")
        channels, how = {s: i for i, s in enumerate(sorted(speakers))}, GUESSED
    for s in speakers:
        if s not in channels:
            raise CorpusError(path, f"speaker {s!r} has no channel in the mapping {channels}")
        if not 0 <= channels[s] < n_channels:
            raise CorpusError(path, f"speaker {s!r} mapped to channel {channels[s]}, file has {n_channels}")
    on = {}
    for s in speakers:
        if channels[s] in on:
            raise CorpusError(path, f"speakers {on[channels[s]]!r} and {s!r} both mapped to channel {channels[s]}")
        on[channels[s]] = s
    return {s: channels[s] for s in speakers}, how


def channel_agreement(transcript: np.ndarray, vad: np.ndarray) -> np.ndarray:
    """Pearson correlation ``[speakers, channels]`` of per-frame voice activity from the transcript
    ``[speakers, n]`` with webrtcvad's ``[channels, n]``; 0 where either is constant."""
    t = transcript - transcript.mean(axis=1, keepdims=True)
    v = vad - vad.mean(axis=1, keepdims=True)
    norm = np.outer(np.linalg.norm(t, axis=1), np.linalg.norm(v, axis=1))
    return np.divide(t @ v.T, norm, out=np.zeros(norm.shape), where=norm > 0)


def _better_assignment(corr: np.ndarray) -> tuple[tuple[int, ...], float, float] | None:
    """``(columns, their mean, the diagonal's mean)`` of the best assignment of ``corr``'s columns to its
    rows when it beats the diagonal by more than ``SWAP_MARGIN``, else None."""
    k = corr.shape[0]
    if k < 2 or k > MAX_SWAP_CHECK_SPEAKERS:
        return None
    rows = np.arange(k)
    best = max(permutations(range(k)), key=lambda p: corr[rows, list(p)].sum())
    diag, alt = float(np.mean(np.diag(corr))), float(np.mean(corr[rows, list(best)]))
    return (best, alt, diag) if alt - diag > SWAP_MARGIN else None


def _transcript_activity(dialogue: Dialogue, speakers, n: int) -> np.ndarray:
    return np.stack([interval_activity(dialogue.channels[s].speech_intervals(), n) for s in speakers])


def _note(log: Callable[[str], None] | None, msg: str, warn: bool = False) -> None:
    if log is not None:
        log(f"warning: {msg}" if warn else msg)
    elif warn:
        warnings.warn(msg, UserWarning, stacklevel=3)


def attach_audio(dialogue: Dialogue, stereo: str | Path | None = None,
                 per_speaker: dict[str, str | Path] | None = None,
                 channels: dict[str, int] | None = None, vad_mode: int = 2,
                 log: Callable[[str], None] | None = None) -> Dialogue:
    """A copy of ``dialogue`` whose channels carry ``ChannelAudio`` (``dialogue.n_frames`` frames each).

    Give either ``stereo`` (one file; ``channels`` maps speaker -> channel index, else
    ``stereo_mapping`` decides) or ``per_speaker`` (speaker -> mono file). ``log`` receives the
    mapping used and a warning when it looks swapped (without ``log`` the warning is a
    ``UserWarning``). Raises ``CorpusError`` naming the file on a wrong channel count or mapping, a
    guessed mapping that looks swapped, a missing speaker, a transcript ending more than 1 s after
    the audio, an unreadable file or a rate below 8 kHz.
    """
    if (stereo is None) == (per_speaker is None):
        raise ValueError("give exactly one of stereo= or per_speaker=")
    speakers = dialogue.speakers
    n = dialogue.n_frames
    feats: dict[str, ChannelAudio] = {}
    if stereo is not None:
        path = Path(stereo)
        samples, sr = load_audio(path)
        channels, how = stereo_mapping(dialogue, samples.shape[0], path, channels)
        _check_length(dialogue, speakers, path, samples.shape[1] / sr)
        by_channel = sorted(speakers, key=channels.get)
        _note(log, f"{path.name}: " + ", ".join(f"channel {channels[s]} = {s}" for s in by_channel) + f" ({how})")
        vads = {s: _fit(voice_activity(samples[channels[s]], sr, mode=vad_mode), n, 0.0) for s in speakers}
        better = _better_assignment(channel_agreement(_transcript_activity(dialogue, by_channel, n),
                                                      np.stack([vads[s] for s in by_channel])))
        if better is not None:
            cols, alt, diag = better
            fit = {s: channels[by_channel[c]] for s, c in zip(by_channel, cols)}
            fix = ",".join(f"{s}={fit[s]}" for s in sorted(speakers))
            problem = (f"the {'guessed ' if how == GUESSED else ''}channel mapping "
                       f"{ {s: channels[s] for s in by_channel} } looks swapped: the transcript's voice activity "
                       f"correlates {diag:.2f} on average with the mapped channels' webrtcvad activity, "
                       f"{alt:.2f} with {fit}")
            if how == GUESSED:
                raise CorpusError(path, f"{problem}; if that is right, pass --channel-map {fix}")
            _note(log, f"{path}: {problem} (--channel-map {fix} would use that)", warn=True)
        for s in speakers:
            feats[s] = channel_audio(samples[channels[s]], sr, n, str(path), vad_mode, channels[s], vads[s])
    else:
        src = dialogue.source or dialogue.id
        for s in per_speaker:
            if s not in dialogue.channels:
                raise CorpusError(per_speaker[s], f"audio given for unknown speaker {s!r} (have {speakers})")
        missing = [s for s in speakers if s not in per_speaker]
        if missing:
            raise CorpusError(src, f"speaker(s) {', '.join(map(repr, missing))} have no audio file")
        for s in speakers:
            path = Path(per_speaker[s])
            samples, sr = load_audio(path)
            if samples.shape[0] != 1:
                raise CorpusError(path, f"expected a mono file for speaker {s!r}, "
                                        f"found {samples.shape[0]} channels")
            _check_length(dialogue, [s], path, samples.shape[1] / sr)
            feats[s] = channel_audio(samples[0], sr, n, str(path), vad_mode)
        better = _better_assignment(channel_agreement(_transcript_activity(dialogue, speakers, n),
                                                      np.stack([feats[s].vad for s in speakers])))
        if better is not None:
            cols, alt, diag = better
            fit = {s: Path(per_speaker[speakers[c]]).name for s, c in zip(speakers, cols)}
            _note(log, f"{src}: the per-speaker audio files look swapped: the transcript's voice "
                       f"activity correlates {diag:.2f} on average with each speaker's own file, {alt:.2f} "
                       f"with {fit}", warn=True)
    new_channels = {s: replace(c, audio=feats[s]) for s, c in dialogue.channels.items()}
    return replace(dialogue, channels=new_channels)
