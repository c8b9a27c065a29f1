"""pipecat adapter, with pipecat's own test harness (``pipecat.tests.utils.run_test``) on synthetic audio
frames: user backchannels instead of interruptions, real turns still interrupt, the bot's backchannel
frame, 80 ms windowing at 16 and 24 kHz, the bot-audio tap, and fault isolation."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

pytest.importorskip("pipecat", reason="needs the [pipecat] extra")

from backchannel.plugin.features import StreamingFeatures
from backchannel.plugin.listener import StreamingListener
from backchannel.plugin.pipecat import BackchannelProcessor, UserOnsetVerdict, pcm_to_float, user_onset_verdict
from pipecat.frames.frames import (
    BotBackchannelFrame,
    BotStartedSpeakingFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserBackchannelFrame,
    UserStartedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.user_start import TranscriptionUserTurnStartStrategy, VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.text.base_text_aggregator import TextType

from backchannel.backbones import TimingBackbone
from backchannel.head import HeadOutputs, TimingHead
from backchannel.lexicon import BC_TYPE_INDEX
from backchannel.policy import Policy

SR = 16000
NEVER = Policy(on=1.0, take_turn=None)  # random weights: no decision may depend on them


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


class RecordingFeatures(StreamingFeatures):
    """StreamingFeatures that records the words it is given and the voice activity it computes (since the
    last new state)."""

    def init_state(self, batch=1):
        self.words: list[tuple[str, str, float]] = []  # (party, word, end_s)
        self.va: list[tuple[float, float]] = []  # (listener, speaker) per frame
        return super().init_state(batch)

    def add_words(self, state, party, words):
        self.words += [(party, w, end) for w, end in words]
        super().add_words(state, party, words)

    def _from_audio(self, state, listener_pcm, speaker_pcm):
        out = super()._from_audio(state, listener_pcm, speaker_pcm)
        self.va.append((float(out["va_listener"]), float(out["va_speaker"])))
        return out


class ForcedHead:
    """A stub head whose logits make BACKCHANNEL (of ``bc_type``) certain at model call ``at``, SILENT
    otherwise. Its state counts the calls."""

    def __init__(self, at: int, bc_type: str = "agreement"):
        self.at, self.type_index = at, BC_TYPE_INDEX[bc_type]

    def init_state(self, batch_size: int = 1):
        return 0

    def step(self, state, x, inputs=None):
        actions = torch.full((x.shape[0], 3), -30.0)
        actions[:, 1 if state == self.at else 0] = 30.0
        types = torch.full((x.shape[0], 5), -30.0)
        types[:, self.type_index] = 30.0
        return HeadOutputs(actions, types), state + 1


class RaisingHead(ForcedHead):
    def step(self, state, x, inputs=None):
        raise RuntimeError("head exploded")


def tiny_backbone() -> TimingBackbone:
    torch.manual_seed(0)
    return TimingBackbone(d_model=16, n_layers=1, n_heads=2, window=16).eval()


def make_listener(head=None, policy=NEVER, sample_rate=SR) -> StreamingListener:
    backbone = tiny_backbone()
    head = head or TimingHead(backbone.hidden_size, hidden=8).eval()
    return StreamingListener(backbone, head, policy, features=RecordingFeatures(sample_rate), deadline_s=60.0)


def pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def audio_frames(x: np.ndarray, sr: int = SR, chunk: int | list[int] = 320, cls=InputAudioRawFrame) -> list:
    """``x`` cut into frames of ``chunk`` samples (a list: sizes used in turn, cycling)."""
    sizes = chunk if isinstance(chunk, list) else [chunk]
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(cls(audio=pcm(x[i:i + n]), sample_rate=sr, num_channels=1))
        i, k = i + n, k + 1
    return out


def silence(seconds: float, sr: int = SR) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1e-4, round(seconds * sr))


def voice(seconds: float, sr: int = SR, f0: float = 140.0) -> np.ndarray:
    """A voiced tone burst (harmonics of ``f0``, 20 ms fades), amplitude ~0.3."""
    t = np.arange(round(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * 0.15
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    return x * ramp


def user_aggregator(context: LLMContext) -> LLMUserAggregator:
    """pipecat's user aggregator with its default start strategies (VAD, transcription) and a stop
    strategy that loads no model."""
    strategies = UserTurnStrategies(start=[VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()],
                                    stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.2)])
    return LLMUserAggregator(context, params=LLMUserAggregatorParams(user_turn_strategies=strategies))


def run(processor, frames, **kwargs):
    return asyncio.run(run_test(processor, frames_to_send=frames, **kwargs))


def names(frames) -> list[str]:
    return [type(f).__name__ for f in frames]


# ----------------------------------------------------------------------------- user backchannels

def mhm_while_bot_speaks(interruption: bool = False) -> list:
    """The bot speaks; the user says a 300 ms "mhm" (VAD start/stop around it), then its transcription.
    ``interruption``: something upstream also pushes an ``InterruptionFrame`` at the VAD start."""
    return [BotStartedSpeakingFrame(), *audio_frames(silence(0.16)), VADUserStartedSpeakingFrame(),
            *([InterruptionFrame()] if interruption else []),
            *audio_frames(voice(0.32)), VADUserStoppedSpeakingFrame(), *audio_frames(silence(0.16)),
            SleepFrame(0.1), TranscriptionFrame("Mhm.", "user", "t0"), SleepFrame(0.05),
            *audio_frames(silence(0.4)), SleepFrame(0.3)]


def test_without_the_processor_a_user_mhm_interrupts_the_bot():
    """The control: pipecat's aggregator alone turns the "mhm" into a turn that interrupts the bot."""
    context = LLMContext()
    down, up = run(user_aggregator(context), mhm_while_bot_speaks())
    assert "InterruptionFrame" in names(down) and "InterruptionFrame" in names(up)
    assert [m["content"] for m in context.get_messages()] == ["Mhm."]


