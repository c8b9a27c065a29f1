"""Benchmark: the shipped listener end to end on audio, beside pipecat-backchannel and the pause gate (issue 11).

    python benchmarks/e2e_audio.py [--dialogues N] [--latency 0.3] [--checkpoint PATH] [--policy REPORT]
                                   [--tiny] [--data data/maptask] [--root CORPORA] [--cache runs/e2e_audio]
                                   [--no-pipecat] [--no-user-side] [--seed 0]
                                   [--out benchmarks/results/e2e_audio.json]

Material: the test dialogues of a prepared two-party corpus (Map Task), each party's words spoken by
espeak-ng inside their real spans (``backchannel.rating.tts``), one 16 kHz int16 channel per party, cached
under ``--cache``. For the listener we score, its mined backchannels are dropped from its channel (they are
what is predicted) and its other speech kept (a bot knows its own speech). Gold: the isolated backchannels
(``row["bc_isolated"]``) when the prepared data carry them, else every mined one.

Backchannel timing, one scorer (``metrics.event_scores`` at -500..+500 ms, pooled over listeners;
``metrics.cadence_report``), on the same audio:

- ``ours``: a ``StreamingListener`` from PCM, one ``step`` per 80 ms of both channels; the floor party's words
  arrive ``--latency`` s after each word ends, the bot's own words at their end. ``ours_no_words``: no words.
- ``pipecat_backchannel``: ``pipecat-backchannel`` 0.3.3's ``BackchannelProcessor`` fed the floor party's audio
  in 20 ms ``InputAudioRawFrame``s on the audio clock (its ``time.monotonic`` and smart-turn buffer times are
  the audio time; its model calls complete within the 20 ms chunk that asked for them), with
  ``BotStarted/StoppedSpeakingFrame`` from the bot channel as pipecat's output transport makes them; fire
  probability 1.0 and its default 0.8 (seeded). ``pipecat_backchannel_f1`` is the better of the two.
- ``pause_gate``: ``baselines.pause_gate`` on webrtcvad activity of the rendered floor audio.
- ``ours_word_va``: the same listener offline on word-timing activity (dataset row, the listener's own
  backchannels dropped from its streams as on the audio path): the domain gap.

CPU seconds per audio hour: process CPU time of one system's decision loop (rendering excluded) over the
audio it listened to (one session = one listener of one dialogue).

User backchannels vs barge-ins: each listener's real isolated backchannels and take-turns while the floor
party (now the bot) speaks (interruptions; shifts within pipecat's bot-stop delay of 0.35 s), rendered as the
user's audio from its onset on (``CASE_PRE_S`` s of the bot's speech before it), the bot speaking throughout.
Systems, all fed pipecat's Silero VAD frames and simulated recogniser frames ``--latency`` s after each word:
our pipecat ``BackchannelProcessor`` on its model-based path (``model``: the reversed-role listener's onset
output decides at ``user_decision_delay_s`` after the onset, the words confirm; it hears the bot's audio and
words through the tap; the result says ``model_has_onset_output``, without which this path is the word list),
its word-list path (``word_list``: ``user_listener=False``), and interrupt-on-VAD (pipecat's default).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import math
import os
import platform
import random
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from unittest import mock

import numpy as np
import soundfile as sf
from backchannel.corpora.audio import voice_activity
from backchannel.corpora.dataset import load_prepared
from backchannel.corpora.dialogue import Dialogue, Word
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.framing import text_stream

from backchannel.baselines import PAUSE_GATE_COOLDOWN, pause_gate, rule_onsets
from backchannel.evaluation.data import gold_mask as _gold_mask
from backchannel.frames import FRAME_S, interval_activity, time_to_frame
from backchannel.metrics import cadence_report, event_scores, margin_label, onset_offsets

SR = 16000  # Hz, every channel
FRAME_N = round(FRAME_S * SR)  # samples per 80 ms frame
CHUNK_S = 0.02  # s: pipecat transports deliver 20 ms audio chunks
CHUNK_N = round(CHUNK_S * SR)
MARGIN = (-0.5, 0.5)  # s, relative to the true onset
MARGIN_LABEL = margin_label(MARGIN)
VOICES = ("en", "en+f3")  # espeak-ng voice of the dialogue's first and second speaker
RENDER_FORMAT = "e2e-audio-render/1"
DEFAULT_CACHE = Path("runs/e2e_audio")
DEFAULT_OUT = Path("benchmarks/results/e2e_audio.json")
CASE_PRE_S, CASE_POST_S = 3.0, 3.0  # s of a user-side case before / after the user's onset
STT_IPU_GAP_S = 0.5  # s: the simulated recogniser finalises a stretch of words at a pause this long
PIPECAT_FIRE_PROBABILITIES = (1.0, 0.8)  # 0.8 is pipecat-backchannel's default
_EPS = 1e-6


class BenchError(Exception):
    """A user-facing problem (bad input, missing data or tools): printed as one line by the CLI."""


# ---------------------------------------------------------------- gold

def gold_mask(row) -> np.ndarray:
    """Which of a row's mined backchannels are gold: the isolated ones (``evaluation.data.gold_mask``: listener
    silent >= 1 s before and after, floor party spoke within 1.5 s before)."""
    try:
        return _gold_mask(row, "isolated")
    except ValueError as err:
        raise BenchError(str(err)) from None


def gold_onsets(row) -> np.ndarray:
    """Gold backchannel onsets (seconds) of a prepared row (see ``gold_mask``)."""
    return np.asarray(row["bc_onsets"], dtype=np.float64)[gold_mask(row)]


# ---------------------------------------------------------------- material

def split_backchannel_words(words: Sequence[Word], onsets, offsets) -> tuple[list[Word], list[Word]]:
    """``(other speech, backchannels)``: a word is a backchannel's when it lies inside one mined
    ``[onset, offset]`` span (seconds). Raises ``BenchError`` when a span holds no word (data mismatch)."""
    spans = sorted(zip(np.asarray(onsets, float).tolist(), np.asarray(offsets, float).tolist()))
    starts = np.asarray([s for s, _ in spans])
    inside = np.zeros(len(words), dtype=bool)
    hit = np.zeros(len(spans), dtype=bool)
    for i, w in enumerate(words):
        k = int(np.searchsorted(starts, w.start + _EPS, side="right")) - 1
        if k >= 0 and w.end <= spans[k][1] + _EPS:
            inside[i] = hit[k] = True
    if not hit.all():
        on = spans[int(np.argmin(hit))][0]
        raise BenchError(f"the backchannel at {on:.3f} s covers no word of the transcript: the prepared data do "
                         "not match the corpus (re-run `backchannel corpus prepare`)")
    return [w for w, b in zip(words, inside) if not b], [w for w, b in zip(words, inside) if b]


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


def to_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(32768.0)


def mix(*tracks: np.ndarray) -> np.ndarray:
    """Sum of int16 tracks, clipped to int16."""
    return np.clip(np.sum([t.astype(np.int32) for t in tracks], axis=0), -32768, 32767).astype(np.int16)


class Renderer:
    """espeak-ng words at their real times, one voice per party (``VOICES``), at 16 kHz, cached.

    The cache holds one 4-channel int16 FLAC per dialogue (each party's other speech, then its
    backchannels) and a JSON key; a different transcript, backchannel split, voice, synthesiser or
    ``rating/tts.py`` renders again. Systems always get the int16 audio, fresh or cached.
    """

    def __init__(self, cache_dir: str | Path | None = DEFAULT_CACHE):
        from backchannel.rating import tts as tts_module

        try:
            tts = tts_module.load_tts("espeak")
        except RuntimeError as err:
            raise BenchError(f"{err} (install espeak-ng: `apt-get install espeak-ng` or `pip install "
                             "espeakng-loader`)") from None
        self.tts_name = tts.name
        self._code = hashlib.sha256(Path(tts_module.__file__).read_bytes()).hexdigest()
        self._voices = [tts_module.WordRenderer(tts, SR, voice) for voice in VOICES]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.stats = {"dialogues_rendered": 0, "dialogues_cached": 0, "render_cpu_s": 0.0, "render_wall_s": 0.0,
                      "rendered_audio_s": 0.0}

    def _key(self, dialogue: Dialogue, parts: dict) -> str:
        words = {s: [[[w.start, w.end, w.text] for w in ws] for ws in parts[s]] for s in dialogue.speakers}
        blob = json.dumps([RENDER_FORMAT, SR, VOICES, self.tts_name, self._code, dialogue.corpus, dialogue.id,
                           words], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def render(self, dialogue: Dialogue, parts: dict[str, tuple[list[Word], list[Word]]],
               n_samples: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{speaker: (other speech, backchannels)}`` as int16 tracks of ``n_samples`` samples."""
        key = self._key(dialogue, parts)
        path = self.cache_dir / dialogue.corpus / f"{dialogue.id}.flac" if self.cache_dir else None
        cached = self._read(path, key, len(dialogue.speakers), n_samples) if path else None
        if cached is not None:
            self.stats["dialogues_cached"] += 1
            tracks = cached
        else:
            cpu, wall = time.process_time(), time.perf_counter()
            tracks = []
            for i, s in enumerate(dialogue.speakers):
                voice = self._voices[i % len(self._voices)]
                tracks += [to_int16(voice.words(ws, 0.0, n_samples / SR)[:n_samples]) for ws in parts[s]]
            self.stats["render_cpu_s"] += time.process_time() - cpu
            self.stats["render_wall_s"] += time.perf_counter() - wall
            self.stats["rendered_audio_s"] += n_samples / SR
            self.stats["dialogues_rendered"] += 1
            if path:
                self._write(path, key, np.stack(tracks, axis=1))
        return {s: (tracks[2 * i], tracks[2 * i + 1]) for i, s in enumerate(dialogue.speakers)}

    @staticmethod
    def _read(path: Path, key: str, n_speakers: int, n_samples: int) -> list[np.ndarray] | None:
        meta = path.with_suffix(".json")
        try:
            if json.loads(meta.read_text()).get("key") != key:
                return None
            x, sr = sf.read(path, dtype="int16", always_2d=True)
        except (OSError, ValueError, RuntimeError, sf.LibsndfileError):
            return None  # absent, stale or unreadable: render again
        if sr != SR or x.shape != (n_samples, 2 * n_speakers):
            return None
        return [np.ascontiguousarray(x[:, j]) for j in range(x.shape[1])]

    @staticmethod
    def _write(path: Path, key: str, audio: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            sf.write(tmp, audio, SR, format="FLAC", subtype="PCM_16")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        meta = path.with_suffix(".json")
        tmp = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": RENDER_FORMAT, "key": key}) + "\n")
        os.replace(tmp, meta)  # written last: a cache entry counts only once both files are whole


@dataclass
class Session:
    """One listener (the bot) of one dialogue on 16 kHz int16 audio; times in seconds."""

    corpus: str
    dialogue: str
    listener: str
    floor: str
    row: dict  # the prepared dataset row
    listener_speech: np.ndarray  # the listener's speech without its backchannels: the bot's own audio
    listener_backchannels: np.ndarray  # its backchannels alone
    floor_speech: np.ndarray  # the floor party's whole speech: what the bot hears
    listener_words: list[Word]  # without its backchannels
    backchannel_words: list[Word]
    floor_words: list[Word]

    @property
    def n_frames(self) -> int:
        return int(self.row["n_frames"])

    @property
    def duration(self) -> float:
        return self.n_frames * FRAME_S

    @property
    def gold(self) -> np.ndarray:
        return gold_onsets(self.row)


def dialogue_sessions(dialogue: Dialogue, rows: dict[str, dict], renderer: Renderer) -> list[Session]:
    """Both listeners' sessions of a two-party ``dialogue`` from its prepared ``rows`` (by listener)."""
    where = f"{dialogue.corpus}/{dialogue.id}"
    if len(dialogue.speakers) != 2:
        raise BenchError(f"{where}: {len(dialogue.speakers)} speakers; the audio benchmark takes two-party "
                         "dialogues only")
    missing = [s for s in dialogue.speakers if s not in rows]
    if missing:
        raise BenchError(f"{where}: no prepared row for listener(s) {missing}")
    n_frames = {int(r["n_frames"]) for r in rows.values()}
    if n_frames != {dialogue.n_frames}:
        raise BenchError(f"{where}: prepared rows have {sorted(n_frames)} frames, the transcript "
                         f"{dialogue.n_frames}: the prepared data do not match the corpus")
    parts = {}
    for s in dialogue.speakers:
        try:
            parts[s] = split_backchannel_words(dialogue.channels[s].words, rows[s]["bc_onsets"],
                                               rows[s]["bc_offsets"])
        except BenchError as err:
            raise BenchError(f"{where}: listener {s}: {err}") from None
    tracks = renderer.render(dialogue, parts, dialogue.n_frames * FRAME_N)
    out = []
    for s in dialogue.speakers:
        f = rows[s]["floor"]
        if f not in tracks:
            raise BenchError(f"{where}: row of listener {s} names floor {f!r}, not a speaker of the dialogue")
        out.append(Session(dialogue.corpus, dialogue.id, s, f, rows[s], tracks[s][0], tracks[s][1],
                           mix(*tracks[f]), parts[s][0], parts[s][1], dialogue.channels[f].words))
    return out


def load_sessions(data_dir: str | Path, *, root: str | Path | None = None, dialogues: Sequence[Dialogue] | None = None,
                  limit: int | None = None, split: str = "test", renderer: Renderer | None = None,
                  cache_dir: str | Path | None = DEFAULT_CACHE) -> Iterator[Session]:
    """Sessions of the first ``limit`` (sorted) ``split`` dialogues of the prepared dataset ``data_dir``,
    one dialogue at a time. Transcripts come from ``dialogues`` or are read from the corpus (``root``, else
    the manifest's ``source_root``)."""
    try:
        dd, manifest = load_prepared(data_dir)
    except (FileNotFoundError, ValueError) as err:
        raise BenchError(str(err)) from None
    if split not in dd:
        raise BenchError(f"{data_dir}: no {split!r} split")
    table = dd[split]
    by_dialogue: dict[str, dict[str, dict]] = {}
    for i, (did, listener) in enumerate(zip(table["dialogue"], table["listener"])):
        by_dialogue.setdefault(did, {})[listener] = i
    ids = sorted(by_dialogue)[:limit] if limit is not None else sorted(by_dialogue)
    if not ids:
        raise BenchError(f"{data_dir}: the {split} split has no dialogue")
    renderer = renderer or Renderer(cache_dir)
    for d in _transcripts(ids, manifest, root, dialogues, split, data_dir):
        rows = {listener: table[i] for listener, i in by_dialogue[d.id].items()}
        yield from dialogue_sessions(d, rows, renderer)


def _transcripts(ids, manifest, root, dialogues, split, data_dir) -> Iterator[Dialogue]:
    want = set(ids)
    if dialogues is not None:
        given = {d.id: d for d in dialogues}
        lost = sorted(want - set(given))
        if lost:
            raise BenchError(f"{data_dir}: no transcript given for dialogue(s) {lost[:5]}")
        for did in ids:
            yield given[did]
        return
    from backchannel.corpora.recipes import load_corpus

    source = root or manifest.get("source_root")
    if source is None:
        raise BenchError(f"{data_dir}: the manifest names no corpus folder; pass --root")
    found = set()
    try:
        for d in load_corpus(manifest["corpus"], source, splits=[split]):
            if d.id in want:
                found.add(d.id)
                yield d
                if found == want:
                    return
    except CorpusError as err:
        raise BenchError(str(err)) from None
    raise BenchError(f"{source}: dialogue(s) {sorted(want - found)[:5]} of {data_dir} are not in the corpus")


# ---------------------------------------------------------------- systems: backchannel timing

def frame_words(words: Sequence[Word], n_frames: int, latency: float | None) -> list[list[tuple[str, float]]]:
    """Per 80 ms frame, the words a recogniser delivers in it: ``(text, arrival_s)`` with arrival = word end
    + ``latency`` s (None: no words at all). Words arriving after the last frame are dropped."""
    out: list[list[tuple[str, float]]] = [[] for _ in range(n_frames)]
    if latency is None:
        return out
    for w in words:
        text, at = w.text.strip(), w.end + latency
        t = time_to_frame(at)
        if text and 0 <= t < n_frames:
            out[t].append((text, at))
    return out


def listener_onsets(listener, s: Session, latency: float | None) -> np.ndarray:
    """Backchannel onsets (s) of ``listener`` (a ``StreamingListener``) from PCM: one ``step`` per 80 ms of the
    bot's and the floor party's audio. The floor's words arrive ``latency`` s after they end, the bot's own
    words at their end; ``latency=None`` feeds no words. The listener's deadline is lifted for the run (a
    late frame must not depend on the machine's load) and restored."""
    if listener.features.sample_rate != SR:
        raise BenchError(f"the listener's features read {listener.features.sample_rate} Hz audio, the "
                         f"benchmark renders {SR} Hz")
    bot, floor = to_float(s.listener_speech), to_float(s.floor_speech)
    heard = frame_words(s.floor_words, s.n_frames, latency)
    own = frame_words(s.listener_words, s.n_frames, None if latency is None else 0.0)
    deadline, listener.deadline_s = listener.deadline_s, math.inf
    try:
        listener.reset()
        out = []
        for t in range(s.n_frames):
            a, b = t * FRAME_N, (t + 1) * FRAME_N
            d = listener.step(listener_pcm=bot[a:b], speaker_pcm=floor[a:b], listener_words=own[t],
                              speaker_words=heard[t])
            if d.action == "BACKCHANNEL":
                out.append(d.time)
    finally:
        listener.deadline_s = deadline
    return np.asarray(out, dtype=np.float64)


def word_va_row(s: Session) -> dict:
    """The session's dataset row with the listener's streams rebuilt from its words minus its backchannels
    (word-timing voice activity, as framing builds it), for the offline domain-gap run."""
    va = interval_activity([(w.start, w.end) for w in s.listener_words], s.n_frames).astype(np.float32)
    return dict(s.row, va_listener=va, text_listener=text_stream(s.listener_words, s.n_frames))


def word_va_onsets(listener, s: Session) -> np.ndarray:
    """Backchannel onsets (s) of ``listener`` offline on word-timing activity (``run_offline``)."""
    from backchannel.plugin.listener import run_offline

    deadline, listener.deadline_s = listener.deadline_s, math.inf
    try:
        decisions = run_offline(listener, word_va_row(s))
    finally:
        listener.deadline_s = deadline
    return np.asarray([d.time for d in decisions if d.action == "BACKCHANNEL"], dtype=np.float64)


def pause_gate_onsets(s: Session) -> np.ndarray:
    """``baselines.pause_gate`` on webrtcvad activity of the rendered floor audio (onsets in s)."""
    return rule_onsets(pause_gate(voice_activity(to_float(s.floor_speech), SR)), PAUSE_GATE_COOLDOWN)


class AudioClock:
    """Stands in for the ``time`` module of pipecat-backchannel's processor and pipecat's smart-turn buffer:
    ``monotonic()`` is ``now``, the audio time in seconds; every other attribute is the real ``time``'s."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def bot_speaking_edges(bot: np.ndarray) -> list[bool | None]:
    """Per 20 ms chunk of the bot's int16 audio: True where pipecat's output transport would push
    ``BotStartedSpeakingFrame`` (first non-silent chunk, ``pipecat.audio.utils.is_silence``), False where it
    would push ``BotStoppedSpeakingFrame`` (silence for more than ``BOT_VAD_STOP_SECS``), else None."""
    from pipecat.audio.utils import is_silence
    from pipecat.transports.base_output import BOT_VAD_STOP_SECS

    edges: list[bool | None] = []
    speaking, last = False, 0.0
    for i in range(len(bot) // CHUNK_N):
        end = (i + 1) * CHUNK_S
        edge = None
        if not is_silence(bot[i * CHUNK_N:(i + 1) * CHUNK_N].tobytes()):
            edge, speaking, last = (True if not speaking else None), True, end
        elif speaking and end - last > BOT_VAD_STOP_SECS:
            edge, speaking = False, False
        edges.append(edge)
    return edges


class _MemoryClips:
    """An in-memory clip cache (pipecat-backchannel's default writes ``.clip_cache/`` in the working folder)."""

    def __init__(self):
        self._clips: dict = {}

    def get(self, text: str, sample_rate: int):
        return self._clips.get((text, sample_rate))

    def put(self, text: str, sample_rate: int, pcm: bytes) -> None:
        self._clips[(text, sample_rate)] = pcm


async def _silent_clip(text: str, sample_rate: int) -> bytes:
    """Clip audio for pipecat-backchannel's library: 100 ms of silence (only when it fires is scored)."""
    return b"\0\0" * (sample_rate // 10)


def _setup(processor_setup_rate: int = SR):
    from pipecat.clocks.system_clock import SystemClock
    from pipecat.processors.frame_processor import FrameProcessorSetup
    from pipecat.utils.asyncio.task_manager import TaskManager

    return FrameProcessorSetup(clock=SystemClock(), task_manager=TaskManager(), pipeline_worker=None,
                               audio_in_sample_rate=processor_setup_rate)


async def _pipecat_backchannel(user: np.ndarray, bot: np.ndarray, fire_probability: float,
                               seed: int) -> tuple[np.ndarray, float]:
    import pipecat.audio.turn.smart_turn.base_smart_turn as smart_turn_base
    import pipecat_backchannel.clips as pb_clips
    import pipecat_backchannel.processor as pb
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        InputAudioRawFrame,
        StartFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat_backchannel.frames import PlayCachedClipFrame
    from pipecat_backchannel.library import ClipLibrary
    from pipecat_backchannel.turn import shared_turn_analyzer

    clock, rng = AudioClock(), random.Random(seed)
    library = ClipLibrary(synthesizer=_silent_clip, cache=_MemoryClips())
    await library.load(SR)
    edges = bot_speaking_edges(bot)
    fired: list[float] = []
    with mock.patch.object(pb, "time", clock), mock.patch.object(smart_turn_base, "time", clock), \
            mock.patch.object(pb, "random", rng), mock.patch.object(pb_clips, "random", rng):
        proc = pb.BackchannelProcessor(params=pb.BackchannelParams(fire_probability=fire_probability),
                                       clips=library, selector=pb_clips.HeuristicClipSelector(expand_synonyms=False),
                                       turn_analyzer=shared_turn_analyzer())
        await proc.setup(_setup())

        async def push_frame(frame, direction=FrameDirection.DOWNSTREAM):
            if isinstance(frame, PlayCachedClipFrame):
                fired.append(clock.now)

        proc.push_frame = push_frame
        await proc.process_frame(StartFrame(audio_in_sample_rate=SR), FrameDirection.DOWNSTREAM)
        tasks, spawn = [], proc.create_task

        def create_task(coroutine, *args, **kwargs):  # its pause classifications: awaited within their chunk
            task = spawn(coroutine, *args, **kwargs)
            tasks.append(task)
            return task

        proc.create_task = create_task
        cpu = time.process_time()
        for i, edge in enumerate(edges):
            clock.now = (i + 1) * CHUNK_S
            if edge is not None:
                frame = BotStartedSpeakingFrame() if edge else BotStoppedSpeakingFrame()
                await proc.process_frame(frame, FrameDirection.UPSTREAM)
            chunk = user[i * CHUNK_N:(i + 1) * CHUNK_N].tobytes()
            await proc.process_frame(InputAudioRawFrame(audio=chunk, sample_rate=SR, num_channels=1),
                                     FrameDirection.DOWNSTREAM)
            if tasks:
                await asyncio.gather(*tasks)
                tasks.clear()
        cpu = time.process_time() - cpu
        await proc.cleanup()
    return np.asarray(fired, dtype=np.float64), cpu


def pipecat_backchannel_onsets(s: Session, fire_probability: float = 0.8, seed: int = 0) -> tuple[np.ndarray, float]:
    """``(onsets s, CPU s)`` of pipecat-backchannel 0.3.3's processor on the session's floor audio (module
    docstring), its random gate and clip choice drawn from ``random.Random(seed)``."""
    return asyncio.run(_pipecat_backchannel(s.floor_speech, s.listener_speech, fire_probability, seed))


def session_seed(seed: int, s: Session) -> int:
    """A per-session seed that does not depend on which other sessions run."""
    return zlib.crc32(f"{seed}:{s.corpus}:{s.dialogue}:{s.listener}".encode())


# ---------------------------------------------------------------- scoring

def score(pred: Sequence, gold: Sequence, speaker_va: Sequence, durations: Sequence[float]) -> dict:
    """Pooled event figures at ``MARGIN`` and cadence (rates per listener-minute, onset-offset JS distance)."""
    ev = event_scores(list(pred), list(gold), [MARGIN])[margin_label(MARGIN)]
    cad = cadence_report(list(pred), list(gold), list(speaker_va), list(durations))
    return {**ev.to_dict(), "margin": margin_label(MARGIN),
            "rate_per_minute": cad["model"]["rate_per_minute"],
            "human_rate_per_minute": cad["human"]["rate_per_minute"], "rate_ratio": cad["rate_ratio"],
            "offset_js_distance": cad["offset_js_distance"], "median_offset_s": cad["model"]["median_offset"],
            "human_median_offset_s": cad["human"]["median_offset"]}


# ---------------------------------------------------------------- user backchannels vs barge-ins

@dataclass
class UserCase:
    """A listener's real speech from one onset on, replayed as a user talking while the bot (the floor party)
    speaks. Audio int16 at 16 kHz from ``start`` (s, dialogue time); ``onset_s``/``words`` relative to it."""

    kind: str  # "backchannel", "interruption" or "shift"
    dialogue: str
    user: str
    onset: float
    start: float
    user_pcm: np.ndarray
    bot_pcm: np.ndarray
    words: list[Word]
    bot_words: list[Word]  # the floor party's (the bot's) words inside the case, relative to ``start``

    @property
    def onset_s(self) -> float:
        return self.onset - self.start


def user_cases(s: Session, bot_stop_s: float) -> list[UserCase]:
    """The session listener's gold backchannels (the backchannel alone) and its take-turns while the floor
    party speaks (interruptions; shifts less than ``bot_stop_s`` after the floor party's speech ended, when
    pipecat still reports the bot speaking), each from its onset for ``CASE_POST_S`` s."""
    row = s.row
    on, off = np.asarray(row["bc_onsets"], float), np.asarray(row["bc_offsets"], float)
    keep = gold_mask(row)
    events = [("backchannel", float(a), float(b)) for a, b in zip(on[keep], off[keep])]
    events += [("interruption", float(t), math.inf) for t in row["interruption_onsets"]]
    shifts = np.asarray(row["shift_onsets"], float)
    gaps = onset_offsets(shifts, np.asarray(row["va_speaker"]))
    events += [("shift", float(t), math.inf) for t, g in zip(shifts, gaps) if 0.0 <= g < bot_stop_s]
    turn_speech = mix(s.listener_speech, s.listener_backchannels)
    all_words = sorted(s.listener_words + s.backchannel_words, key=lambda w: (w.start, w.end))
    out = []
    for kind, onset, offset in sorted(events, key=lambda e: e[1]):
        start, end = max(0.0, onset - CASE_PRE_S), min(s.duration, onset + CASE_POST_S)
        a, b = round(start * SR), round(end * SR)
        src = s.listener_backchannels if kind == "backchannel" else turn_speech
        user = np.zeros(b - a, dtype=np.int16)
        lo, hi = round(onset * SR), min(b, round(min(offset + 0.05, end) * SR))
        user[lo - a:hi - a] = src[lo:hi]
        words = [Word(w.start - start, w.end - start, w.text) for w in all_words
                 if onset - _EPS <= w.start and w.end <= min(offset, end) + _EPS]
        bot_words = [Word(w.start - start, w.end - start, w.text) for w in s.floor_words
                     if start - _EPS <= w.start and w.end <= end + _EPS]
        out.append(UserCase(kind, s.dialogue, s.listener, onset, start, user, s.floor_speech[a:b].copy(), words,
                            bot_words))
    return out


def recogniser_frames(words: Sequence[Word], latency: float) -> list[tuple[float, str, bool]]:
    """A simulated streaming recogniser: ``(time_s, text, final)``. Words are grouped into stretches split at
    pauses of ``STT_IPU_GAP_S``; each word but a stretch's last gives an interim transcription of the stretch
    so far ``latency`` s after it ends, the last the final one."""
    out, stretch = [], []
    for i, w in enumerate(words):
        stretch.append(w)
        last = i == len(words) - 1 or words[i + 1].start - w.end >= STT_IPU_GAP_S
        out.append((w.end + latency, " ".join(x.text for x in stretch), last))
        if last:
            stretch = []
    return out


@dataclass
class CaseOutcome:
    """One system on one case: ``interrupt_s``/``keep_s`` are seconds after the user's onset (NaN: never)."""

    kind: str
    interrupt_s: float = math.nan
    keep_s: float = math.nan

    @property
    def interrupted(self) -> bool:
        return not math.isnan(self.interrupt_s)


async def _vad_edges(user: np.ndarray) -> list[bool | None]:
    """Per 20 ms chunk: True where pipecat's VAD controller would push ``VADUserStartedSpeakingFrame``
    (Silero VAD, default ``VADParams``), False for ``VADUserStoppedSpeakingFrame``, else None."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams, VADState

    vad = SileroVADAnalyzer(params=VADParams())
    vad.set_sample_rate(SR)
    state, edges = VADState.QUIET, []
    try:
        for i in range(len(user) // CHUNK_N):
            new = await vad.analyze_audio(user[i * CHUNK_N:(i + 1) * CHUNK_N].tobytes())
            edge = None
            if new != state and new in (VADState.SPEAKING, VADState.QUIET):  # as pipecat's VADController
                edge, state = new == VADState.SPEAKING, new
            edges.append(edge)
    finally:
        await vad.cleanup()
    return edges


def vad_outcome(case: UserCase, edges: list[bool | None]) -> CaseOutcome:
    """Interrupt-on-VAD (pipecat's default turn start): the first VAD start after the onset interrupts."""
    out = CaseOutcome(case.kind)
    for i, edge in enumerate(edges):
        if edge and (i + 1) * CHUNK_S >= case.onset_s - _EPS:
            out.interrupt_s = (i + 1) * CHUNK_S - case.onset_s
            break
    return out


async def _processor_outcome(case: UserCase, listener, edges: list[bool | None], latency: float, *,
                             model: bool) -> CaseOutcome:
    """Our pipecat ``BackchannelProcessor`` (hold/release as shipped) on a case: its model-based path
    (``model``: the bot's audio and words through the tap, the reversed-role listener sharing ``listener``'s
    model) or its word-list path (``user_listener=False``). Interrupt when it lets a turn-start frame through
    downstream; keep at its first ``"backchannel"`` verdict (model path), its ``UserBackchannelFrame``, or when
    it drops the hold."""
    from backchannel.plugin.pipecat import TURN_START_FRAMES, BackchannelProcessor
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        InputAudioRawFrame,
        InterimTranscriptionFrame,
        OutputAudioRawFrame,
        StartFrame,
        TranscriptionFrame,
        UserBackchannelFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection

    proc = BackchannelProcessor(listener, user_listener=None if model else False)
    if model:
        proc.bot_audio_tap()  # the bot's audio and words are fed below, as the tap would
    await proc.setup(_setup())
    out = CaseOutcome(case.kind)
    stt = recogniser_frames(case.words, latency)

    def keep(now: float) -> None:
        if not out.interrupted and math.isnan(out.keep_s):
            out.keep_s = now

    async def push_frame(frame, direction=FrameDirection.DOWNSTREAM):
        now = proc.time_s - case.onset_s
        if direction != FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, TURN_START_FRAMES) and not out.interrupted:
            out.interrupt_s = now
        elif isinstance(frame, UserBackchannelFrame):
            keep(now)

    @proc.event_handler("on_user_onset")
    async def on_user_onset(processor, verdict):
        if verdict.verdict == "backchannel" and verdict.onset_s >= case.onset_s - FRAME_S - _EPS:
            keep(verdict.decided_s - case.onset_s)

    proc.push_frame = push_frame
    down = FrameDirection.DOWNSTREAM
    await proc.process_frame(StartFrame(audio_in_sample_rate=SR), down)
    proc.quiet = True  # the bot's own backchannels play no part here
    await proc.process_frame(BotStartedSpeakingFrame(), FrameDirection.UPSTREAM)
    k, said = 0, 0

    def bot_chunk(i: int) -> None:
        proc.add_bot_audio(OutputAudioRawFrame(audio=case.bot_pcm[i * CHUNK_N:(i + 1) * CHUNK_N].tobytes(),
                                               sample_rate=SR, num_channels=1))

    for i, edge in enumerate(edges):
        if model:
            while said < len(case.bot_words) and case.bot_words[said].end <= proc.time_s + _EPS:
                proc.add_bot_words(case.bot_words[said].text)  # the bot knows a word once it has said it
                said += 1
            if i:  # (the first bot chunk follows the first user chunk, which sets the clock's rate)
                bot_chunk(i)
        frames = [InputAudioRawFrame(audio=case.user_pcm[i * CHUNK_N:(i + 1) * CHUNK_N].tobytes(), sample_rate=SR,
                                     num_channels=1)]
        if edge is not None:
            frames.append(VADUserStartedSpeakingFrame() if edge else VADUserStoppedSpeakingFrame())
        while k < len(stt) and stt[k][0] <= (i + 1) * CHUNK_S + _EPS:
            _, text, final = stt[k]
            cls = TranscriptionFrame if final else InterimTranscriptionFrame
            frames.append(cls(text, "user", f"{stt[k][0]:.3f}"))
            k += 1
        for j, frame in enumerate(frames):
            held = proc.holding
            await proc.process_frame(frame, down)
            if model and i == 0 and j == 0:
                bot_chunk(0)
            if held and not proc.holding and not out.interrupted:
                keep(proc.time_s - case.onset_s)  # the hold ended without letting the turn through
        if out.interrupted:
            break
    await proc.cleanup()
    return out


def user_side_scores(outcomes: Sequence[CaseOutcome], within_s: float = 0.5) -> dict:
    """Share of backchannels that did not interrupt, share of take-turns that interrupted (and within
    ``within_s`` s of the onset), median latencies (s after the onset) of interruptions, of keep verdicts
    on backchannels and of every decision. NaN where a figure has no case."""
    def share(flags) -> float:
        flags = list(flags)
        return float(np.mean(flags)) if flags else math.nan

    def median(xs) -> float:
        xs = [x for x in xs if not math.isnan(x)]
        return float(np.median(xs)) if xs else math.nan

    bc = [o for o in outcomes if o.kind == "backchannel"]
    tt = [o for o in outcomes if o.kind != "backchannel"]
    decided = [o.interrupt_s if o.interrupted else o.keep_s for o in outcomes]
    return {"backchannels": len(bc), "take_turns": len(tt),
            "backchannels_not_interrupting": share(not o.interrupted for o in bc),
            "take_turns_interrupting": share(o.interrupted for o in tt),
            "take_turns_interrupting_within_500ms": share(o.interrupt_s <= within_s + _EPS for o in tt),
            "median_interrupt_latency_s": median(o.interrupt_s for o in tt),
            "median_backchannel_keep_latency_s": median(o.keep_s for o in bc if not o.interrupted),
            "median_decision_latency_s": median(decided)}


def user_side_outcomes(cases: Sequence[UserCase], listener, latency: float) -> dict[str, list[CaseOutcome]]:
    """Every user-side system on every case (``listener``: the model of our processor; its decisions as the
    bot's listener play no part)."""
    async def run() -> dict[str, list[CaseOutcome]]:
        out: dict[str, list[CaseOutcome]] = {"model": [], "word_list": [], "interrupt_on_vad": []}
        for case in cases:
            edges = await _vad_edges(case.user_pcm)
            out["interrupt_on_vad"].append(vad_outcome(case, edges))
            out["word_list"].append(await _processor_outcome(case, listener, edges, latency, model=False))
            out["model"].append(await _processor_outcome(case, listener, edges, latency, model=True))
        return out

    deadline, listener.deadline_s = listener.deadline_s, math.inf  # as in listener_onsets
    try:
        return asyncio.run(run())
    finally:
        listener.deadline_s = deadline


# ---------------------------------------------------------------- the benchmark

def tiny_listener(seed: int = 0, policy=None):
    """A tiny randomly initialised listener for smoke runs and tests (its figures mean nothing)."""
    import torch
    from backchannel.plugin.features import StreamingFeatures
    from backchannel.plugin.listener import StreamingListener

    from backchannel.backbones import TimingBackbone
    from backchannel.head import TimingHead
    from backchannel.policy import Policy

    torch.manual_seed(seed)
    backbone = TimingBackbone(d_model=16, n_layers=1, n_heads=2, window=16).eval()
    head = TimingHead(backbone.hidden_size, hidden=8).eval()
    return StreamingListener(backbone, head, policy or Policy(), features=StreamingFeatures(SR))


def default_listener(checkpoint: str | Path | None = None, policy=None):
    """``load_listener(checkpoint, policy)``; without a checkpoint the packaged default model when
    ``load_listener()`` takes no argument, else None (no default model yet)."""
    from backchannel.plugin.listener import load_listener

    kw = {} if policy is None else {"policy": policy}
    if checkpoint is not None:
        return load_listener(checkpoint, **kw)
    param = inspect.signature(load_listener).parameters.get("checkpoint")
    if param is not None and param.default is inspect.Parameter.empty:
        return None
    return load_listener(**kw)


def run_benchmark(sessions: Iterable[Session], *, listener=None, latency: float = 0.3, pipecat: bool = True,
                  word_va: bool = True, user_side: bool = True, seed: int = 0, progress: bool = False) -> dict:
    """Every system on every session, scored (see the module docstring). Returns the result dict (no I/O)."""
    from tqdm import tqdm

    if latency < 0 or not math.isfinite(latency):
        raise BenchError(f"--latency must be a finite number of seconds >= 0, got {latency}")
    names = []
    if listener is not None:
        names += ["ours", "ours_no_words"] + (["ours_word_va"] if word_va else [])
    names.append("pause_gate")
    if pipecat:
        names += [f"pipecat_backchannel_p{p:g}" for p in PIPECAT_FIRE_PROBABILITIES]
    pred = {n: [] for n in names}
    cpu = dict.fromkeys(names, 0.0)
    gold, va, durations, described = [], [], [], []
    outcomes: dict[str, list[CaseOutcome]] = {}
    bot_stop_s = None
    faults0 = dict(listener.faults) if listener is not None else {}
    for s in tqdm(sessions, desc="e2e audio", unit="session", disable=not progress):
        gold.append(s.gold)
        va.append(np.asarray(s.row["va_speaker"], dtype=np.float32))
        durations.append(s.duration)
        described.append({"dialogue": s.dialogue, "listener": s.listener, "duration_s": round(s.duration, 2),
                          "gold": len(s.gold)})

        def timed(name, fn, *args):
            c = time.process_time()
            pred[name].append(fn(*args))
            cpu[name] += time.process_time() - c

        if listener is not None:
            timed("ours", listener_onsets, listener, s, latency)
            timed("ours_no_words", listener_onsets, listener, s, None)
            if word_va:
                timed("ours_word_va", word_va_onsets, listener, s)
        timed("pause_gate", pause_gate_onsets, s)
        if pipecat:
            for p in PIPECAT_FIRE_PROBABILITIES:
                onsets, c = pipecat_backchannel_onsets(s, p, session_seed(seed, s))
                pred[f"pipecat_backchannel_p{p:g}"].append(onsets)
                cpu[f"pipecat_backchannel_p{p:g}"] += c
        if user_side:
            if bot_stop_s is None:
                from pipecat.transports.base_output import BOT_VAD_STOP_SECS as bot_stop_s
            cases = user_cases(s, bot_stop_s)
            for name, outs in user_side_outcomes(cases, listener or tiny_listener(seed), latency).items():
                outcomes.setdefault(name, []).extend(outs)
    if not durations:
        raise BenchError("no session to measure")
    hours = sum(durations) / 3600
    systems = {n: score(pred[n], gold, va, durations) | {"cpu_s": cpu[n], "cpu_s_per_audio_hour": cpu[n] / hours}
               for n in names}
    result = {"gold": "isolated (bc_isolated)",
              "sessions": described, "audio_hours": hours, "latency_s": latency, "seed": seed, "systems": systems}
    for key, name in (("ours_f1", "ours"), ("ours_no_words_f1", "ours_no_words"),
                      ("ours_word_va_f1", "ours_word_va"), ("pause_gate_f1", "pause_gate")):
        result[key] = systems[name]["f1"] if name in systems else None
    if pipecat:
        pf = {p: systems[f"pipecat_backchannel_p{p:g}"]["f1"] for p in PIPECAT_FIRE_PROBABILITIES}
        result["pipecat_backchannel_f1"] = max(pf.values())
        result["pipecat_backchannel_default_f1"] = pf[0.8]
    else:
        result["pipecat_backchannel_f1"] = None
    if listener is not None:
        result["listener_faults"] = {k: v - faults0.get(k, 0) for k, v in listener.faults.items()
                                     if v - faults0.get(k, 0)}
    if user_side:
        from backchannel.plugin.pipecat import has_onset_output

        result["user_side"] = {n: user_side_scores(o) for n, o in outcomes.items()}
        result["user_side"]["model"]["model_has_onset_output"] = has_onset_output(
            (listener or tiny_listener(seed)).head)
        result["user_side"]["model"]["listener"] = "ours" if listener is not None else "tiny random (no listener)"
    result["acceptance"] = acceptance(result)
    return result


def acceptance(result: dict) -> dict:
    """Issue 11's acceptance figures 1 and 2 computed from ``result`` (None where a system did not run).

    CPU is compared with the cheaper pipecat-backchannel setting; the user-side figures pass as None when
    the listener's head has no onset output (its model path is then the word list)."""
    sy = result["systems"]

    def check(value, low=None, high=None) -> dict:
        ok = None if value is None or (isinstance(value, float) and math.isnan(value)) else \
            (low is None or value >= low - 1e-12) and (high is None or value <= high + 1e-12)
        return {"value": value, "min": low, "max": high, "pass": ok}

    def ratio(a, b):
        return None if a is None or b is None or not b > 0 else a / b

    pipecat = [sy[k] for k in sy if k.startswith("pipecat_backchannel")]
    out = {"ours_f1_over_pipecat_backchannel_f1": check(ratio(result["ours_f1"], result["pipecat_backchannel_f1"]),
                                                        2.0),
           "ours_f1_over_ours_word_va_f1": check(ratio(result["ours_f1"], result["ours_word_va_f1"]), 0.9),
           "ours_rate_over_human_rate": check(sy["ours"]["rate_ratio"] if "ours" in sy else None, 0.8, 1.25),
           "ours_cpu_over_pipecat_backchannel_cpu": check(
               ratio(sy["ours"]["cpu_s_per_audio_hour"], min(p["cpu_s_per_audio_hour"] for p in pipecat))
               if "ours" in sy and pipecat else None, None, 0.2)}
    us = result.get("user_side")
    if us:
        wl, md = us["word_list"], us["model"]
        out["model_backchannels_not_interrupting"] = check(md["backchannels_not_interrupting"], 0.9)
        out["model_take_turns_interrupting_within_500ms"] = check(md["take_turns_interrupting_within_500ms"], 0.95)
        beats = None
        if not any(math.isnan(x) for x in (md["backchannels_not_interrupting"], wl["backchannels_not_interrupting"],
                                           md["median_decision_latency_s"], wl["median_decision_latency_s"])):
            beats = bool(md["backchannels_not_interrupting"] > wl["backchannels_not_interrupting"]
                         and md["median_decision_latency_s"] <= wl["median_decision_latency_s"] + _EPS)
        out["model_beats_word_list_at_equal_or_better_latency"] = {"pass": beats}
        if not md["model_has_onset_output"]:  # then the model path is the word list: nothing measured
            for k in ("model_backchannels_not_interrupting", "model_take_turns_interrupting_within_500ms",
                      "model_beats_word_list_at_equal_or_better_latency"):
                out[k]["pass"], out[k]["note"] = None, "the listener's head has no onset output"
    return out


def _cell(x, digits: int = 3) -> str:
    from backchannel.evaluation.report import cell

    return cell(x, digits)


def markdown(result: dict) -> str:
    """The result as two markdown tables."""
    from backchannel.evaluation.report import md_table

    human = next(iter(result["systems"].values()))["human_rate_per_minute"]
    rows = [[n, _cell(r["f1"]), _cell(r["precision"]), _cell(r["recall"]), _cell(r["rate_per_minute"], 2),
             _cell(r["rate_ratio"], 2), _cell(r["offset_js_distance"]), _cell(r["cpu_s_per_audio_hour"], 1)]
            for n, r in result["systems"].items()]
    lines = [(f"Backchannel timing, {result['gold']} gold, {MARGIN_LABEL} ms, {len(result['sessions'])} sessions, "
             f"{result['audio_hours']:.2f} audio h; human rate {human:.2f}/min"), ""]
    lines += md_table(["system", "F1", "P", "R", "rate/min", "rate/human", "offset JSD", "CPU s/audio h"], rows)
    if result.get("user_side"):
        us = result["user_side"]
        first = next(iter(us.values()))
        lines += [(f"User backchannels vs barge-ins ({first['backchannels']} backchannels, {first['take_turns']} "
                  "take-turns)"), ""]
        lines += md_table(["system", "bc not interrupting", "take-turns interrupting", "within 500 ms",
                         "median interrupt s", "median decision s"],
                        [[n + ("" if n != "model" or us[n]["model_has_onset_output"] else " (no onset output: "
                               "= word list)"),
                          _cell(us[n]["backchannels_not_interrupting"]), _cell(us[n]["take_turns_interrupting"]),
                          _cell(us[n]["take_turns_interrupting_within_500ms"]),
                          _cell(us[n]["median_interrupt_latency_s"], 2), _cell(us[n]["median_decision_latency_s"], 2)]
                         for n in us])
    return "\n".join(lines)



def _describe(listener, how: str) -> dict | None:
    if listener is None:
        return None
    from dataclasses import asdict

    f = listener.features
    return {"source": how, "checkpoint": listener.checkpoint, "policy": asdict(listener.policy),
            "features": {"sample_rate": f.sample_rate, "vad_mode": f.vad_mode, "prosody": f.prosody}}


def write_json(result: dict, out: Path) -> None:
    """Write ``result`` to ``out`` atomically (NaN as null)."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp")
    tmp.write_text(json.dumps(clean(result), indent=1, default=str) + "\n")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dialogues", type=int, default=None, help="first N test dialogues (default: all)")
    ap.add_argument("--latency", type=float, default=0.3, help="recogniser latency after each word's end (s)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="listener checkpoint (default: the packaged model)")
    ap.add_argument("--policy", type=Path, default=None, help="evaluation report.json with the dev-tuned policy")
    ap.add_argument("--tiny", action="store_true", help="a tiny random listener (smoke run: figures mean nothing)")
    ap.add_argument("--data", type=Path, default=Path("data/maptask"), help="prepared dataset")
    ap.add_argument("--root", type=Path, default=None, help="corpus folder (default: the manifest's source_root)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="rendered-audio cache")
    ap.add_argument("--no-pipecat", action="store_true", help="skip pipecat-backchannel")
    ap.add_argument("--no-user-side", action="store_true", help="skip user backchannels vs barge-ins")
    ap.add_argument("--no-word-va", action="store_true", help="skip our listener on word-timing activity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
        from loguru import logger

        torch.set_num_threads(1)
        logger.remove()  # pipecat logs every frame decision at DEBUG: measure at a production log level
        logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass
    try:
        if args.dialogues is not None and args.dialogues < 1:
            raise BenchError(f"--dialogues must be >= 1, got {args.dialogues}")
        if not args.no_pipecat or not args.no_user_side:
            try:
                import pipecat  # noqa: F401
                if not args.no_pipecat:
                    import pipecat_backchannel  # noqa: F401
            except ImportError as err:
                raise BenchError(f"{err.name} is not installed: pip install -e '.[bench]' (or pass --no-pipecat "
                                 "--no-user-side)") from None
        _, manifest = load_prepared(args.data) if args.data.exists() else (None, None)
        if manifest is None:
            raise BenchError(f"{args.data}: no prepared dataset (run `backchannel corpus prepare`)")
        policy = None
        if args.policy is not None:
            from backchannel.policy import Policy

            try:
                policy = Policy.from_report(args.policy, manifest["corpus"])
            except (OSError, ValueError) as err:
                raise BenchError(f"{args.policy}: {err}") from None
        if args.tiny:
            listener, how = tiny_listener(args.seed, policy), "tiny random (smoke run: figures mean nothing)"
        else:
            try:
                listener = default_listener(args.checkpoint, policy)
            except Exception as err:  # noqa: BLE001 -- CheckpointError and friends: one line
                raise BenchError(f"{args.checkpoint or 'default model'}: {err}") from None
            how = str(args.checkpoint) if args.checkpoint else "default model"
        if listener is None:
            print("note: no default model in the package yet and no --checkpoint: measuring the baselines only",
                  file=sys.stderr)
        renderer = Renderer(args.cache)
        started = time.perf_counter()
        sessions = load_sessions(args.data, root=args.root, limit=args.dialogues, renderer=renderer)
        result = run_benchmark(sessions, listener=listener, latency=args.latency, pipecat=not args.no_pipecat,
                               word_va=not args.no_word_va, user_side=not args.no_user_side, seed=args.seed,
                               progress=True)
    except (BenchError, CorpusError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_dialogues = len({s["dialogue"] for s in result["sessions"]})
    result.update({
        "command": "python benchmarks/e2e_audio.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": date.today().isoformat(), "data": str(args.data), "corpus": manifest["corpus"], "split": "test",
        "dialogues": n_dialogues, "listener": _describe(listener, how), "wall_s": time.perf_counter() - started,
        "rendering": {"tts": renderer.tts_name, "voices": list(VOICES), "sample_rate": SR, **renderer.stats,
                      "render_cpu_s_per_dialogue": renderer.stats["render_cpu_s"]
                      / max(renderer.stats["dialogues_rendered"], 1)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg": os.getloadavg()},
    })
    write_json(result, args.out)
    print(markdown(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
