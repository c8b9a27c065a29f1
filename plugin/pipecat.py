"""pipecat adapter: the streaming listener inside a pipecat (>= 1.14) voice-agent pipeline.

The bot is the *listener* whose backchannels we produce; the user is the *speaker*.
:class:`BackchannelProcessor` sits between the STT service and the user context aggregator::

    transport.input() -> [VADProcessor] -> stt -> BackchannelProcessor -> user_aggregator -> llm -> tts
        -> transport.output() -> processor.bot_audio_tap() -> assistant_aggregator

It does three things:

1. **Listens.** The user's audio (``InputAudioRawFrame``, any sample rate, mono or interleaved
   multi-channel int16) is cut into 80 ms frames and each frame runs one
   :meth:`StreamingListener.step`. The clock is the user's audio: ``t`` s = user samples received /
   sample rate. The bot's audio as it is played (``OutputAudioRawFrame``, pushed downstream by the
   output transport after it is written) and its spoken words (``TTSTextFrame``) come from
   :meth:`BackchannelProcessor.bot_audio_tap`, a pass-through placed after ``transport.output()``;
   the bot's audio is resampled to the user's rate and queued (at most ``max_bot_lag_s`` s; a frame
   with too little queued bot audio is padded with silence). Without a tap the bot's streams are
   silent and masked. The user's words come from ``InterimTranscriptionFrame`` and
   ``TranscriptionFrame``: a word is visible at the clock time its frame arrives; of an interim
   transcription all words but the last (still being recognised) count, and the final transcription
   gives the rest, so each word enters the text stream once.
2. **Backchannels.** A ``BACKCHANNEL`` decision while the bot is not speaking pushes pipecat's
   ``BotBackchannelFrame(text=form)`` downstream: the TTS speaks it, it is not interruptible, its
   text frames have ``TextType.BACKCHANNEL`` and ``append_to_context=False`` keeps it out of the LLM
   context. ``TAKE_TURN`` decisions are reported (``on_decision``) but turn ends stay with the
   aggregator's stop strategies.
3. **Hears the user's backchannels.** In pipecat 1.x the user aggregator's turn-start strategies
   start a user turn, and broadcast the ``InterruptionFrame``, on ``VADUserStartedSpeakingFrame``,
   ``UserStartedSpeakingFrame``, ``ProposedUserStartedSpeakingFrame`` or a transcription. While the
   bot speaks and no user turn is active, this processor *holds* those frames (and the matching stop
   frames, ``UserSpeakingFrame`` and any downstream ``InterruptionFrame``) instead of forwarding them:

   - as soon as the transcription holds a word that makes it not a lexical backchannel
     (:func:`backchannel.lexicon.is_lexical_backchannel`, at most ``max_backchannel_words``), or the
     user's speech has lasted ``max_backchannel_s`` s, the held frames are released in order and
     the turn starts (and interrupts the bot) as usual, one transcription later than without us;
   - when the final transcription is a lexical backchannel and the user has stopped (VAD), the held
     frames are dropped and pipecat's ``UserBackchannelFrame`` is pushed instead: no interruption,
     no user turn, nothing in the LLM context (the aggregator fires ``on_user_backchannel``);
   - ``transcript_wait_s`` s (user-audio clock) after the speech stopped without a final
     transcription: an interim backchannel counts as one; speech without words (a cough, an "mm" the
     STT skipped) is dropped; a hold with neither speech nor words (an ``InterruptionFrame`` alone)
     is released.

   **Model-based** (before the words): a second listener in the reversed role (``user_listener``: the
   user is its listener, the bot the floor party; by default the bot listener's own model when its head
   has a user-onset output, ``TimingHead(onset=True)``) listens to the user's audio as its listener
   stream, the bot's played audio (from the tap) as the floor stream, the user's words and the bot's
   words. Its head's onset output (``StreamingListener.last_onset``) is p(this user speech is a
   backchannel). A user speech onset is the start of a frame whose webrtcvad activity is >= 0.5 after at
   least ``ONSET_GAP_FRAMES`` frames below it; the verdict reads the frame whose end is the first at or
   after ``onset + user_decision_delay_s`` (``evaluation.user_onsets.decision_frame``, default 240 ms), by
   :func:`user_onset_verdict` with ``user_backchannel_threshold``. A ``"barge-in"`` verdict releases the
   hold at once; a ``"backchannel"`` verdict keeps it, and the words then confirm it (the rules below:
   words that are not a backchannel, or speech longer than ``max_backchannel_s``, still release). Without
   an onset output, or without the bot-audio tap (the floor stream would be silent), the words alone
   decide (the word list is the fallback). Verdicts while the bot speaks are reported
   (``on_user_onset``).

   Audio always passes: the VAD must therefore run *upstream* of this processor (a ``VADProcessor``
   or the STT's own VAD), not inside the user aggregator (``LLMUserAggregatorParams.vad_analyzer``),
   which would start the turn from the audio before we see a word. A hold can only resolve while
   user audio arrives (every transport streams it continuously).

Fault isolation: model faults are handled by :class:`StreamingListener` (that frame is SILENT); any
other exception while listening is counted in ``faults``, logged once per kind, and the frame still
passes, so the pipeline never stops on us. The model runs inline in the event loop (about 1-2 ms per
80 ms frame on one CPU thread; twice that with the model-based user side).

Zero-config: ``BackchannelProcessor()`` loads the package's default listener (``load_listener()``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

try:
    import soxr
    from pipecat.frames.frames import (
        BotBackchannelFrame,
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        CancelFrame,
        EagerTranscriptionFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        InterimTranscriptionFrame,
        InterruptionFrame,
        OutputAudioRawFrame,
        ProposedUserStartedSpeakingFrame,
        ProposedUserStoppedSpeakingFrame,
        StartFrame,
        TranscriptionFrame,
        TTSTextFrame,
        UserBackchannelFrame,
        UserSpeakingFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.utils.time import time_now_iso8601
except ImportError as err:  # pragma: no cover - depends on the optional extra
    raise ImportError("backchannel.plugin.pipecat needs pipecat-ai >= 1.14: "
                      "pip install 'backchannel[pipecat]'") from err

from backchannel.evaluation.user_onsets import decision_frame
from backchannel.frames import FRAME_S
from backchannel.lexicon import is_lexical_backchannel
from backchannel.policy import Decision

from . import listener as _listener_module
from .faults import Faults
from .listener import StreamingListener

log = logging.getLogger(__name__)

#: Frames that start a user turn in pipecat 1.x (or announce one): held while the bot speaks.
TURN_START_FRAMES = (VADUserStartedSpeakingFrame, UserStartedSpeakingFrame, ProposedUserStartedSpeakingFrame,
                     InterimTranscriptionFrame, TranscriptionFrame, EagerTranscriptionFrame, InterruptionFrame)
#: Frames of the same user speech that are held with them once a hold is open.
TURN_FRAMES = TURN_START_FRAMES + (VADUserStoppedSpeakingFrame, UserStoppedSpeakingFrame,
                                   ProposedUserStoppedSpeakingFrame, UserSpeakingFrame)


#: A user speech onset needs at least this many frames (80 ms each) of webrtcvad activity < 0.5 before it.
ONSET_GAP_FRAMES = 2
VERDICTS = ("backchannel", "barge-in")


def user_onset_verdict(p_backchannel: float | None, threshold: float) -> str | None:
    """The model's verdict on a user speech onset while the bot speaks: ``"backchannel"`` (keep talking)
    when ``p_backchannel >= threshold``, ``"barge-in"`` below it, None without an onset output (the words
    decide)."""
    if p_backchannel is None:
        return None
    return VERDICTS[0] if p_backchannel >= threshold else VERDICTS[1]


def has_onset_output(head) -> bool:
    """Whether a head has a user-onset output (``TimingHead(onset=True)``: its ``onset`` layer is set)."""
    return getattr(head, "onset", None) is not None


@dataclass(frozen=True)
class UserOnsetVerdict:
    """The model-based verdict on one user speech onset: ``onset_s`` (start of its first voiced frame) and
    ``decided_s`` (end of the decision frame), seconds on the user-audio clock; ``p_backchannel`` of the
    head's onset output; ``verdict`` (:func:`user_onset_verdict`); ``bot_speaking`` at the decision."""

    onset_s: float
    decided_s: float
    p_backchannel: float | None
    verdict: str | None
    bot_speaking: bool