@pytest.mark.parametrize("interruption", [False, True])
def test_user_mhm_becomes_a_user_backchannel_frame_not_an_interruption(interruption):
    context = LLMContext()
    processor = BackchannelProcessor(make_listener())
    aggregator = user_aggregator(context)
    heard = []

    @aggregator.event_handler("on_user_backchannel")
    async def on_user_backchannel(aggregator, message):
        heard.append(message.content)

    down, up = run(Pipeline([processor, aggregator]), mhm_while_bot_speaks(interruption))
    bc = [f for f in down if isinstance(f, UserBackchannelFrame)]
    assert [(f.text, f.user_id, f.timestamp) for f in bc] == [("Mhm.", "user", "t0")]
    for name in ("InterruptionFrame", "UserStartedSpeakingFrame", "VADUserStartedSpeakingFrame",
                 "VADUserStoppedSpeakingFrame", "TranscriptionFrame"):
        assert name not in names(down), name
    assert "InterruptionFrame" not in names(up) and "UserStartedSpeakingFrame" not in names(up)
    assert heard == ["Mhm."]
    assert context.get_messages() == []  # nothing reached the LLM context
    # every audio frame still passed, and the listener heard the speaker's word once
    assert names(down).count("InputAudioRawFrame") == 8 + 16 + 8 + 20  # 20 ms each
    assert [(p, w) for p, w, _ in processor.listener.features.words] == [("speaker", "Mhm.")]


def test_real_utterance_interrupts_and_feeds_each_word_once():
    context = LLMContext()
    processor = BackchannelProcessor(make_listener())
    gap = SleepFrame(0.1)  # let each group be processed before the next (system frames overtake data frames)
    frames = [BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(),
              *audio_frames(voice(0.2)), gap, InterimTranscriptionFrame("turn", "user", "t1"), gap,
              *audio_frames(voice(0.2)), gap, InterimTranscriptionFrame("turn left", "user", "t2"), gap,
              *audio_frames(voice(0.2)), gap, InterimTranscriptionFrame("turn left at the", "user", "t3"), gap,
              *audio_frames(voice(0.2)), VADUserStoppedSpeakingFrame(), gap,
              TranscriptionFrame("turn left at the lake", "user", "t4"), gap,
              *audio_frames(silence(0.4)), SleepFrame(0.3)]
    down, up = run(Pipeline([processor, user_aggregator(context)]), frames)
    assert "InterruptionFrame" in names(down) and "InterruptionFrame" in names(up)
    assert "UserStartedSpeakingFrame" in names(down)
    assert not any(isinstance(f, UserBackchannelFrame) for f in down)
    assert [m["content"] for m in context.get_messages()] == ["turn left at the lake"]
    # "turn" is held back by the interim "turn" (the last word may still change), "left at" by
    # "turn left at the"; each word enters the text stream once, at the clock time it became stable.
    words = [(w, round(end, 6)) for _, w, end in processor.listener.features.words]
    assert words == [("turn", 0.4), ("left", 0.6), ("at", 0.6), ("the", 0.8), ("lake", 0.8)]


