"""Rating stimuli: clips where the speaker holds the floor, with backchannels at each condition's onsets.

Conditions (DESIGN.md, Evaluation 6): ``real`` (the listener's own backchannel onsets, mined by
``backchannel.corpora.mining`` unless given), ``model`` (predicted onsets), ``random`` (the true
count, uniform in the clip) and ``pause_gate`` (fire when the speaker has paused 200 ms after at
least 0.7 s of speech, 2.5 s cooldown); the last two are ``backchannel.baselines``' own functions,
as the evaluation runs them. All times in seconds.

The listener's channel is replaced by backchannel sounds, in every condition the same form for a
semantic type (``FORMS``; user WAVs ``<form>.wav``, else espeak-ng). The speaker is the real
channel where the corpus has audio, else espeak-ng speaking each word inside its real span (or
tones when no TTS can be had). Each clip is loudness-normalised (ITU-R BS.1770 via pyloudnorm). The study file lists the clips under opaque ids;
its ``key`` section (never served to raters) says which condition and window each clip is.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from backchannel.baselines import PAUSE_GATE_COOLDOWN, pause_gate, random_onsets, rule_onsets
from backchannel.corpora.dialogue import Dialogue
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.mining import mine_backchannels
from backchannel.frames import interval_activity, merge_intervals
from backchannel.lexicon import BC_TYPES, backchannel_type, normalize_form
from backchannel.policy import DEFAULT_FORMS

from . import CONDITIONS
from .tts import WordRenderer, load_tts, place, render_tone, tone

STUDY_FORMAT = "backchannel-rating-study/1"
FORMS = {t: DEFAULT_FORMS[t][0] for t in BC_TYPES}  # one form per type in every condition
PAUSE_MIN_S = 0.1  # silences shorter than this (s) inside the speaker's speech are not pauses
LISTENER_VOICE = "en+f3"  # espeak-ng voice for rendered backchannels, distinct from the speaker's


@dataclass(frozen=True)
class Onset:
    """A listener backchannel onset: ``time`` in seconds, the ``form`` said and its semantic type.

    ``form``/``bc_type`` None: not known yet (the study draws a type, see ``condition_onsets``).
    """

    time: float
    form: str | None = None
    bc_type: str | None = None


def make_onset(time: float, form: str | None = None, bc_type: str | None = None) -> Onset:
    """An ``Onset`` with the form from the type (``FORMS``) or the type from the form (lexicon)."""
    if form is None and bc_type is None:
        return Onset(float(time))
    if form is None:
        if bc_type not in FORMS:
            raise ValueError(f"unknown backchannel type {bc_type!r} (expected one of {BC_TYPES})")
        form = FORMS[bc_type]
    return Onset(float(time), normalize_form(form.split()) or form, bc_type or backchannel_type(form.split()))


# ---------------------------------------------------------------- listener and floor

def listener_backchannels(dialogue: Dialogue, listener: str) -> list[Onset]:
    """The listener's backchannels in the corpus, as mined by ``backchannel.corpora.mining``."""
    events = mine_backchannels(dialogue.channels[listener], dialogue.floor(listener))
    # an echo ("south") has no type: the study then draws one, so no echo form is ever said
    return [Onset(e.onset, e.form, e.bc_type if e.bc_type in FORMS else None) for e in events]


def listener_turns(dialogue: Dialogue, listener: str) -> list[tuple[float, float]]:
    """The listener's speech other than its backchannels: merged ``(start, end)`` spans in seconds."""
    bc_onsets = [o.time for o in listener_backchannels(dialogue, listener)]
    spans = []
    for u in dialogue.channels[listener].utterances:
        start = u.words[0].start if u.words else u.start
        if not any(abs(start - t) < 1e-6 for t in bc_onsets):
            spans.append((u.start, u.end))
    return merge_intervals(spans)


def floor_speech(dialogue: Dialogue, listener: str) -> list[tuple[float, float]]:
    """The floor party's speech (seconds), silences under ``PAUSE_MIN_S`` bridged."""
    return merge_intervals(dialogue.floor(listener).speech_intervals(), gap=PAUSE_MIN_S)


