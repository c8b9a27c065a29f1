"""A pipecat voice agent that backchannels ("mhm") while the user talks and hears the user's own "mhm"s
as backchannels instead of interruptions (``backchannel.plugin.pipecat``).

Needs the extra: ``pip install -e '.[pipecat]'``.

Dry run (here, offline, the package's default model, ~10 s)::

    python examples/pipecat_agent.py --dry-run [--random-weights]

It plays a scripted conversation through the processor and pipecat's own user aggregator, on the audio
clock (``SCRIPT``): the bot talks (its audio goes through the bot-audio tap) while the user says "mhm"
(a tone burst, pipecat's VAD frames, its transcription) and then barges in ("wait, turn left at the
lake"); the bot then listens to the user's story, paced with pauses where a listener backchannels. It
prints each behaviour with its frames at the end of the pipeline: the bot's backchannels said
(``BotBackchannelFrame``) and those decided but not said, with why ("not said: bot speaking"); the user
backchannel that did not interrupt (``UserBackchannelFrame``; the model's verdict, else the words); the
barge-in that did (``InterruptionFrame``). ``--random-weights``: an untrained listener instead of the
default model (shows the plumbing only).

Live: the transport, VAD, STT, LLM and TTS are yours to pick (pipecat services need API keys or
models this project does not ship). Build them and call :func:`live_pipeline`, e.g.::

    from pipecat.audio.vad.silero import SileroVADAnalyzer      # its ONNX model ships inside pipecat-ai
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.services.cartesia.tts import CartesiaTTSService  # extras: pipecat-ai[cartesia,deepgram,openai]
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams  # pyaudio

    transport = LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True, audio_out_enabled=True))
    pipeline = live_pipeline(transport, VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                             DeepgramSTTService(api_key=...), OpenAILLMService(api_key=...),
                             CartesiaTTSService(api_key=..., voice_id=...))
    runner = WorkerRunner()
    await runner.add_workers(PipelineWorker(pipeline))
    await runner.run()

(Check each service's constructor against your pipecat version; with headphones, or the bot hears itself.)

Rules that matter (see ``backchannel/plugin/pipecat.py``): the VAD runs upstream of the processor (not
as the user aggregator's ``vad_analyzer``); the processor sits between the STT and the user aggregator;
its bot-audio tap goes right after ``transport.output()`` (the model-based user side hears the bot
through it). ``BackchannelProcessor()`` loads the package's default listener; pass
``load_listener("your_model")`` for your own.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter

import numpy as np
import torch
from backchannel.plugin.features import StreamingFeatures
from backchannel.plugin.listener import StreamingListener
from backchannel.plugin.pipecat import BackchannelProcessor
from loguru import logger
from pipecat.frames.frames import (
    BotBackchannelFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    InterimTranscriptionFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_start import TranscriptionUserTurnStartStrategy, VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from backchannel.backbones import TimingBackbone
from backchannel.head import TimingHead
from backchannel.policy import Policy

USER_SR, BOT_SR = 16000, 24000  # Hz: a typical transport input and TTS output
CHUNK_S = 0.02  # seconds per transport audio frame
VAD_START_S, VAD_STOP_S = 0.2, 0.2  # s: pipecat's default VADParams (start_secs, stop_secs)
STT_LATENCY_S = 0.3  # s after a stretch of speech ends: its final transcription

#: The dry run's conversation, seconds on the audio clock. The bot speaks 0.5-3.4 s (it stops once the user's
#: barge-in has interrupted it); the user's speech: (start, duration, transcript) while the bot speaks, then
#: a story while the bot listens (a stretch every STORY_EVERY_S s from STORY_FROM_S).
BOT_SPEECH = (0.5, 3.4)
USER_WHILE_BOT = [(1.5, 0.32, "Mhm."), (2.7, 1.3, "wait, turn left at the lake")]
STORY_FROM_S, STORY_EVERY_S = 6.0, 2.4
STORY = ["so we went down past the old mill", "and then along the river for a while",
         "until we reached the bridge", "and the farm was right there", "with the big red barn"]
DRY_RUN_POLICY = dict(on=0.35, refractory=1.5, cadence=12.0, take_turn=None)  # random weights only


def build_listener(random_weights: bool = False, seed: int = 4) -> StreamingListener:
    """The bot's streaming listener: the package's default model (``load_listener()``), or with
    ``random_weights`` an untrained one (a lowered threshold so that it fires now and then)."""
    from backchannel.plugin import listener as listener_module

    if not random_weights:
        return listener_module.load_listener()
    torch.manual_seed(seed)
    backbone = TimingBackbone().eval()
    head = TimingHead(backbone.hidden_size, hidden=64).eval()
    return StreamingListener(backbone, head, Policy(**DRY_RUN_POLICY), features=StreamingFeatures(USER_SR),
                             deadline_s=0.05)


def user_turn_strategies() -> UserTurnStrategies:
    """pipecat's default start strategies, and a stop strategy that loads no model (the default
    smart-turn analyser would load one)."""
    return UserTurnStrategies(start=[VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()],
                              stop=[SpeechTimeoutUserTurnStopStrategy()])


def live_pipeline(transport, vad: FrameProcessor, stt, llm, tts, listener: StreamingListener | None = None) -> Pipeline:
    """The full agent: VAD upstream of the processor, processor between STT and the user aggregator,
    bot-audio tap after the output transport. ``listener``: default the package's default model."""
    processor = BackchannelProcessor(listener)
    context = LLMContext([{"role": "system", "content": "You are a helpful voice assistant. Be brief."}])
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(user_turn_strategies=user_turn_strategies()))
    return Pipeline([transport.input(), vad, stt, processor, aggregators.user(), llm, tts, transport.output(),
                     processor.bot_audio_tap(), aggregators.assistant()])