def test_long_user_speech_without_words_is_released_as_a_turn():
    """1.2 s of speech and no transcription yet: longer than a backchannel (1.0 s), so it interrupts."""
    context = LLMContext()
    processor = BackchannelProcessor(make_listener(), max_backchannel_s=1.0)
    frames = [BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), *audio_frames(voice(1.2)), SleepFrame(0.3)]
    down, _ = run(Pipeline([processor, user_aggregator(context)]), frames)
    assert "InterruptionFrame" in names(down)
    # the VAD start was held 1.0 s = 50 audio frames of 20 ms, then released before the 51st's successor
    i = names(down).index("VADUserStartedSpeakingFrame")
    assert names(down)[:i].count("InputAudioRawFrame") == 50


def test_speech_without_words_while_the_bot_speaks_is_dropped():
    processor = BackchannelProcessor(make_listener(), transcript_wait_s=0.4)
    frames = [BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), *audio_frames(voice(0.2)),
              VADUserStoppedSpeakingFrame(), *audio_frames(silence(0.6)), SleepFrame(0.1)]
    down, _ = run(processor, frames)
    assert names(down) == ["BotStartedSpeakingFrame"] + ["InputAudioRawFrame"] * 40
    assert processor._hold is None


def test_an_interruption_without_user_speech_is_released_after_the_wait():
    """An InterruptionFrame alone (e.g. the app's) while the bot speaks is held for the transcript wait
    (0.4 s = 20 audio frames of 20 ms), then passes: no user speech, so it was not a backchannel."""
    processor = BackchannelProcessor(make_listener(), transcript_wait_s=0.4)
    frames = [BotStartedSpeakingFrame(), InterruptionFrame(), *audio_frames(silence(0.6)), SleepFrame(0.1)]
    down, _ = run(processor, frames)
    assert names(down) == (["BotStartedSpeakingFrame"] + ["InputAudioRawFrame"] * 20 + ["InterruptionFrame"]
                           + ["InputAudioRawFrame"] * 10)


def test_without_the_bot_speaking_turn_frames_pass_untouched():
    processor = BackchannelProcessor(make_listener())
    frames = [VADUserStartedSpeakingFrame(), *audio_frames(voice(0.16)), VADUserStoppedSpeakingFrame(),
              SleepFrame(0.02), TranscriptionFrame("mhm", "user", "t0"), SleepFrame(0.05)]
    down, _ = run(processor, frames)
    assert names(down) == (["VADUserStartedSpeakingFrame"] + ["InputAudioRawFrame"] * 8
                           + ["VADUserStoppedSpeakingFrame", "TranscriptionFrame"])


# ----------------------------------------------------------------------------- bot backchannels

def test_forced_head_emits_exactly_one_bot_backchannel_out_of_the_llm_context():
    listener = make_listener(ForcedHead(at=5, bc_type="agreement"),
                             Policy(on=0.5, take_turn=None, forms={"agreement": ("yeah",)}))
    processor = BackchannelProcessor(listener)
    said = []

    @processor.event_handler("on_bot_backchannel")
    async def on_bot_backchannel(processor, decision):
        said.append((decision.frame, decision.bc_type, decision.form))

    down, _ = run(processor, audio_frames(voice(1.0)) + [SleepFrame(0.05)])  # 50 x 20 ms -> 12 steps
    bcs = [f for f in down if isinstance(f, BotBackchannelFrame)]
    assert len(bcs) == 1
    assert bcs[0].text == "yeah" and bcs[0].append_to_context is False
    assert bcs[0].text_type == TextType.BACKCHANNEL
    assert said == [(5, "agreement", "yeah")]
    # frame 5 ends at 0.48 s = after the 24th 20 ms audio frame
    assert names(down).index("BotBackchannelFrame") == 24
    assert listener.t == 12