def floor_windows(dialogue: Dialogue, listener: str, min_s: float = 20.0, max_s: float = 40.0,
                  margin: float = 0.5, min_speech: float = 0.5) -> list[tuple[float, float]]:
    """Windows of ``min_s``..``max_s`` seconds where the speaker holds the floor.

    A window lies between two listener turns (listener speech other than backchannels), ``margin``
    seconds clear of them, starts at a speaker word and ends at the end of a speaker word; the speaker
    talks for at least ``min_speech`` of it. Consecutive windows do not overlap.
    """
    turns = listener_turns(dialogue, listener)
    speech = floor_speech(dialogue, listener)
    edges = [0.0] + [t for iv in turns for t in iv] + [dialogue.duration]
    out = []
    for a, b in zip(edges[0::2], edges[1::2]):
        a, b = (a + margin if a > 0 else a), (b - margin if b < dialogue.duration else b)
        inside = [(max(s, a), min(e, b)) for s, e in speech if e > a and s < b]
        i = 0
        while i < len(inside):
            start, j = inside[i][0], i
            while j + 1 < len(inside) and inside[j + 1][1] <= start + max_s:
                j += 1
            end = min(inside[j][1], start + max_s)
            talk = sum(e - s for s, e in inside[i : j + 1])
            if end - start >= min_s and talk >= min_speech * (end - start):
                out.append((start, end))
                i = j + 1
            else:
                i += 1
    return out


# ---------------------------------------------------------------- baseline conditions

def random_condition(n: int, start: float, end: float, rng: np.random.Generator) -> list[float]:
    """``n`` onsets uniform in ``[start, end)`` s (``baselines.random_onsets``), sorted, at least
    1 s apart (or half the mean spacing when ``n`` onsets crowd the span)."""
    if n <= 0:
        return []
    span = end - start
    gap = min(1.0, 0.5 * span / max(n, 1))
    return [start + float(t) for t in random_onsets(n, span, rng, min_gap=gap)]


def pause_gate_condition(dialogue: Dialogue, listener: str) -> list[float]:
    """The pause gate's onsets (seconds) over the whole dialogue: ``baselines.pause_gate`` on the
    floor party's voice activity on the 80 ms frame clock, exactly as the evaluation runs it."""
    va = interval_activity(dialogue.floor(listener).speech_intervals(), dialogue.n_frames)
    return [float(t) for t in rule_onsets(pause_gate(va), PAUSE_GATE_COOLDOWN)]


def pause_relative(onset: float, speech) -> float:
    """Onset minus the start of the speaker's pause it falls in or before (seconds).

    Negative: the speaker is still talking (the pause begins later); positive: into a pause;
    NaN before the speaker's first speech. ``speech`` is sorted, merged intervals.
    """
    last_end = float("nan")
    for s, e in speech:
        if s <= onset < e:
            return onset - e
        if e <= onset:
            last_end = e
        else:
            break
    return onset - last_end


# ---------------------------------------------------------------- input

def study_onsets(path: str | Path) -> dict[tuple[str, str, str], list[Onset]]:
    """An onsets file (read by the one reader, ``evaluation.io.read_onsets_jsonl``: ``{"corpus", "dialogue",
    "listener", "onsets": [s, ...]}``, optionally with ``"forms"`` or ``"types"``) as the study's ``Onset``
    lists, keyed by (corpus, dialogue, listener)."""
    from backchannel.evaluation.io import read_onsets_jsonl as read

    out = {}
    for n, item in enumerate(read(path), 1):
        forms, types = item.get("forms"), item.get("types")
        try:
            out[(item["corpus"], item["dialogue"], item["listener"])] = [
                make_onset(t, forms[i] if forms else None, types[i] if types else None)
                for i, t in enumerate(item["onsets"])]
        except ValueError as err:
            raise CorpusError(path, f"bad onsets line: {err}", n) from None
    return out


@dataclass
class StudyInput:
    """One (dialogue, listener) with its model onsets; ``real`` defaults to the corpus backchannels."""

    dialogue: Dialogue
    listener: str
    model: list[Onset]
    real: list[Onset] | None = None
    windows: list[tuple[float, float]] | None = None  # default: ``floor_windows``


# ---------------------------------------------------------------- rendering