# ----------------------------------------------------------------------------------- dry run

class Speaker(FrameProcessor):
    """Stand-in for the TTS and the output transport in the dry run: records the bot's backchannels."""

    def __init__(self, clock, **kwargs):
        super().__init__(**kwargs)
        self.clock, self.said = clock, []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotBackchannelFrame):
            self.said.append((self.clock(), frame.text, frame.append_to_context))
        await self.push_frame(frame, direction)


class Counting(FrameProcessor):
    """Counts the frames that reach the end of the pipeline; notes when each interruption arrived."""

    def __init__(self, clock, **kwargs):
        super().__init__(**kwargs)
        self.clock, self.seen, self.interruptions = clock, Counter(), []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        self.seen[type(frame).__name__] += 1
        if isinstance(frame, InterruptionFrame):
            self.interruptions.append(self.clock())
        await self.push_frame(frame, direction)


def tone(seconds: float, sr: int, f0: float, rng) -> np.ndarray:
    """A voiced stand-in for speech: harmonics of a wandering F0, syllable-rate amplitude, 20 ms fades."""
    t = np.arange(round(seconds * sr)) / sr
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(h * phase) / h for h in range(1, 6)) * 0.15 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    return x * np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)


def user_speech(seconds: float) -> list[tuple[float, float, str]]:
    """(start s, duration s, transcript) of every stretch of the user's speech in a dry run of ``seconds``."""
    story = [(STORY_FROM_S + i * STORY_EVERY_S, 0.16 * len(text.split()) + 0.5, text) for i, text in
             enumerate(STORY)]
    return USER_WHILE_BOT + [(a, d, text) for a, d, text in story if a + d + 1.0 <= seconds]


def script(seconds: float) -> list[tuple[float, object]]:
    """(time s, frame) events of the conversation, audio excluded: the bot's start/stop, pipecat's VAD
    frames, and the recogniser's interim and final transcriptions."""
    u, stamp = "user", "2026-01-01T00:00:00Z"
    out = [(BOT_SPEECH[0], BotStartedSpeakingFrame()), (BOT_SPEECH[1] + 0.35, BotStoppedSpeakingFrame())]
    for start, dur, text in user_speech(seconds):
        end = start + dur
        out += [(start + VAD_START_S, VADUserStartedSpeakingFrame()),
                (end + VAD_STOP_S, VADUserStoppedSpeakingFrame(stop_secs=VAD_STOP_S)),
                (end + STT_LATENCY_S, TranscriptionFrame(text, u, stamp))]
        words = text.split()
        for k in range(2, len(words), 2):  # an interim transcription every other word
            out.append((start + dur * k / len(words) + STT_LATENCY_S / 2,
                        InterimTranscriptionFrame(" ".join(words[:k]), u, stamp)))
    return sorted(out, key=lambda e: e[0])