def test_no_bot_backchannel_while_the_bot_speaks():
    listener = make_listener(ForcedHead(at=2), Policy(on=0.5, take_turn=None))
    processor = BackchannelProcessor(listener)
    decisions = []

    @processor.event_handler("on_decision")
    async def on_decision(processor, decision):
        decisions.append(decision.action)

    down, _ = run(processor, [BotStartedSpeakingFrame(), *audio_frames(voice(0.4)), SleepFrame(0.05)])
    assert decisions == ["SILENT", "SILENT", "BACKCHANNEL", "SILENT", "SILENT"]
    assert "BotBackchannelFrame" not in names(down)


# ----------------------------------------------------------------------------- windowing

@pytest.mark.parametrize("sr, chunks, n_samples, steps", [
    (16000, [320], 16000, 12),  # 50 x 20 ms: 1.0 s = 12 frames of 1280 samples, 640 left over
    (24000, [1000, 7, 480, 240], 17270, 8),  # 1727 x 10: 10 samples short of 9 x 1920
])
def test_audio_is_windowed_into_80ms_steps_at_any_rate(sr, chunks, n_samples, steps):
    processor = BackchannelProcessor(make_listener())  # built at 16 kHz: rebuilt at the audio's rate
    frames = []

    @processor.event_handler("on_decision")
    async def on_decision(processor, decision):
        frames.append(decision.frame)

    x = voice(n_samples / sr, sr)
    down, _ = run(processor, audio_frames(x, sr, chunks) + [SleepFrame(0.05)])
    assert len(down) == len(audio_frames(x, sr, chunks))
    assert frames == list(range(steps))
    assert processor.listener.features.sample_rate == sr
    assert len(processor.listener.features.va) == steps
    assert processor.time_s == pytest.approx(n_samples / sr)


def test_pcm_to_float_downmixes_interleaved_channels():
    audio = np.array([1000, -1000, 16384, 0], dtype="<i2").tobytes()
    np.testing.assert_array_equal(pcm_to_float(audio, 2), [0.0, 0.25])
    np.testing.assert_array_equal(pcm_to_float(audio, 1), [1000 / 32768, -1000 / 32768, 0.5, 0.0])


def test_bot_audio_tap_feeds_the_bots_voice_and_words_to_the_listener():
    """User silent at 16 kHz; the bot's played audio at 24 kHz (resampled) says a word for 0.4 s."""
    processor = BackchannelProcessor(make_listener(), max_bot_lag_s=1.0)
    tap = processor.bot_audio_tap()
    frames = [*audio_frames(silence(0.08))]  # the user's clock and rate first
    frames += audio_frames(voice(0.4, 24000), 24000, 480, cls=OutputAudioRawFrame)
    frames += [TTSTextFrame("hello", text_type=TextType.WORD), SleepFrame(0.05), *audio_frames(silence(0.8)),
               SleepFrame(0.05)]
    run(Pipeline([processor, tap]), frames)
    va = np.array(processor.listener.features.va)
    assert len(va) == 11
    assert va[0, 0] == 0.0 and va[1:6, 0].mean() > 0.7  # frames 1-5 hold the bot's 0.4 s of voice
    assert va[7:, 0].max() == 0.0 and va[:, 1].max() == 0.0
    assert [(p, w, round(e, 6)) for p, w, e in processor.listener.features.words] == [("listener", "hello", 0.08)]


# ----------------------------------------------------------------------------- fault isolation

def test_a_raising_head_never_stops_the_pipeline(caplog):
    listener = make_listener(RaisingHead(at=0), Policy(on=0.5))
    processor = BackchannelProcessor(listener)
    decisions = []

    @processor.event_handler("on_decision")
    async def on_decision(processor, decision):
        decisions.append((decision.action, decision.fault))

    sent = [*audio_frames(voice(0.4)), SleepFrame(0.02), TranscriptionFrame("hello there", "user", "t"),
            SleepFrame(0.02), *audio_frames(voice(0.4)), SleepFrame(0.05)]
    down, _ = run(processor, sent)
    assert names(down) == ["InputAudioRawFrame"] * 20 + ["TranscriptionFrame"] + ["InputAudioRawFrame"] * 20
    assert decisions == [("SILENT", "model:RuntimeError")] * 10
    assert listener.faults["model:RuntimeError"] == 10