@dataclass
class Renderer:
    """Makes the audio: speaker track (real audio, TTS or tone) plus backchannel sounds (float32, mono)."""

    sample_rate: int = 22050
    tts: str = "auto"  # auto | espeak | tone
    bc_sounds: Path | None = None
    _sounds: dict = field(default_factory=dict)

    def __post_init__(self):
        self._tts = load_tts(self.tts)
        self.words = WordRenderer(self._tts, self.sample_rate) if self._tts else None

    @property
    def speech_rendering(self) -> str:
        return f"tts: {self._tts.name}" if self._tts else "tone (no TTS available)"

    def speaker(self, dialogue: Dialogue, listener: str, start: float, end: float) -> tuple[np.ndarray, str]:
        """The floor party's audio for ``[start, end)`` seconds and how it was made (audio/tts/tone)."""
        floor = dialogue.floor(listener)
        if floor.audio is not None and floor.audio.path:
            return self._real_audio(dialogue, floor, start, end), "audio"
        if self.words is not None:
            return self.words.words(floor.words, start, end), "tts"
        return render_tone(floor.words, start, end, self.sample_rate), "tone"

    def _real_audio(self, dialogue, floor, start, end) -> np.ndarray:
        path = floor.audio.path
        try:
            info = sf.info(path)
            x, sr = sf.read(path, start=int(start * info.samplerate), stop=int(end * info.samplerate),
                            dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as err:
            raise CorpusError(path, f"cannot read speaker audio: {err}") from None
        # one file per speaker (mono) or one stereo file with the speakers in dialogue order
        ch = 0 if x.shape[1] == 1 else dialogue.speakers.index(floor.speaker)
        if ch >= x.shape[1]:
            raise CorpusError(path, f"no channel {ch} for speaker {floor.speaker} ({x.shape[1]} channels)")
        y = x[:, ch]
        if sr != self.sample_rate:
            g = np.gcd(sr, self.sample_rate)
            y = resample_poly(y, self.sample_rate // g, sr // g).astype(np.float32)
        out = np.zeros(round((end - start) * self.sample_rate), np.float32)
        out[: min(len(y), len(out))] = y[: len(out)]
        return out

    def backchannel(self, form: str) -> np.ndarray:
        """The sound of ``form``: ``<bc_sounds>/<form>.wav`` (spaces as ``_``), else TTS, else a tone."""
        if form not in self._sounds:
            wav = self.bc_sounds / f"{form.replace(' ', '_')}.wav" if self.bc_sounds else None
            if wav is not None and wav.is_file():
                x, sr = sf.read(wav, dtype="float32", always_2d=True)
                x = x.mean(axis=1)
                if sr != self.sample_rate:
                    g = np.gcd(sr, self.sample_rate)
                    x = resample_poly(x, self.sample_rate // g, sr // g).astype(np.float32)
            elif self.words is not None:
                x = self.words.word(form, voice=LISTENER_VOICE)
            else:
                x = tone(0.3, self.sample_rate, f0=220.0)
            self._sounds[form] = x.astype(np.float32)
        return self._sounds[form]

    def clip(self, speaker: np.ndarray, onsets: list[Onset], start: float, lufs: float) -> np.ndarray:
        """Mix backchannel sounds at ``onsets`` (absolute s) into the speaker track; loudness-normalise."""
        track = speaker.copy()
        ref = _active_rms(speaker)
        times = [o.time - start for o in onsets] + [len(track) / self.sample_rate]
        for o, t, t_next in zip(onsets, times, times[1:]):
            x = self.backchannel(o.form)
            x = x[: int((t_next - t) * self.sample_rate)]  # a backchannel never runs into the next
            gain = 0.8 * ref / max(_active_rms(x), 1e-6) if ref > 0 else 1.0
            place(track, gain * x, t, self.sample_rate)
        return loudness_normalize(track, self.sample_rate, lufs)


def _active_rms(x: np.ndarray, thresh: float = 0.01) -> float:
    a = x[np.abs(x) > thresh]
    return float(np.sqrt(np.mean(a**2))) if len(a) else 0.0


def loudness_normalize(x: np.ndarray, sr: int, lufs: float = -23.0, peak: float = 0.99) -> np.ndarray:
    """Scale ``x`` to ``lufs`` integrated loudness (ITU-R BS.1770); then to ``peak`` if it would clip."""
    import pyloudnorm

    loud = pyloudnorm.Meter(sr).integrated_loudness(x.astype(np.float64))
    if np.isfinite(loud):
        x = x * np.float32(10 ** ((lufs - loud) / 20))
    top = float(np.abs(x).max()) if len(x) else 0.0
    return (x * (peak / top) if top > peak else x).astype(np.float32)


# ---------------------------------------------------------------- the study

def condition_onsets(inp: StudyInput, start: float, end: float, rng: np.random.Generator,
                     real: list[Onset]) -> dict[str, list[Onset]]:
    """Each condition's backchannels inside ``[start, end)`` s, said with the form of their type
    (``FORMS``). Onsets without a type (random, pause gate, untyped model output) draw one from the
    real backchannels in the window (``continuer`` if those are untyped too), so the forms heard do
    not give the condition away."""
    true = [o for o in real if start <= o.time < end]
    pool = [o.bc_type for o in true if o.bc_type] or ["continuer"]

    def typed(onsets):
        return [make_onset(o.time, bc_type=o.bc_type or str(rng.choice(pool))) for o in onsets]

    gate = [Onset(t) for t in pause_gate_condition(inp.dialogue, inp.listener) if start <= t < end]
    rand = random_condition(len(true), start + 0.5, end - 1.0, rng)
    return {"real": typed(true), "model": typed([o for o in inp.model if start <= o.time < end]),
            "random": typed([Onset(t) for t in rand]), "pause_gate": typed(gate)}


def build_study(inputs: list[StudyInput], out_dir: str | Path, *, conditions=CONDITIONS,
                per_dialogue: int = 2, n_windows: int | None = None, min_s: float = 20.0,
                max_s: float = 40.0, min_backchannels: int = 2, seed: int = 0, sample_rate: int = 22050,
                lufs: float = -23.0, tts: str = "auto", bc_sounds: str | Path | None = None,
                tail: float = 1.0, progress: bool = True) -> dict:
    """Cut windows, render one clip per (window, condition), write ``clips/*.wav`` and ``study.json``.

    Windows are ``min_s``..``max_s`` s (``floor_windows``) with at least ``min_backchannels`` real
    backchannels; each condition's onsets inside a window are kept, and its clip runs ``tail`` s
    past the window's end.

    Returns the study dict (also written to ``out_dir/study.json``; its ``key`` is for analysis only).
    """
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)} (expected some of {CONDITIONS})")
    rng, pyrng = np.random.default_rng(seed), random.Random(seed)
    renderer = Renderer(sample_rate, tts, Path(bc_sounds) if bc_sounds else None)
    picked = []
    for inp in inputs:
        real = inp.real if inp.real is not None else listener_backchannels(inp.dialogue, inp.listener)
        wins = inp.windows if inp.windows is not None else floor_windows(inp.dialogue, inp.listener, min_s, max_s)
        wins = [w for w in wins if sum(w[0] <= o.time < w[1] for o in real) >= min_backchannels]
        picked += [(inp, real, w) for w in sorted(pyrng.sample(wins, min(per_dialogue, len(wins))))]
    if n_windows is not None and len(picked) > n_windows:
        picked = [picked[i] for i in sorted(pyrng.sample(range(len(picked)), n_windows))]
    if not picked:
        raise ValueError(f"no window of {min_s}-{max_s} s with the speaker holding the floor and at least "
                         f"{min_backchannels} real backchannels in {len(inputs)} dialogue(s)")
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    clips, key, ids = [], {}, set()
    bar = _progress(len(picked) * len(conditions), progress)
    for inp, real, (start, end) in picked:
        # the clip runs ``tail`` s past the window so a late backchannel is heard whole
        clip_end = end + tail
        speaker, how = renderer.speaker(inp.dialogue, inp.listener, start, clip_end)
        speech = floor_speech(inp.dialogue, inp.listener)
        for cond, onsets in condition_onsets(inp, start, end, rng, real).items():
            if cond not in conditions:
                continue
            cid = _new_id(pyrng, ids)
            audio = renderer.clip(speaker, onsets, start, lufs)
            sf.write(out_dir / "clips" / f"{cid}.wav", audio, sample_rate, subtype="PCM_16")
            clips.append({"id": cid, "file": f"{cid}.wav", "duration": round(clip_end - start, 3),
                          "backchannels": [round(o.time - start, 3) for o in onsets]})
            key[cid] = {"condition": cond, "corpus": inp.dialogue.corpus, "dialogue": inp.dialogue.id,
                        "listener": inp.listener, "start": round(start, 3), "end": round(end, 3),
                        "clip_end": round(clip_end, 3),
                        "speaker": how,
                        "backchannels": [dict(asdict(o), time=round(o.time, 3),
                                              pause_rel=_round(pause_relative(o.time, speech)))
                                         for o in onsets]}
            bar.update(1)
    bar.close()
    pyrng.shuffle(clips)  # file order says nothing about the condition
    rendering = renderer.speech_rendering if any(k["speaker"] != "audio" for k in key.values()) else "audio"
    study = {"format": STUDY_FORMAT, "sample_rate": sample_rate, "loudness_lufs": lufs, "seed": seed,
             "speech_rendering": rendering, "conditions": list(conditions), "clips": clips, "key": key}
    tmp = out_dir / "study.json.tmp"
    tmp.write_text(json.dumps(study, indent=1))
    os.replace(tmp, out_dir / "study.json")
    return study


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 3)


