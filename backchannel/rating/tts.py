"""Offline speech rendering for transcript-only corpora: words at their real times (seconds).

Raters judge timing only, so each word is synthesised on its own by espeak-ng and fitted into its
real ``[start, end]`` span. espeak-ng comes from PyPI (``espeakng-loader`` ships the library and its
data) or, failing that, from the system (Debian's ``espeak-ng`` binary). Without either, speech is
rendered as a tone that follows the word timing (``render_tone``), and the study says so.
"""
from __future__ import annotations

import ctypes
import io
import re
import shutil
import subprocess
import threading
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

from backchannel.lexicon import normalize_form

_FADE_S = 0.01  # seconds of linear fade at each end of a placed sound
_BASE_WPM = 175  # espeak-ng's default speaking rate, words per minute


def _trim(x: np.ndarray, thresh: float = 0.02) -> np.ndarray:
    """Drop leading and trailing near-silence (amplitude below ``thresh`` of full scale)."""
    idx = np.flatnonzero(np.abs(x) > thresh)
    return x[idx[0] : idx[-1] + 1] if len(idx) else x[:0]


def _fade(x: np.ndarray, sr: int) -> np.ndarray:
    n = min(int(_FADE_S * sr), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


# Non-words espeak-ng would spell out letter by letter, as espeak-ng phonemes (``[[...]]`` input).
SPOKEN = {"mhm": "[[@m'h@m]]", "uhhuh": "[[V'hV]]", "uhum": "[[V'h@m]]", "mm": "[[m@m]]", "mmm": "[[m@m]]",
          "hmm": "[[h@m]]", "huh": "[[h'V]]", "uh": "[[V]]", "um": "[[@m]]"}


def speakable(text: str) -> str:
    """What espeak-ng should say for a transcribed word: phonemes for non-words such as ``mmhmm``,
    '' for markup such as ``<noi>`` or ``{laugh}``, else the word's letters."""
    if re.fullmatch(r"\s*[<\[{(].*[>\]})]\s*", text):
        return ""
    form = normalize_form(text.split())
    if form in SPOKEN:
        return SPOKEN[form]
    return re.sub(r"[^A-Za-z' -]", "", text).strip(" -")


class Espeak:
    """espeak-ng through ctypes (in-process, synchronous). ``synth`` returns float32 at ``sample_rate`` Hz.

    ``library``/``data`` default to the ones ``espeakng-loader`` ships. One lock guards the C library.
    """

    _lock = threading.Lock()
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self, library: str | None = None, data: str | None = None):
        if library is None or data is None:
            import espeakng_loader

            library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        self.name = "espeak-ng (espeakng-loader)"
        self._lib = ctypes.CDLL(library)
        self._lib.espeak_Initialize.restype = ctypes.c_int
        # AUDIO_OUTPUT_SYNCHRONOUS = 2; espeakINITIALIZE_DONT_EXIT = 0x8000
        self.sample_rate = self._lib.espeak_Initialize(2, 0, data.encode(), 0x8000)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data {data}")
        self._chunks: list[np.ndarray] = []
        self._cb = self._CALLBACK(self._collect)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav, n, _events):
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(self, text: str, voice: str = "en", rate: int = _BASE_WPM) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            self._chunks = []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"espeak-ng has no voice {voice!r}")
            self._lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE, absolute
            # position 0, POS_CHARACTER=1, end 0, espeakCHARS_UTF8=1
            err = self._lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)
            chunks, self._chunks = self._chunks, []
        if err != 0:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r} (error {err})")
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0


class EspeakBinary:
    """The system ``espeak-ng`` program (Debian package), one subprocess per word."""

    def __init__(self, program: str = "espeak-ng"):
        path = shutil.which(program)
        if path is None:
            raise RuntimeError(f"{program} not found on PATH")
        self.program, self.name, self.sample_rate = path, f"espeak-ng ({path})", 22050

    def synth(self, text: str, voice: str = "en", rate: int = _BASE_WPM) -> np.ndarray:
        import soundfile as sf

        out = subprocess.run([self.program, "--stdout", "-v", voice, "-s", str(int(rate)), text],
                             capture_output=True, check=True, timeout=30).stdout
        x, sr = sf.read(io.BytesIO(out), dtype="float32")
        self.sample_rate = sr
        return x if x.ndim == 1 else x.mean(axis=1)


_ESPEAK: "Espeak | None" = None