def test_a_raising_listener_or_handler_never_stops_the_pipeline():
    class BrokenListener(StreamingListener):
        def step(self, *args, **kwargs):
            raise RuntimeError("listener exploded")

    backbone = tiny_backbone()
    processor = BackchannelProcessor(BrokenListener(backbone, TimingHead(16, hidden=8), NEVER))
    down, _ = run(processor, [*audio_frames(voice(0.24)), SleepFrame(0.05)])
    assert names(down) == ["InputAudioRawFrame"] * 12
    assert processor.faults["listen:RuntimeError"] == 3  # frames 0, 1, 2: counted, logged once

    processor = BackchannelProcessor(make_listener())

    @processor.event_handler("on_decision")
    async def on_decision(processor, decision):
        raise ValueError("handler exploded")

    down, _ = run(processor, [*audio_frames(voice(0.24)), SleepFrame(0.05)])
    assert names(down) == ["InputAudioRawFrame"] * 12


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="max_backchannel_s must be > 0 s"):
        BackchannelProcessor(make_listener(), max_backchannel_s=0)
    with pytest.raises(ValueError, match="max_backchannel_words must be >= 1"):
        BackchannelProcessor(make_listener(), max_backchannel_words=0)


class UpstreamTurn(FrameProcessor):
    """Stands in for the user aggregator: answers the bot's start with a user turn, pushed upstream."""

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            await self.push_frame(UserStartedSpeakingFrame(), FrameDirection.UPSTREAM)


def test_no_hold_during_a_user_turn_the_aggregator_started():
    """Once the aggregator has started a user turn (UserStartedSpeakingFrame upstream), the user's
    further speech is that turn going on: nothing is held, even while the bot (its backchannel) speaks."""
    processor = BackchannelProcessor(make_listener())
    frames = [BotStartedSpeakingFrame(), SleepFrame(0.05), InterimTranscriptionFrame("mhm", "user", "t"),
              SleepFrame(0.05)]
    down, up = run(Pipeline([processor, UpstreamTurn()]), frames)
    assert names(down) == ["BotStartedSpeakingFrame", "InterimTranscriptionFrame"]
    assert names(up) == ["UserStartedSpeakingFrame"]
    assert processor.user_turn and processor.bot_speaking


# ----------------------------------------------------------------------------- zero-config

@pytest.fixture
def default_model(monkeypatch):
    """``load_listener()`` (the package's default model) stands in as a tiny listener; calls are counted."""
    import backchannel.plugin.listener as listener_module

    calls = []

    def load_listener(*args, **kwargs):
        calls.append((args, kwargs))
        return make_listener()

    monkeypatch.setattr(listener_module, "load_listener", load_listener)
    return calls


def test_zero_config_processor_loads_the_default_listener_and_passes_the_harness(default_model):
    """``BackchannelProcessor()`` with no arguments: the default listener, and the "mhm" / real-turn cases."""
    context = LLMContext()
    processor = BackchannelProcessor()
    assert default_model == [((), {})] and processor.user_listener is None  # this head has no onset output
    down, up = run(Pipeline([processor, user_aggregator(context)]), mhm_while_bot_speaks())
    assert [f.text for f in down if isinstance(f, UserBackchannelFrame)] == ["Mhm."]
    assert "InterruptionFrame" not in names(down) and context.get_messages() == []
    processor = BackchannelProcessor()
    down, _ = run(Pipeline([processor, user_aggregator(context)]), [
        BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), *audio_frames(voice(0.2)), SleepFrame(0.1),
        InterimTranscriptionFrame("turn left", "user", "t"), SleepFrame(0.1), *audio_frames(voice(0.2)),
        SleepFrame(0.2)])
    assert "InterruptionFrame" in names(down)


# ----------------------------------------------------------------------------- model-based user backchannels

class OnsetHead(ForcedHead):
    """A stub head with a user-onset output: p(backchannel) = ``probs.get(call, default)`` at model call
    ``call`` (its state counts the calls); action SILENT."""

    def __init__(self, default: float, probs: dict[int, float] | None = None):
        super().__init__(at=-1)
        self.default, self.probs = default, probs or {}
        self.onset = True  # has an onset output (plugin.pipecat.has_onset_output)

    def step(self, state, x, inputs=None):
        out, _ = super().step(state, x, inputs)
        p = torch.tensor([self.probs.get(state, self.default)] * x.shape[0])
        return HeadOutputs(out.action, out.bc_type, torch.logit(p)), state + 1