def _new_id(rng: random.Random, taken: set) -> str:
    while True:
        cid = f"{rng.getrandbits(48):012x}"
        if cid not in taken:
            taken.add(cid)
            return cid


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="rendering clips", unit="clip", disable=not enabled)


def _plain_file_name(name) -> bool:
    """A non-empty file name without a folder part (``/``, ``\\``), a leading ``.`` (``..``, hidden
    files) or a control character (NUL included)."""
    return (isinstance(name, str) and bool(name) and not name.startswith(".") and "/" not in name
            and "\\" not in name and not any(ord(ch) < 32 or ord(ch) == 127 for ch in name))


def load_study(path: str | Path) -> dict:
    """Read and check a study file: format, unique plain clip ids and file names inside ``clips/``."""
    path = Path(path)
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CorpusError(path, f"cannot read study: {err}") from None
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        fmt = study.get("format") if isinstance(study, dict) else type(study).__name__
        raise CorpusError(path, f"not a study file (format {fmt!r}, expected {STUDY_FORMAT})")
    clips = study.get("clips", [])
    if not isinstance(clips, list) or not all(isinstance(c, dict) for c in clips):
        raise CorpusError(path, "clips must be a list of objects")
    seen = set()
    for i, clip in enumerate(clips):
        cid, name = str(clip.get("id", "")), clip.get("file", "")
        if not cid.isalnum() or cid in seen:
            raise CorpusError(path, f"bad or duplicate clip id {cid!r}", f"clips[{i}]")
        if not _plain_file_name(name):
            raise CorpusError(path, f"clip file {name!r} of clip {cid} must be a plain file name in clips/ (no "
                                    f"path separator, no leading '.', no control or NUL character)", f"clips[{i}]")
        seen.add(cid)
    if not seen:
        raise CorpusError(path, "study has no clips")
    return study