def _shared_espeak() -> Espeak:
    """The process's one in-process espeak-ng: the C library must be initialised only once per process."""
    global _ESPEAK
    with Espeak._lock:
        if _ESPEAK is None:
            _ESPEAK = Espeak()
    return _ESPEAK


_shared_espeak.__name__ = "Espeak"


def load_tts(prefer: str = "auto"):
    """An espeak-ng synthesiser, or None when none can be had.

    ``prefer``: ``auto`` (PyPI library, then the system binary), ``espeak`` (same, but raise if
    neither works), ``tone`` (None: render tones).
    """
    if prefer == "tone":
        return None
    errors = []
    for make in (_shared_espeak, EspeakBinary):
        try:
            tts = make()
            if len(tts.synth("hello")) == 0:
                raise RuntimeError("synthesised nothing")
            return tts
        except Exception as err:  # noqa: BLE001 - every failure means "try the next one"
            errors.append(f"{make.__name__}: {err}")
    if prefer == "espeak":
        raise RuntimeError("no espeak-ng available: " + "; ".join(errors))
    return None


class WordRenderer:
    """Renders words at their real times with a synthesiser, at ``sample_rate`` Hz."""

    def __init__(self, tts, sample_rate: int, voice: str = "en"):
        self.tts, self.sample_rate, self.voice = tts, sample_rate, voice
        self._cache = lru_cache(maxsize=4096)(self._synth)

    def _synth(self, text: str, rate: int, voice: str) -> np.ndarray:
        x = _trim(self.tts.synth(text, voice=voice, rate=rate))
        if self.tts.sample_rate != self.sample_rate and len(x):
            x = resample_poly(x, self.sample_rate, self.tts.sample_rate).astype(np.float32)
        return x

    def word(self, text: str, duration: float | None = None, voice: str | None = None) -> np.ndarray:
        """One word, fitted to ``duration`` seconds when given (rate change, then a small stretch)."""
        voice = voice or self.voice
        text = speakable(text)
        if not text:
            return np.zeros(0, np.float32)
        x = self._cache(text, _BASE_WPM, voice)
        if duration is None or len(x) == 0:
            return _fade(x, self.sample_rate)
        target = max(int(duration * self.sample_rate), 1)
        # espeak-ng speaks 80..450 words per minute; pick the rate that comes closest, in steps of 10
        rate = int(np.clip(round(_BASE_WPM * len(x) / target / 10) * 10, 80, 450))
        if rate != _BASE_WPM:
            x = self._cache(text, rate, voice)
        # absorb up to +-25% by resampling (a small pitch change), then cut or pad to the span
        ratio = float(np.clip(target / max(len(x), 1), 0.75, 1.25))
        if abs(ratio - 1.0) > 0.02:
            up = round(ratio * 100)
            x = resample_poly(x, up, 100).astype(np.float32)
        x = x[:target]
        return _fade(x, self.sample_rate)

    def words(self, words, start: float, end: float) -> np.ndarray:
        """A mono track of ``end - start`` seconds with each ``Word`` spoken inside its real span."""
        track = np.zeros(round((end - start) * self.sample_rate), np.float32)
        for w in words:
            if w.end <= start or w.start >= end:
                continue
            x = self.word(w.text, duration=w.end - w.start)
            place(track, x, w.start - start, self.sample_rate)
        return track


def place(track: np.ndarray, x: np.ndarray, at: float, sr: int) -> None:
    """Add ``x`` into ``track`` starting at ``at`` seconds (cut at the track's ends), in place."""
    i = round(at * sr)
    if i < 0:
        x, i = x[-i:], 0
    n = min(len(x), len(track) - i)
    if n > 0:
        track[i : i + n] += x[:n]


def tone(duration: float, sr: int, f0: float = 140.0, level: float = 0.3) -> np.ndarray:
    """A buzzy harmonic tone of ``duration`` seconds at ``f0`` Hz (5 harmonics), with fades."""
    t = np.arange(max(int(duration * sr), 0)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return _fade((level * x / 1.5).astype(np.float32), sr)


def render_tone(words, start: float, end: float, sr: int, f0: float = 140.0) -> np.ndarray:
    """The tone fallback: one tone per speakable word over its real span (seconds)."""
    track = np.zeros(round((end - start) * sr), np.float32)
    for w in words:
        if w.end <= start or w.start >= end or not speakable(w.text):
            continue
        place(track, tone(w.end - w.start, sr, f0), w.start - start, sr)
    return track