class ScriptedVA(StreamingFeatures):
    """Audio-path features whose listener voice activity is ``script[t]`` (0 past its end): hand-made frames."""

    def __init__(self, sample_rate=SR, script=(), **kwargs):
        super().__init__(sample_rate, **kwargs)
        self.script = list(script)

    def with_rate(self, sample_rate):
        return ScriptedVA(sample_rate, self.script, prosody=self.prosody)

    def _from_audio(self, state, listener_pcm, speaker_pcm):
        from dataclasses import replace

        out = super()._from_audio(state, listener_pcm, speaker_pcm)
        va = self.script[state.t] if state.t < len(self.script) else 0.0
        return replace(out, va_listener=torch.tensor([float(va)]))


def user_side(head, script, **kwargs):
    """A processor whose reversed-role listener is ``head`` on the scripted user voice activity, plus the
    verdicts it reports (``on_user_onset``)."""
    backbone = tiny_backbone()
    user_listener = StreamingListener(backbone, head, NEVER, features=ScriptedVA(SR, script, prosody=False),
                                      deadline_s=60.0)
    processor = BackchannelProcessor(make_listener(), user_listener=user_listener, **kwargs)
    verdicts = []

    @processor.event_handler("on_user_onset")
    async def on_user_onset(processor, verdict):
        verdicts.append(verdict)

    return processor, verdicts


def test_the_decision_rule():
    assert user_onset_verdict(0.5, 0.5) == "backchannel" and user_onset_verdict(0.49, 0.5) == "barge-in"
    assert user_onset_verdict(1.0, 1.0) == "backchannel" and user_onset_verdict(0.0, 0.0) == "backchannel"
    assert user_onset_verdict(None, 0.5) is None  # no onset output: the words decide
    with pytest.raises(ValueError, match="user_backchannel_threshold must lie in"):
        BackchannelProcessor(make_listener(), user_backchannel_threshold=1.5)
    with pytest.raises(ValueError, match="user_decision_delay_s must be > 0"):
        BackchannelProcessor(make_listener(), user_decision_delay_s=0.0)


def test_the_reversed_listener_shares_a_model_with_an_onset_output():
    head = OnsetHead(0.5)
    processor = BackchannelProcessor(make_listener(head))
    ul = processor.user_listener
    assert ul is not None and ul is not processor.listener and ul.head is head
    assert ul.backbone is processor.listener.backbone and ul.features is not processor.listener.features
    assert BackchannelProcessor(make_listener(head), user_listener=False).user_listener is None
    assert BackchannelProcessor(make_listener()).user_listener is None  # TimingHead(onset=False)


def bot_talks_user_speaks(voiced_s: float, vad_at: int, n_chunks: int, words=(), vad_stop_at=None) -> list:
    """The bot speaks; user audio in 20 ms chunks, voiced from 0.16 s for ``voiced_s`` s; pipecat's VAD start
    after chunk ``vad_at`` (and stop after ``vad_stop_at``); ``words``: (after chunk, frame) pairs."""
    x = np.concatenate([silence(0.16), voice(voiced_s), silence(n_chunks * 0.02)])[: n_chunks * 320]
    chunks = audio_frames(x)
    extra = {vad_at: [VADUserStartedSpeakingFrame()]}
    if vad_stop_at is not None:
        extra[vad_stop_at] = [VADUserStoppedSpeakingFrame()]
    for at, frame in words:
        extra.setdefault(at, []).extend([SleepFrame(0.05), frame, SleepFrame(0.05)])
    out = [BotStartedSpeakingFrame(), SleepFrame(0.02)]
    for i, c in enumerate(chunks, 1):
        out += [c] + extra.get(i, [])
    return out + [SleepFrame(0.3)]