def demo_dialogue(duration: float = 120.0, seed: int = 0, turn_every: float = 45.0) -> Dialogue:
    """A synthetic two-party dialogue for demos, tests and benchmarks (no corpus needed).

    Speaker ``A`` talks in phrases of 3-8 words (0.3 s words, 0.05 s apart) separated by 0.3-1.2 s
    pauses; listener ``B`` says a backchannel in about half of those pauses (0.1-0.5 s into them)
    and takes a 2 s turn every ``turn_every`` seconds. Times in seconds.
    """
    from backchannel.corpora.dialogue import Channel, Utterance, Word

    rng = random.Random(seed)
    vocab = ["go", "left", "round", "the", "old", "mill", "then", "down", "past", "lake", "and", "up"]
    a, b, t, next_turn = [], [], 0.5, turn_every
    while t < duration - 5:
        if t >= next_turn:
            b.append(Utterance(t, t + 2.0, tuple(Word(t + 0.4 * i, t + 0.4 * i + 0.35, w)
                                                 for i, w in enumerate(["no", "wait", "where", "now", "then"]))))
            t, next_turn = t + 2.6, next_turn + turn_every
            continue
        words = [Word(t + 0.35 * i, t + 0.35 * i + 0.3, rng.choice(vocab)) for i in range(rng.randint(3, 8))]
        a.append(Utterance(words[0].start, words[-1].end, tuple(words)))
        pause = rng.uniform(0.3, 1.2)
        if rng.random() < 0.5:
            on = words[-1].end + rng.uniform(0.1, min(0.5, pause))
            form = rng.choice(["mhm", "yeah", "okay", "right"])
            b.append(Utterance(on, on + 0.3, (Word(on, on + 0.3, form),)))
        t = words[-1].end + pause
    return Dialogue("demo", "demo", {"A": Channel("A", a), "B": Channel("B", b)}, duration).validate()