def conversation(seconds: float, seed: int) -> list[tuple[float, object, FrameDirection]]:
    """All frames of the dry run in time order: user audio (16 kHz), bot audio (24 kHz, as played) while
    the bot speaks, and :func:`script`."""
    rng = np.random.default_rng(seed)
    n = round(seconds / CHUNK_S)
    user = rng.normal(0, 1e-3, round(seconds * USER_SR))
    for start, dur, _ in user_speech(seconds):
        a = round(start * USER_SR)
        seg = tone(dur, USER_SR, 120 * rng.uniform(0.9, 1.1), rng)
        user[a:a + len(seg)] += seg[: len(user) - a]
    bot = np.zeros(round(seconds * BOT_SR))
    a, b = (round(t * BOT_SR) for t in BOT_SPEECH)
    bot[a:b] = tone((b - a) / BOT_SR, BOT_SR, 200, rng)[: b - a]

    def pcm(x):
        return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()

    events = [(at, f, FrameDirection.DOWNSTREAM) for at, f in script(seconds)]
    for k in range(n):
        us, bs = round(k * CHUNK_S * USER_SR), round(k * CHUNK_S * BOT_SR)
        events.append((k * CHUNK_S, InputAudioRawFrame(pcm(user[us:us + round(CHUNK_S * USER_SR)]), USER_SR, 1),
                       FrameDirection.DOWNSTREAM))
        if BOT_SPEECH[0] <= k * CHUNK_S < BOT_SPEECH[1]:
            events.append((k * CHUNK_S, OutputAudioRawFrame(pcm(bot[bs:bs + round(CHUNK_S * BOT_SR)]), BOT_SR, 1),
                           FrameDirection.DOWNSTREAM))
    return sorted(events, key=lambda e: e[0])


def _s(t: float) -> str:
    return f"{t:.2f} s"


