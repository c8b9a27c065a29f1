"""A pipecat voice agent that backchannels ("mhm") while the user talks and hears the user's own "mhm"s
as backchannels instead of interruptions (``backchannel.plugin.pipecat``).

Needs the extra: ``pip install -e '.[pipecat]'``.

Dry run (here, offline, random weights, ~10 s)::

    python examples/pipecat_agent.py --dry-run

It plays a made-up conversation through the processor and pipecat's own user aggregator: the bot talks
(its audio goes through the bot-audio tap), the user says "mhm" (a tone burst plus its transcription),
then the user takes a real turn ("turn left at the lake") and, later, talks while the bot listens. It
prints what reached the end of the pipeline: one ``UserBackchannelFrame`` and no interruption for the
"mhm", an interruption for the real turn, and the bot's backchannels decided by the (untrained) head.

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
                             CartesiaTTSService(api_key=..., voice_id=...), build_listener())
    runner = WorkerRunner()
    await runner.add_workers(PipelineWorker(pipeline))
    await runner.run()

(Check each service's constructor against your pipecat version; with headphones, or the bot hears itself.)

Rules that matter (see ``backchannel/plugin/pipecat.py``): the VAD runs upstream of the processor (not
as the user aggregator's ``vad_analyzer``); the processor sits between the STT and the user aggregator;
its bot-audio tap goes right after ``transport.output()``. Replace the random head in
:func:`build_listener` by your trained one (``head.load_state_dict(...)``, and the backbone's).
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


def build_listener(seed: int = 0, policy: Policy | None = None) -> StreamingListener:
    """The bot's streaming listener. Random weights here: load your trained backbone and head instead."""
    torch.manual_seed(seed)
    backbone = TimingBackbone().eval()
    head = TimingHead(backbone.hidden_size, hidden=64).eval()
    policy = policy or Policy(on=0.5, refractory=1.5, cadence=12.0, take_turn=None)
    return StreamingListener(backbone, head, policy, features=StreamingFeatures(USER_SR), deadline_s=0.05)


def user_turn_strategies() -> UserTurnStrategies:
    """pipecat's default start strategies, and a stop strategy that loads no model (the default
    smart-turn analyser would load one)."""
    return UserTurnStrategies(start=[VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()],
                              stop=[SpeechTimeoutUserTurnStopStrategy()])


def live_pipeline(transport, vad: FrameProcessor, stt, llm, tts, listener: StreamingListener) -> Pipeline:
    """The full agent: VAD upstream of the processor, processor between STT and the user aggregator,
    bot-audio tap after the output transport."""
    processor = BackchannelProcessor(listener)
    context = LLMContext([{"role": "system", "content": "You are a helpful voice assistant. Be brief."}])
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(user_turn_strategies=user_turn_strategies()))
    return Pipeline([transport.input(), vad, stt, processor, aggregators.user(), llm, tts, transport.output(),
                     processor.bot_audio_tap(), aggregators.assistant()])


# ----------------------------------------------------------------------------------- dry run

class Speaker(FrameProcessor):
    """Stand-in for the TTS and the output transport in the dry run: prints the bot's backchannels."""

    def __init__(self, log: list, **kwargs):
        super().__init__(**kwargs)
        self.log = log

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotBackchannelFrame):
            self.log.append(f"bot says {frame.text!r} (append_to_context={frame.append_to_context})")
        await self.push_frame(frame, direction)


class Counting(FrameProcessor):
    """Counts the frames that reach the end of the pipeline."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: Counter = Counter()

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        self.seen[type(frame).__name__] += 1
        await self.push_frame(frame, direction)


def tone(seconds: float, sr: int, f0: float, rng) -> np.ndarray:
    """A voiced stand-in for speech: harmonics of a wandering F0, syllable-rate amplitude, 20 ms fades."""
    t = np.arange(round(seconds * sr)) / sr
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(h * phase) / h for h in range(1, 6)) * 0.15 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    return x * np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)


def script(rng) -> list[tuple[float, object]]:
    """(time s, frame) events of the made-up conversation, audio excluded."""
    u, t = "user", "2026-01-01T00:00:00Z"
    return [(0.5, BotStartedSpeakingFrame()),
            (1.5, VADUserStartedSpeakingFrame()), (1.82, VADUserStoppedSpeakingFrame(stop_secs=0.2)),
            (2.1, TranscriptionFrame("Mhm.", u, t)),
            (3.2, VADUserStartedSpeakingFrame()), (3.5, InterimTranscriptionFrame("turn", u, t)),
            (3.8, InterimTranscriptionFrame("turn left at", u, t)), (4.4, VADUserStoppedSpeakingFrame(stop_secs=0.2)),
            (4.6, TranscriptionFrame("turn left at the lake", u, t)), (4.7, BotStoppedSpeakingFrame())]


def conversation(seconds: float, seed: int) -> list[tuple[float, object, FrameDirection]]:
    """All frames of the dry run in time order: user audio (16 kHz), bot audio (24 kHz) while the bot
    speaks (0.5-3.2 s), the user's "mhm" (1.5-1.82 s), turn (3.2-4.4 s) and a long story from 6 s."""
    rng = np.random.default_rng(seed)
    n = round(seconds / CHUNK_S)
    user = rng.normal(0, 1e-3, round(seconds * USER_SR))
    for start, dur in [(1.5, 0.32), (3.2, 1.2)] + [(s, rng.uniform(0.8, 2.2)) for s in np.arange(6.0, seconds - 2, 2.6)]:
        a = round(start * USER_SR)
        seg = tone(dur, USER_SR, 120 * rng.uniform(0.9, 1.1), rng)
        user[a:a + len(seg)] += seg[: len(user) - a]
    bot = np.zeros(round(seconds * BOT_SR))
    bot[round(0.5 * BOT_SR):round(0.5 * BOT_SR) + round(2.7 * BOT_SR)] = tone(2.7, BOT_SR, 200, rng)

    def pcm(x):
        return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()

    events = [(at, f, FrameDirection.DOWNSTREAM) for at, f in script(rng)]
    for k in range(n):
        us, bs = round(k * CHUNK_S * USER_SR), round(k * CHUNK_S * BOT_SR)
        events.append((k * CHUNK_S, InputAudioRawFrame(pcm(user[us:us + round(CHUNK_S * USER_SR)]), USER_SR, 1),
                       FrameDirection.DOWNSTREAM))
        if 0.5 <= k * CHUNK_S < 3.2:
            events.append((k * CHUNK_S, OutputAudioRawFrame(pcm(bot[bs:bs + round(CHUNK_S * BOT_SR)]), BOT_SR, 1),
                           FrameDirection.DOWNSTREAM))
    return sorted(events, key=lambda e: e[0])