@pytest.mark.parametrize("delay, released_after", [(0.24, 20), (0.08, 18)])
def test_a_model_barge_in_interrupts_at_the_decision_delay(delay, released_after):
    """User VA from frame 2 (onset 0.16 s); the head says p(backchannel) 0.9 except 0.1 at the decision frame
    (onset + 0.24 s: frame 4, ending 0.40 s = chunk 20). pipecat's VAD start comes after chunk 18 (0.36 s).
    At 240 ms the hold is released at the decision, before any word; at 80 ms the verdict (frame 2) came
    first and the hold is released as soon as it opens."""
    frame = {0.24: 4, 0.08: 2}[delay]
    processor, verdicts = user_side(OnsetHead(0.9, {frame: 0.1}), [0, 0] + [1] * 20, user_decision_delay_s=delay)
    down, up = run(Pipeline([processor, user_aggregator(LLMContext()), processor.bot_audio_tap()]),
                   bot_talks_user_speaks(1.2, 18, 50))
    end = (frame + 1) * 0.08
    assert [(v.onset_s, round(v.decided_s, 6), round(v.p_backchannel, 6), v.verdict, v.bot_speaking)
            for v in verdicts] == [(pytest.approx(0.16), round(end, 6), 0.1, "barge-in", True)]
    assert "InterruptionFrame" in names(down) and "InterruptionFrame" in names(up)
    i = names(down).index("VADUserStartedSpeakingFrame")
    assert names(down)[:i].count("InputAudioRawFrame") == released_after
    assert processor.last_release == "model: barge-in (p(backchannel)=0.10 < 0.5)"


def test_a_model_backchannel_is_confirmed_by_the_words():
    """p(backchannel) 0.9: the "mhm" keeps the bot talking and the transcription confirms it."""
    processor, verdicts = user_side(OnsetHead(0.9), [0, 0, 1, 1, 1, 1])
    frames = bot_talks_user_speaks(0.32, 18, 60, words=[(40, TranscriptionFrame("Mhm.", "user", "t0"))],
                                   vad_stop_at=34)
    context = LLMContext()
    down, up = run(Pipeline([processor, user_aggregator(context), processor.bot_audio_tap()]), frames)
    assert [v.verdict for v in verdicts] == ["backchannel"] and verdicts[0].decided_s == pytest.approx(0.40)
    assert [f.text for f in down if isinstance(f, UserBackchannelFrame)] == ["Mhm."]
    assert "InterruptionFrame" not in names(down) and "InterruptionFrame" not in names(up)
    assert context.get_messages() == [] and processor.user_verdict is None  # used up by the hold


def test_words_that_are_not_a_backchannel_overrule_a_model_backchannel():
    processor, verdicts = user_side(OnsetHead(0.9), [0, 0] + [1] * 12)
    frames = bot_talks_user_speaks(0.9, 18, 50, words=[(30, InterimTranscriptionFrame("turn left", "user", "t"))])
    down, _ = run(Pipeline([processor, user_aggregator(LLMContext()), processor.bot_audio_tap()]), frames)
    assert [v.verdict for v in verdicts] == ["backchannel"]
    assert "InterruptionFrame" in names(down) and processor.last_release == "words that are not a backchannel"
    i = names(down).index("VADUserStartedSpeakingFrame")
    assert names(down)[:i].count("InputAudioRawFrame") == 30  # released by the words, not at 0.40 s


def test_without_the_bot_audio_tap_the_words_decide():
    """No tap: the floor stream would be silent, so the reversed listener does not run; "mhm" by the words."""
    processor, verdicts = user_side(OnsetHead(0.0), [0, 0, 1, 1, 1, 1])
    down, _ = run(Pipeline([processor, user_aggregator(LLMContext())]), mhm_while_bot_speaks())
    assert verdicts == [] and processor.user_listener.t == 0
    assert [f.text for f in down if isinstance(f, UserBackchannelFrame)] == ["Mhm."]


def test_onsets_need_two_quiet_frames_before_them():
    """Hand-made user VA: voiced frames 2-3, a one-frame gap (4), voiced 5-6, quiet 7-8, voiced from 9. Onsets
    at frames 2 and 9 (0.16 and 0.72 s); the gap at frame 4 does not start one. Each is decided at onset +
    0.24 s (frames 4 and 11) from that frame's p; no verdict is reported once the bot has stopped."""
    from pipecat.frames.frames import BotStoppedSpeakingFrame

    script = [0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1]
    processor, verdicts = user_side(OnsetHead(0.3, {4: 0.7, 11: 0.2}), script, user_backchannels=False)
    frames = [BotStartedSpeakingFrame(), SleepFrame(0.02), *audio_frames(silence(0.96)), SleepFrame(0.05),
              BotStoppedSpeakingFrame(), SleepFrame(0.05), *audio_frames(silence(0.64)), SleepFrame(0.1)]
    run(Pipeline([processor, processor.bot_audio_tap()]), frames)
    assert [(round(v.onset_s, 6), round(v.decided_s, 6), round(v.p_backchannel, 6), v.verdict) for v in verdicts] \
        == [(0.16, 0.4, 0.7, "backchannel"), (0.72, 0.96, 0.2, "barge-in")]  # frame 16's onset: bot silent
    assert processor.user_listener.t == 20