async def dry_run(seconds: float = 12.0, seed: int = 4, realtime: bool = False, random_weights: bool = False) -> dict:
    """Run the scripted conversation; print what happened, behaviour by behaviour; return the counts."""
    listener = build_listener(random_weights, seed)
    processor = BackchannelProcessor(listener)
    clock = lambda: processor.time_s  # noqa: E731 -- the user-audio clock
    context = LLMContext()
    user_aggregator = LLMUserAggregator(context, params=LLMUserAggregatorParams(user_turn_strategies=user_turn_strategies()))
    speaker, end = Speaker(clock), Counting(clock)
    pipeline = Pipeline([processor, user_aggregator, speaker, processor.bot_audio_tap(), end])
    worker = PipelineWorker(pipeline, cancel_on_idle_timeout=False, enable_rtvi=False)
    unsaid: list[tuple[float, str]] = []
    kept: list[tuple[float, str]] = []
    verdicts = []
    probs: list[float] = []

    @processor.event_handler("on_decision")
    async def on_decision(processor, decision):
        probs.append(decision.probability)
        why = processor.unsaid_reason(decision)
        if why is not None:
            unsaid.append((decision.time, why))

    @processor.event_handler("on_user_backchannel")
    async def on_user_backchannel(processor, frame):
        kept.append((processor.time_s, frame.text))

    @processor.event_handler("on_user_onset")
    async def on_user_onset(processor, verdict):
        verdicts.append(verdict)

    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):
        started.set()

    async def feed():
        await started.wait()
        loop_clock = asyncio.get_running_loop().time
        t0 = loop_clock()
        for at, frame, direction in conversation(seconds, seed):
            if realtime and at > loop_clock() - t0:
                await asyncio.sleep(at - (loop_clock() - t0))
            await worker.queue_frame(frame, direction)
            if not realtime and isinstance(frame, TranscriptionFrame):
                await asyncio.sleep(0.7)  # the aggregator's turn-stop timers run on the wall clock (0.6 s)
            elif not realtime and not isinstance(frame, (InputAudioRawFrame, OutputAudioRawFrame)):
                await asyncio.sleep(0.05)  # let the frames before it through first (system frames overtake)
            elif not realtime:
                await asyncio.sleep(0)
        await asyncio.sleep(0.5)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())

    bot_on, bot_off = BOT_SPEECH[0], BOT_SPEECH[1] + 0.35
    during = [t for t in end.interruptions if bot_on <= t <= bot_off]
    weights = "random weights (untrained: the plumbing, not a model)" if random_weights else \
        f"default model {(listener.checkpoint or {}).get('checkpoint', '')}".rstrip()
    print(f"listener: {weights}; model-based user side: "
          f"{'on' if processor.user_listener is not None else 'off (no onset output: the words decide)'}")
    print(f"bot backchannels said: {len(speaker.said)} (BotBackchannelFrame at the end of the pipeline: "
          f"{end.seen['BotBackchannelFrame']})")
    for t, text, in_context in speaker.said:
        print(f"  {_s(t)}: bot says {text!r} (append_to_context={in_context})")
    print(f"bot backchannels decided but not said: {len(unsaid)}")
    for t, why in unsaid:
        print(f"  {_s(t)}: not said: {why}")
    print(f"user backchannels while the bot spoke: {len(kept)} did not interrupt (UserBackchannelFrame at the end "
          f"of the pipeline: {end.seen['UserBackchannelFrame']})")
    for t, text in kept:
        print(f"  {_s(t)}: user backchannel {text!r}: no interruption")
    print(f"model verdicts on user onsets while the bot spoke: {len(verdicts)}")
    for v in verdicts:
        print(f"  {_s(v.decided_s)}: the onset at {_s(v.onset_s)}: {v.verdict} "
              f"(p(backchannel)={v.p_backchannel:.2f}, threshold {processor.user_backchannel_threshold})")
    print(f"user barge-ins while the bot spoke: {len(during)} interrupted the bot (InterruptionFrame at the end of "
          f"the pipeline while the bot spoke: {len(during)}" + (f"; released: {processor.last_release}"
                                                                 if processor.last_release else "") + ")")
    for t in during:
        print(f"  {_s(t)}: interruption")
    print(f"user turns while the bot listened: {len(end.interruptions) - len(during)} (their InterruptionFrames "
          "interrupt nothing)")
    print(f"smoothed p(backchannel): median {np.median(probs):.2f}, max {max(probs):.2f} "
          f"(threshold {listener.policy.on})")
    print(f"listener faults: {dict(listener.faults)}; processor faults: {dict(processor.faults)}")
    print("user turns in the LLM context:", [m["content"] for m in context.get_messages()])
    return {"bot_backchannels_said": len(speaker.said), "bot_backchannels_unsaid": len(unsaid),
            "user_backchannels": len(kept), "barge_ins": len(during), "frames": dict(end.seen),
            "verdicts": [v.verdict for v in verdicts]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="the scripted conversation, no services")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the dry-run conversation (s)")
    p.add_argument("--seed", type=int, default=4,
                   help="audio noise and random weights (default 4: the untrained head then fires once while the "
                        "bot speaks and once in the user's story)")
    p.add_argument("--random-weights", action="store_true",
                   help="an untrained listener (threshold lowered to 0.35 so that it fires now and then) instead "
                        "of the package's default model")
    p.add_argument("--realtime", action="store_true", help="pace the dry run at the audio's real time")
    p.add_argument("--verbose", action="store_true", help="pipecat's DEBUG log")
    args = p.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    if not args.dry_run:
        p.error("live mode needs your transport, VAD, STT, LLM and TTS: see live_pipeline() in this file; "
                "or run with --dry-run")
    torch.set_num_threads(1)
    try:
        asyncio.run(dry_run(args.seconds, args.seed, args.realtime, args.random_weights))
    except (OSError, ValueError, TypeError) as err:
        if args.random_weights:
            raise
        print(f"error: the default listener did not load ({type(err).__name__}: {err}); "
              "run with --random-weights to see the plumbing", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