async def dry_run(seconds: float, seed: int, realtime: bool, on: float) -> Counter:
    listener = build_listener(seed, Policy(on=on, refractory=1.5, cadence=12.0, take_turn=None))
    processor = BackchannelProcessor(listener)
    context = LLMContext()
    user_aggregator = LLMUserAggregator(context, params=LLMUserAggregatorParams(user_turn_strategies=user_turn_strategies()))
    said: list[str] = []
    end = Counting()
    pipeline = Pipeline([processor, user_aggregator, Speaker(said), processor.bot_audio_tap(), end])
    worker = PipelineWorker(pipeline, cancel_on_idle_timeout=False, enable_rtvi=False)
    decisions: Counter = Counter()
    probs: list[float] = []

    @processor.event_handler("on_decision")
    async def on_decision(processor, decision):
        decisions[decision.action] += 1
        probs.append(decision.probability)
        if decision.action == "BACKCHANNEL" and (processor.bot_speaking or processor.holding):
            said.append(f"{decision.time:.2f} s: backchannel decided while the bot speaks: not said")

    @processor.event_handler("on_user_backchannel")
    async def on_user_backchannel(processor, frame):
        said.append(f"user backchannel {frame.text!r} at {processor.time_s:.2f} s: no interruption")

    @processor.event_handler("on_bot_backchannel")
    async def on_bot_backchannel(processor, decision):
        said.append(f"{decision.time:.2f} s: bot backchannel {decision.form!r} ({decision.bc_type}, "
                    f"p={decision.probability:.2f})")

    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):
        started.set()

    async def feed():
        await started.wait()
        clock = asyncio.get_running_loop().time
        t0 = clock()
        for at, frame, direction in conversation(seconds, seed):
            if realtime and at > clock() - t0:
                await asyncio.sleep(at - (clock() - t0))
            await worker.queue_frame(frame, direction)
            if not realtime and isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
                await asyncio.sleep(0.05)  # let the frames before it through first (system frames overtake)
            elif not realtime:
                await asyncio.sleep(0)
        await asyncio.sleep(0.5)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    print("\n".join(said))
    print(f"smoothed p(backchannel): median {np.median(probs):.2f}, max {max(probs):.2f} (threshold {on}; "
          "random weights: load a trained head in build_listener() for real backchannels)")
    print(f"decisions: {dict(decisions)}; listener faults: {dict(listener.faults)}; "
          f"processor faults: {dict(processor.faults)}")
    print("frames at the end of the pipeline:", {k: v for k, v in sorted(end.seen.items()) if "Audio" not in k})
    print("LLM context:", context.get_messages())
    return end.seen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="synthetic frames, random weights, no services")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the dry-run conversation (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--on", type=float, default=0.35,
                   help="backchannel threshold; the random head's p(backchannel) stays near 0.2-0.4, so the dry run "
                        "lowers it from 0.5 to hear the untrained head fire now and then")
    p.add_argument("--realtime", action="store_true", help="pace the dry run at the audio's real time")
    p.add_argument("--verbose", action="store_true", help="pipecat's DEBUG log")
    args = p.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    if not args.dry_run:
        p.error("live mode needs your transport, VAD, STT, LLM and TTS: see live_pipeline() in this file; "
                "or run with --dry-run")
    torch.set_num_threads(1)
    asyncio.run(dry_run(args.seconds, args.seed, args.realtime, args.on))
    return 0


if __name__ == "__main__":
    sys.exit(main())