def _example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "pipecat_agent.py"
    spec = importlib.util.spec_from_file_location("pipecat_agent_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


class ScriptedHead(OnsetHead):
    """BACKCHANNEL certain at the model calls in ``fire``; onset p(backchannel) per call range."""

    def __init__(self, fire, onset_ranges):
        super().__init__(0.5)
        self.fire, self.ranges = set(fire), onset_ranges

    def step(self, state, x, inputs=None):
        out, nxt = super().step(state, x, inputs)
        action = torch.full((x.shape[0], 3), -30.0)
        action[:, 1 if state in self.fire else 0] = 30.0
        p = next((p for (a, b), p in self.ranges.items() if a <= state <= b), 0.5)
        return HeadOutputs(action, out.bc_type, torch.logit(torch.tensor([p] * x.shape[0]))), nxt


def test_example_dry_run_shows_each_behaviour_with_the_default_model(monkeypatch, capsys):
    """examples/pipecat_agent.py --dry-run with the default model (a stand-in whose decisions are known): a
    backchannel decided while the bot speaks (frame 9) is "not said: bot speaking", one in the story's pause
    (frame 100, 8.0-8.08 s) reaches the end of the pipeline; the model keeps the bot talking over the "mhm"
    (p 0.9 around its onset, 1.5 s) and lets the barge-in (p 0.05 around 2.7 s) interrupt before its words."""
    import backchannel.plugin.listener as listener_module

    example = _example()
    head = ScriptedHead({9, 100}, {(15, 30): 0.9, (31, 45): 0.05})
    monkeypatch.setattr(listener_module, "load_listener", lambda *a, **k: StreamingListener(
        tiny_backbone(), head, Policy(on=0.5, take_turn=None), features=StreamingFeatures(SR, prosody=False),
        deadline_s=60.0))
    seen = asyncio.run(example.dry_run())
    out = capsys.readouterr().out
    assert seen["bot_backchannels_said"] == 1 and seen["frames"]["BotBackchannelFrame"] == 1
    assert "bot backchannels said: 1 (BotBackchannelFrame at the end of the pipeline: 1)" in out
    assert "  8.08 s: bot says 'right' (append_to_context=False)" in out
    assert "bot backchannels decided but not said: 1\n  0.80 s: not said: bot speaking" in out
    assert seen["user_backchannels"] == 1 and seen["frames"]["UserBackchannelFrame"] == 1
    assert "user backchannel 'Mhm.': no interruption" in out
    assert seen["verdicts"] == ["backchannel", "barge-in"]
    assert "model verdicts on user onsets while the bot spoke: 2\n  1.76 s: the onset at 1.52 s: backchannel" in out
    assert seen["barge_ins"] == 1 and "released: model: barge-in (p(backchannel)=0.05 < 0.5)" in out
    assert "InterruptionFrame at the end of the pipeline while the bot spoke: 1" in out
    assert "user turns in the LLM context: ['wait, turn left at the lake'" in out


def test_example_dry_run_with_random_weights(capsys):
    """--random-weights (seed 4): the untrained head fires once while the bot speaks (not said) and once in
    the story (said); the words tell the "mhm" from the barge-in; the printed summary agrees with the frames."""
    example = _example()
    seen = asyncio.run(example.dry_run(random_weights=True))
    out = capsys.readouterr().out
    assert "model-based user side: off (no onset output: the words decide)" in out
    assert seen["bot_backchannels_said"] == seen["frames"]["BotBackchannelFrame"] == 1
    assert seen["bot_backchannels_unsaid"] == 1 and "not said: bot speaking" in out
    assert seen["user_backchannels"] == seen["frames"]["UserBackchannelFrame"] == 1 and seen["barge_ins"] == 1
    assert "released: words that are not a backchannel" in out and seen["verdicts"] == []
    n_turns = len(example.user_speech(12.0)) - 1  # every stretch but the "mhm" is a user turn
    assert seen["frames"]["InterruptionFrame"] == n_turns
    assert f"user turns while the bot listened: {n_turns - 1}" in out