class _LastVoiceActivity:
    """A listener's ``StreamingFeatures`` that also keeps the listener voice activity of the last frame it
    made (``va``, fraction voiced; None when that frame failed)."""

    def __init__(self, features):
        self.inner, self.va = features, None

    def step(self, state, frame=None, **kwargs):
        self.va = None
        out = self.inner.step(state, frame, **kwargs)
        self.va = float(out["va_listener"].reshape(-1)[0])
        return out

    def with_rate(self, sample_rate: int) -> _LastVoiceActivity:
        return _LastVoiceActivity(self.inner.with_rate(sample_rate))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def pcm_to_float(audio: bytes, num_channels: int = 1) -> np.ndarray:
    """Little-endian int16 PCM (interleaved when ``num_channels > 1``) -> mono float64 in [-1, 1)."""
    x = np.frombuffer(audio, dtype="<i2").astype(np.float64) / 32768.0
    if num_channels > 1:
        x = x[: len(x) // num_channels * num_channels].reshape(-1, num_channels).mean(axis=1)
    return x


@dataclass
class _Hold:
    """User speech held back while the bot speaks, until it is known to be a backchannel or a turn.
    Times in seconds on the user-audio clock."""

    started_s: float
    frames: list = field(default_factory=list)  # (frame, direction) in arrival order
    vad_open: bool = False
    vad_started_s: float | None = None
    quiet_since_s: float | None = None  # when the speech stopped (or the hold started without VAD)
    saw_speech: bool = False
    interim: str = ""
    final: str = ""
    user_id: str = ""
    timestamp: str = ""

    @property
    def text(self) -> str:
        return self.final or self.interim


class BackchannelProcessor(FrameProcessor):
    """pipecat ``FrameProcessor`` running a :class:`StreamingListener` for the bot (see the module docstring).

    ``listener``: the streaming listener (default: the package's default model, ``load_listener()``; its
    features are rebuilt at the user's sample rate on the first audio frame); ``user_listener``: the
    reversed-role listener of the model-based user side (None: one sharing ``listener``'s model when its
    head has an onset output; False: none, the word list decides); ``user_decision_delay_s``: seconds
    after a user onset at which the model decides; ``user_backchannel_threshold``: p(backchannel) at or
    above which the user's speech is a backchannel (:func:`user_onset_verdict`); ``bot_backchannels``: speak the listener's backchannels; ``user_backchannels``:
    turn the user's backchannels into ``UserBackchannelFrame`` instead of an interruption;
    ``max_backchannel_s``: seconds of held user speech after which it is a turn, not a backchannel;
    ``max_backchannel_words``: longest user backchannel in words; ``transcript_wait_s``: seconds to
    wait for a final transcription after the user stopped; ``max_bot_lag_s``: most bot audio queued
    ahead of the user's clock (seconds).

    Events (``@processor.event_handler(name)``, called in order): ``on_decision(processor, decision)``
    every 80 ms frame; ``on_bot_backchannel(processor, decision)`` when a backchannel is pushed;
    ``on_user_backchannel(processor, frame)`` when a user backchannel replaces a turn;
    ``on_user_onset(processor, verdict)`` with a :class:`UserOnsetVerdict` when the model decides on a user
    onset while the bot speaks.
    """

    def __init__(self, listener: StreamingListener | None = None, *,
                 user_listener: StreamingListener | None | bool = None, user_decision_delay_s: float = 0.24,
                 user_backchannel_threshold: float = 0.5, bot_backchannels: bool = True,
                 user_backchannels: bool = True, max_backchannel_s: float = 1.0, max_backchannel_words: int = 3,
                 transcript_wait_s: float = 1.5, max_bot_lag_s: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("max_backchannel_s", max_backchannel_s), ("transcript_wait_s", transcript_wait_s),
                            ("max_bot_lag_s", max_bot_lag_s), ("user_decision_delay_s", user_decision_delay_s)):
            if not value > 0:
                raise ValueError(f"BackchannelProcessor: {name} must be > 0 s, got {value}")
        if max_backchannel_words < 1:
            raise ValueError(f"BackchannelProcessor: max_backchannel_words must be >= 1, got {max_backchannel_words}")
        if not 0.0 <= user_backchannel_threshold <= 1.0:
            raise ValueError("BackchannelProcessor: user_backchannel_threshold must lie in [0, 1], got "
                             f"{user_backchannel_threshold}")
        if listener is None:
            listener = _listener_module.load_listener()  # the package's default model
        if user_listener is None and has_onset_output(listener.head):
            user_listener = StreamingListener(listener.backbone, listener.head, listener.policy,
                                              features=listener.features.with_rate(listener.features.sample_rate),
                                              deadline_s=listener.deadline_s)
        self.listener = listener
        self.user_listener = user_listener or None
        if self.user_listener is not None and not isinstance(self.user_listener.features, _LastVoiceActivity):
            self.user_listener.features = _LastVoiceActivity(self.user_listener.features)
        self.user_decision_delay_s, self.user_backchannel_threshold = user_decision_delay_s, user_backchannel_threshold
        self.bot_backchannels, self.user_backchannels = bot_backchannels, user_backchannels
        self.max_backchannel_s, self.max_backchannel_words = max_backchannel_s, max_backchannel_words
        self.transcript_wait_s, self.max_bot_lag_s = transcript_wait_s, max_bot_lag_s
        self._faults = Faults("BackchannelProcessor", log, consequence="the frame passes unchanged")
        self._tapped = False
        for event in ("on_decision", "on_bot_backchannel", "on_user_backchannel", "on_user_onset"):
            self._register_event_handler(event, sync=True)
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget the audio buffers, the clock, pending words, holds and the listener's state."""
        self.sample_rate: int | None = None
        self._user = np.zeros(0)
        self._bot = np.zeros(0)
        self._bot_resamplers: dict[int, soxr.ResampleStream] = {}
        self._samples = 0  # user samples received at sample_rate
        self._user_words: list[tuple[str, float]] = []
        self._bot_words: list[tuple[str, float]] = []
        self._given = 0  # words of the current user utterance already in the text stream
        self.bot_speaking = False
        self.user_turn = False
        self._hold: _Hold | None = None
        self._released = False  # a hold was released: no new hold until the bot speaks again or VAD stops
        self.listener.reset()
        self._quiet_frames = ONSET_GAP_FRAMES  # user frames with activity < 0.5 in a row (model side)
        self._onset_s: float | None = None  # the latest user onset awaiting its verdict
        self.user_verdict: UserOnsetVerdict | None = None  # the latest verdict, until a hold uses it up
        self.last_release: str | None = None  # why the last hold was released (a user turn let through)
        self._new_verdicts: list[UserOnsetVerdict] = []
        if self.user_listener is not None:
            self.user_listener.reset()

    @property
    def time_s(self) -> float:
        """The user-audio clock: seconds of user audio received."""
        return self._samples / self.sample_rate if self.sample_rate else 0.0

    @property
    def holding(self) -> bool:
        """True while user speech is held back (not yet known to be a backchannel or a turn)."""
        return self._hold is not None

    @property
    def quiet(self) -> bool:
        """The listener's quiet switch (no backchannels, no take-turns, e.g. while the user dictates)."""
        return self.listener.quiet

    @quiet.setter
    def quiet(self, value: bool) -> None:
        self.listener.quiet = bool(value)

    def bot_audio_tap(self) -> BotAudioTap:
        """A pass-through processor to place after ``transport.output()``: it feeds the bot's played
        audio and spoken words to this processor."""
        self._tapped = True
        return BotAudioTap(self)

    @property
    def faults(self):
        """Faults by kind (a ``Counter``): of this processor; the listener's own are ``listener.faults``."""
        return self._faults.counts

    def _fault(self, kind: str, err: BaseException) -> None:
        self._faults.record(kind, err=err)

    # ------------------------------------------------------------------ audio -> listener steps

    def _set_rate(self, sample_rate: int) -> None:
        for listener in (self.listener, self.user_listener):
            if listener is not None and listener.features.sample_rate != sample_rate:
                listener.features = listener.features.with_rate(sample_rate)  # same class and settings, new rate
        if self.sample_rate is not None:  # a rate change mid-stream starts a new session
            log.warning("BackchannelProcessor: user audio changed from %d Hz to %d Hz; listener reset",
                        self.sample_rate, sample_rate)
            self.reset()
        self.listener.reset()
        if self.user_listener is not None:
            self.user_listener.reset()
        self.sample_rate = sample_rate

    def add_bot_audio(self, frame: OutputAudioRawFrame) -> None:
        """Queue the bot's played audio (resampled to the user's rate; dropped before any user audio)."""
        if self.sample_rate is None or not frame.audio:
            return
        x = pcm_to_float(frame.audio, frame.num_channels)
        if frame.sample_rate != self.sample_rate:
            rs = self._bot_resamplers.get(frame.sample_rate)
            if rs is None:
                rs = self._bot_resamplers[frame.sample_rate] = soxr.ResampleStream(
                    frame.sample_rate, self.sample_rate, 1, dtype="float64")
            x = rs.resample_chunk(x)
        self._bot = np.concatenate([self._bot, x])[-round(self.max_bot_lag_s * self.sample_rate):]

    def add_bot_words(self, text: str) -> None:
        """Queue words the bot just said (visible now on the user-audio clock)."""
        self._bot_words += [(w, self.time_s) for w in text.split()]

    async def _add_user_audio(self, frame: InputAudioRawFrame) -> list[Decision]:
        if frame.sample_rate != self.sample_rate:
            self._set_rate(frame.sample_rate)
        self._user = np.concatenate([self._user, pcm_to_float(frame.audio, frame.num_channels)])
        self._samples += frame.num_frames
        n = round(FRAME_S * self.sample_rate)
        decisions = []
        while len(self._user) >= n:
            user, self._user = self._user[:n], self._user[n:]
            bot = None
            if self._tapped:
                bot, self._bot = self._bot[:n], self._bot[n:]
                if len(bot) < n:
                    bot = np.concatenate([bot, np.zeros(n - len(bot))])
            speaker_words, self._user_words = self._user_words, []
            listener_words, self._bot_words = self._bot_words, []
            decisions.append(self.listener.step(listener_pcm=bot, speaker_pcm=user, listener_words=listener_words,
                                                speaker_words=speaker_words))
            if self.user_listener is not None and bot is not None:  # roles reversed: the user listens
                self.user_listener.step(listener_pcm=user, speaker_pcm=bot, listener_words=speaker_words,
                                        speaker_words=listener_words)
                self._track_user_onset()
        return decisions

    def _track_user_onset(self) -> None:
        """After a reversed-role step: find user speech onsets and decide on them (module docstring)."""
        ul = self.user_listener
        f = ul.t - 1  # the frame just made
        va = ul.features.va
        if va is not None and va >= 0.5:
            if self._quiet_frames >= ONSET_GAP_FRAMES:
                self._onset_s = f * FRAME_S
            self._quiet_frames = 0
        else:
            self._quiet_frames += 1
        if self._onset_s is not None and f >= decision_frame(self._onset_s, self.user_decision_delay_s):
            p = ul.last_onset
            v = UserOnsetVerdict(self._onset_s, (f + 1) * FRAME_S, p,
                                 user_onset_verdict(p, self.user_backchannel_threshold), self.bot_speaking)
            self._onset_s = None
            if v.verdict is not None and v.bot_speaking:
                self.user_verdict = v
                self._new_verdicts.append(v)

    def _add_transcription(self, frame) -> None:
        """Feed the user's words to the text stream, each once (see the module docstring)."""
        words = frame.text.split()
        final = isinstance(frame, TranscriptionFrame)
        stable = words if final else words[:-1]
        self._user_words += [(w, self.time_s) for w in stable[self._given:]]
        self._given = 0 if final else max(self._given, len(stable))

    def unsaid_reason(self, decision: Decision) -> str | None:
        """Why a ``BACKCHANNEL`` decision is not spoken now: ``"bot backchannels off"``, ``"bot speaking"`` or
        ``"user speech held"``; None when it is spoken (or is no backchannel)."""
        if decision.action != "BACKCHANNEL":
            return None
        if not self.bot_backchannels:
            return "bot backchannels off"
        if self.bot_speaking:
            return "bot speaking"
        if self.holding:
            return "user speech held"
        return None

    async def _act(self, decision: Decision) -> None:
        await self._call_event_handler("on_decision", decision)
        if decision.action == "BACKCHANNEL" and self.unsaid_reason(decision) is None:
            await self.push_frame(BotBackchannelFrame(text=decision.form))
            await self._call_event_handler("on_bot_backchannel", decision)

    # ------------------------------------------------------------------ user backchannels

    def _should_hold(self, frame: Frame, direction: FrameDirection) -> bool:
        if direction != FrameDirection.DOWNSTREAM or not self.user_backchannels:
            return False
        if self._hold is not None:
            return isinstance(frame, TURN_FRAMES)
        return (isinstance(frame, TURN_START_FRAMES) and self.bot_speaking and not self.user_turn
                and not self._released)

    def _update_hold(self, frame: Frame) -> None:
        h, now = self._hold, self.time_s
        if isinstance(frame, VADUserStartedSpeakingFrame):
            h.vad_open, h.saw_speech, h.quiet_since_s = True, True, None
            h.vad_started_s = now if h.vad_started_s is None else h.vad_started_s
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            h.vad_open, h.quiet_since_s = False, now
        elif isinstance(frame, (InterimTranscriptionFrame, EagerTranscriptionFrame)):
            h.interim, h.saw_speech = frame.text.strip(), True
        elif isinstance(frame, TranscriptionFrame):
            h.final = f"{h.final} {frame.text}".strip()
            h.saw_speech = True
        if isinstance(frame, (InterimTranscriptionFrame, TranscriptionFrame, EagerTranscriptionFrame)):
            h.user_id, h.timestamp = frame.user_id, frame.timestamp

    def _is_backchannel(self, text: str) -> bool:
        return is_lexical_backchannel(text.split(), max_words=self.max_backchannel_words)

    async def _resolve(self) -> None:
        """Release, drop or keep the hold after a held frame or a clock tick."""
        h, now = self._hold, self.time_s
        if h is None:
            return
        v = self.user_verdict
        if v is not None and v.onset_s >= h.started_s - self.max_backchannel_s - 1e-9:
            if v.verdict == "barge-in":
                return await self._release(f"model: barge-in (p(backchannel)={v.p_backchannel:.2f} "
                                           f"< {self.user_backchannel_threshold})")
        if h.text and not self._is_backchannel(h.text):
            return await self._release("words that are not a backchannel")
        if h.vad_open and now - h.vad_started_s >= self.max_backchannel_s - 1e-9:
            return await self._release(f"speech longer than {self.max_backchannel_s} s")
        if h.vad_open:
            return
        if h.final:  # a lexical backchannel, and the user has stopped
            return await self._user_backchannel(h.final)
        quiet_since = h.quiet_since_s if h.quiet_since_s is not None else h.started_s
        if now - quiet_since < self.transcript_wait_s - 1e-9:
            return
        if h.interim:
            return await self._user_backchannel(h.interim)
        if h.saw_speech:
            log.debug("BackchannelProcessor: user speech without words while the bot spoke: dropped")
            self._hold, self.user_verdict = None, None
            return
        await self._release("no user speech followed")

    async def _release(self, why: str) -> None:
        log.debug("BackchannelProcessor: user turn (%s): releasing %d held frames", why, len(self._hold.frames))
        frames, self._hold, self._released = self._hold.frames, None, True
        self.user_verdict, self.last_release = None, why
        for frame, direction in frames:
            await self.push_frame(frame, direction)

    async def _user_backchannel(self, text: str) -> None:
        h, self._hold, self.user_verdict = self._hold, None, None
        frame = UserBackchannelFrame(text=text, user_id=h.user_id, timestamp=h.timestamp or time_now_iso8601())
        await self.push_frame(frame)
        await self._call_event_handler("on_user_backchannel", frame)

    # ------------------------------------------------------------------ pipecat entry point

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Listen to every frame; forward all of them except held user-turn frames (module docstring)."""
        if not (isinstance(frame, InterruptionFrame) and self._should_hold(frame, direction)):
            # (a held interruption must not flush our own queue: pipecat's base class would)
            await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.reset()
        elif isinstance(frame, (EndFrame, CancelFrame)):
            self._hold = None
        elif isinstance(frame, BotStartedSpeakingFrame):
            self.bot_speaking, self._released = True, False
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.bot_speaking = False
        elif isinstance(frame, UserStartedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
            self.user_turn = True  # the aggregator (downstream) started a user turn
        elif isinstance(frame, UserStoppedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
            self.user_turn = False
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._hold is None:
            self._released = False

        decisions = []
        try:
            if isinstance(frame, (InterimTranscriptionFrame, TranscriptionFrame)) and direction == \
                    FrameDirection.DOWNSTREAM:
                self._add_transcription(frame)
            elif isinstance(frame, InputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
                decisions = await self._add_user_audio(frame)
        except Exception as err:  # noqa: BLE001 -- fault isolation: the pipeline must go on
            self._fault(f"listen:{type(err).__name__}", err)

        if self._should_hold(frame, direction):
            if self._hold is None:
                self._hold = _Hold(started_s=self.time_s, quiet_since_s=self.time_s)
            self._hold.frames.append((frame, direction))
            self._update_hold(frame)
        else:
            await self.push_frame(frame, direction)
        for decision in decisions:
            try:
                await self._act(decision)
            except Exception as err:  # noqa: BLE001 -- an event handler or a push failed
                self._fault(f"act:{type(err).__name__}", err)
        verdicts, self._new_verdicts = self._new_verdicts, []
        for v in verdicts:
            try:
                await self._call_event_handler("on_user_onset", v)
            except Exception as err:  # noqa: BLE001 -- an event handler failed
                self._fault(f"act:{type(err).__name__}", err)
        await self._resolve()


class BotAudioTap(FrameProcessor):
    """Pass-through placed after ``transport.output()``: feeds the bot's played audio
    (``OutputAudioRawFrame``) and spoken words (``TTSTextFrame``) to a :class:`BackchannelProcessor`."""

    def __init__(self, processor: BackchannelProcessor, **kwargs):
        super().__init__(**kwargs)
        self.processor = processor

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            try:
                if isinstance(frame, OutputAudioRawFrame):
                    self.processor.add_bot_audio(frame)
                elif isinstance(frame, TTSTextFrame):
                    self.processor.add_bot_words(frame.text)
            except Exception as err:  # noqa: BLE001 -- fault isolation
                self.processor._fault(f"bot-audio:{type(err).__name__}", err)
        await self.push_frame(frame, direction)
