"""The streaming listener: one ``step()`` per 80 ms frame -> a :class:`~backchannel.policy.Decision`.

``StreamingListener(backbone, head, policy)`` chains
:class:`~backchannel.plugin.features.StreamingFeatures` (given features or audio, plus recognised
words), the frozen backbone's ``step``, the head's ``step``
and :meth:`Policy.decide`. All state is explicit (``backbone_state``, ``head_state``,
``policy_state``, the features' buffers) and ``reset()`` replaces it; every decision is causal.

Fault isolation (the host's loop must never stall on us nor crash):

- an exception raised by the features, the backbone or the head makes that frame SILENT
  (``Decision.fault`` = ``"features:ValueError"``, ``"model:RuntimeError"``...); non-finite model
  outputs count as ``"model:nan"`` (the head's state is put back to before that frame; a non-finite
  value that reached the backbone's attention cache stays there for up to ``window`` frames);
- a model call (backbone + head) whose wall time exceeds ``deadline_s`` makes that frame SILENT
  (``"deadline"``); its work is done and kept (states advanced), only the decision comes too late.
  The call is synchronous: a head that sleeps delays the host by that long, it cannot be preempted;
- each kind is logged once (``logging``: one WARNING line; its traceback at DEBUG) and counted in
  ``faults``;
- the next frames continue. State after a fault: the policy sees the frame as certain silence
  (``probs=None``) or, after a missed deadline, with its late probabilities; the head's state is
  replaced only when its step returns (``head.step`` returns a new state), so a head that raises
  skips that frame; the backbone's state is kept as the backbone leaves it. For ``TimingBackbone``
  that is consistent too: its step writes the frame's keys/values into ring slot ``t % window`` and
  advances ``t`` only at the very end, so a step that raises part-way leaves ``t`` unchanged and the
  next frame overwrites that slot in every layer: the failed frame is dropped from the backbone's
  history (tested). A head failure therefore means "backbone consumed the frame, head skipped it";
  a backbone failure means "both skipped it".

``ListenerPool`` steps many sessions in one batched backbone/head call (same decisions as separate
listeners up to float rounding of batched matrix products). Its sessions share one backbone state,
and ``TimingState`` keeps one frame counter for the whole batch, so a pool's sessions start and
reset together. A session whose features fail or whose outputs are non-finite is silenced alone (it
is fed an empty frame / its head-state row is put back); a failed or late batched call silences
that frame in every session.

:func:`load_listener` builds a listener from a head checkpoint (``backchannel train head``): its frozen
backbone, its head and the text tokenizer it was trained with. The checkpoint holds no decision
settings: pass a ``Policy`` (e.g. with the threshold and smoothing ``backchannel evaluate`` tuned on dev).
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from backchannel.policy import Decision, Policy

from .features import StreamingFeatures, split_frames

log = logging.getLogger(__name__)


class _Faults:
    """Counting and once-per-kind logging of the faults that silence a frame."""

    def _init_faults(self, logger: logging.Logger | None):
        self.log = logger or log
        self.faults: Counter = Counter()

    def _fault(self, kind: str, frame: int, err: BaseException | None = None, detail: str = "") -> str:
        self.faults[kind] += 1
        if self.faults[kind] == 1:
            what = f"{type(err).__name__}: {err}" if err is not None else detail
            self.log.warning("streaming listener: frame %d: %s (%s); the frame is SILENT. Further %r faults "
                             "are counted in .faults, not logged.", frame, kind, what, kind)
            if err is not None:
                self.log.debug("streaming listener: traceback of the first %r fault", kind, exc_info=err)
        return kind


def _probs(action_logits: torch.Tensor, type_logits: torch.Tensor) -> tuple[list, list]:
    """Softmax of ``[B, 3]`` / ``[B, 5]`` logits as nested lists of floats."""
    return action_logits.float().softmax(-1).tolist(), type_logits.float().softmax(-1).tolist()


def _finite(rows: list[list[float]]) -> bool:
    return all(math.isfinite(x) for row in rows for x in row)


class StreamingListener(_Faults):
    """One session: ``step()`` per 80 ms frame -> ``Decision`` (see the module docstring).

    ``backbone``: a streaming backbone (``init_state``/``step``) or None when the host feeds backbone
    hidden states itself (:meth:`step_hidden`); ``head``: a ``TimingHead``; ``policy``: the decision
    settings; ``features``: a :class:`StreamingFeatures` (default one at 16 kHz); ``deadline_s``:
    seconds allowed for the model call of one frame; ``logger``: where faults are logged.
    Set ``quiet = True`` to suppress backchannels and take-turns (e.g. while the user dictates digits).
    """

    checkpoint: dict | None = None
    """What :func:`load_listener` loaded (``Predictor.describe()``: path, sha256, backbone, configs); None
    for a listener built from objects."""

    def __init__(self, backbone, head, policy: Policy | None = None, *,
                 features: StreamingFeatures | None = None, deadline_s: float = 0.02,
                 logger: logging.Logger | None = None):
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0 s, got {deadline_s}")
        self.backbone, self.head = backbone, head
        self.policy = policy or Policy()
        self.features = features or StreamingFeatures()
        self.deadline_s = deadline_s
        self.quiet = False
        self.last_latency_s = math.nan  # wall time of the last model call
        self._init_faults(logger)
        self.reset()

    def reset(self) -> None:
        """New backbone, head, policy and feature state (``faults`` counts are kept)."""
        self.backbone_state = self.backbone.init_state(1) if self.backbone is not None else None
        self.head_state = self.head.init_state(1)
        self.policy_state = self.policy.init_state()
        self.features.reset()

    @property
    def t(self) -> int:
        """Frames decided since the last reset (the next frame's index)."""
        return self.policy_state.t

    def _decide(self, probs=None, type_probs=None, fault: str | None = None) -> Decision:
        return self.policy.decide(self.policy_state, probs, type_probs, quiet=self.quiet, fault=fault)

    def step(self, frame: Mapping | None = None, *, listener_pcm=None, speaker_pcm=None,
             listener_words: Sequence = (), speaker_words: Sequence = ()) -> Decision:
        """Decide the next frame from its given features (``frame``, see
        ``StreamingFeatures.from_features``) or 80 ms of audio per party, plus words recognised since
        the last step (``Word`` or ``(text, end_s)``). Never raises on a model fault."""
        try:
            inputs = self.features(frame, listener_pcm=listener_pcm, speaker_pcm=speaker_pcm,
                                   listener_words=listener_words, speaker_words=speaker_words)
        except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
            return self._decide(fault=self._fault(f"features:{type(err).__name__}", self.t, err))
        return self.step_inputs(inputs)

    def step_inputs(self, inputs: Mapping[str, torch.Tensor]) -> Decision:
        """Decide the next frame from ready backbone inputs (one frame, batch 1)."""
        if self.backbone is None:
            raise ValueError("this listener has no backbone: feed hidden states with step_hidden()")
        return self._model(lambda: self._backbone_head(inputs))

    def step_hidden(self, hidden: torch.Tensor) -> Decision:
        """Decide the next frame from a backbone hidden state ``[1, d]`` computed by the host (e.g. a
        duplex model's own loop): head + policy only, with the same fault isolation."""
        return self._model(lambda: self._head(hidden))

    def _backbone_head(self, inputs):
        hidden, self.backbone_state = self.backbone.step(self.backbone_state, inputs)
        return self._head(hidden)

    def _head(self, hidden):
        action_logits, type_logits, self.head_state = self.head.step(self.head_state, hidden)
        return _probs(action_logits, type_logits)

    def _model(self, call) -> Decision:
        t, head_state = self.t, self.head_state
        start = time.perf_counter()
        try:
            probs, type_probs = call()
        except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
            return self._decide(fault=self._fault(f"model:{type(err).__name__}", t, err))
        self.last_latency_s = elapsed = time.perf_counter() - start
        if not _finite(probs):  # keep the head's recurrent state finite: drop the frame from it
            self.head_state = head_state
            return self._decide(fault=self._fault("model:nan", t, detail="non-finite probabilities"))
        if elapsed > self.deadline_s:
            detail = f"model call took {elapsed * 1e3:.1f} ms, deadline {self.deadline_s * 1e3:.1f} ms"
            return self._decide(probs[0], type_probs[0], fault=self._fault("deadline", t, detail=detail))
        return self._decide(probs[0], type_probs[0])


def load_listener(checkpoint: str | Path, policy: Policy | None = None, **kw) -> StreamingListener:
    """A :class:`StreamingListener` from a head checkpoint written by ``backchannel train head``.

    Loads it with ``train.predict.load_predictor`` (the frozen backbone and head evaluation uses, in
    eval mode) and feeds the text stream through the tokenizer the backbone was trained with.
    ``policy``: decision settings (default ``Policy()``: the checkpoint stores none); ``kw`` go to
    :class:`StreamingListener` (``deadline_s``, ``logger``, ``features``). A given ``features`` must
    encode words as the checkpoint's backbone does (same vocabulary size and words per frame); for audio
    at another rate use ``StreamingFeatures(rate, tokenizer=listener.features.tokenizer)``.
    ``listener.checkpoint`` describes what was loaded.

    Raises ``train.modules.CheckpointError`` naming the file when it is missing, corrupt, not a
    backchannel checkpoint, a backbone-only checkpoint, or its weights do not fit its config.
    """
    from backchannel.train.predict import load_predictor

    pred = load_predictor(checkpoint)
    features = kw.pop("features", None)
    if features is None:
        features = StreamingFeatures(tokenizer=pred.tokenizer) if pred.tokenizer else StreamingFeatures()
    elif pred.tokenizer is not None:
        want = (pred.tokenizer.vocab_size, pred.tokenizer.k)
        got = (features.tokenizer.vocab_size, features.tokenizer.k)
        if got != want:
            raise ValueError(f"{checkpoint}: the backbone reads text as (vocab_size, words per frame) "
                             f"{want}, the given features encode {got}")
    listener = StreamingListener(pred.backbone, pred.head, policy, features=features, **kw)
    listener.checkpoint = pred.describe()
    return listener


def run_offline(listener: StreamingListener, frames: Mapping | Iterable[Mapping]) -> list[Decision]:
    """Reset ``listener`` and replay ``frames`` through it as if live: a framed listener row
    (``corpora.framing.frame_listener`` output / dataset row, split with ``split_frames``) or an
    iterable of per-frame feature dicts. Returns one decision per frame."""
    listener.reset()
    if isinstance(frames, Mapping):
        frames = split_frames(frames)
    return [listener.step(frame) for frame in frames]


class ListenerPool(_Faults):
    """``n_sessions`` listeners sharing one model, stepped together in one batched call per frame.

    ``step(frames)`` takes one given-features frame per session (``None``: that session's frame is
    silent with no voice, prosody or text) and returns one decision per session. ``quiet[i]``
    silences session ``i``. Sessions start and reset together (see the module docstring).
    """

    def __init__(self, backbone, head, policy: Policy | None = None, n_sessions: int = 1, *,
                 features=StreamingFeatures, deadline_s: float = 0.04, logger: logging.Logger | None = None):
        if n_sessions < 1:
            raise ValueError(f"n_sessions must be >= 1, got {n_sessions}")
        self.backbone, self.head, self.n = backbone, head, n_sessions
        self.policy = policy or Policy()
        self.features = [features() for _ in range(n_sessions)]
        self.deadline_s = deadline_s
        self.quiet = [False] * n_sessions
        self.last_latency_s = math.nan
        self._init_faults(logger)
        self.reset()

    def reset(self) -> None:
        self.backbone_state = self.backbone.init_state(self.n)
        self.head_state = self.head.init_state(self.n)
        self.policy_states = [self.policy.init_state() for _ in range(self.n)]
        for f in self.features:
            f.reset()

    @property
    def t(self) -> int:
        return self.policy_states[0].t

    def _decide_all(self, probs, type_probs, faults: list) -> list[Decision]:
        return [self.policy.decide(state, probs[i] if probs else None, type_probs[i] if probs else None,
                                   quiet=self.quiet[i], fault=faults[i])
                for i, state in enumerate(self.policy_states)]

    def step(self, frames: Sequence[Mapping | None]) -> list[Decision]:
        """One frame for every session -> one decision per session. A session whose features fail is
        fed an empty frame (no voice, masked prosody, no text) and is SILENT with the fault; a
        session whose outputs are non-finite is SILENT and its head state row is put back; a failed
        or late batched model call silences every session."""
        if len(frames) != self.n:
            raise ValueError(f"pool step: {len(frames)} frames for {self.n} sessions")
        t = self.t
        faults: list[str | None] = [None] * self.n
        rows = []
        for i, (f, frame) in enumerate(zip(self.features, frames)):
            try:
                rows.append(f(_SILENCE if frame is None else frame))
            except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
                faults[i] = self._fault(f"features:{type(err).__name__}", t, err)
                rows.append(f.from_features(_SILENCE))
                f.t -= 1  # from_features advanced the clock a second time
        inputs = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
        head_state = self.head_state
        start = time.perf_counter()
        try:
            hidden, self.backbone_state = self.backbone.step(self.backbone_state, inputs)
            action_logits, type_logits, self.head_state = self.head.step(self.head_state, hidden)
            probs, type_probs = _probs(action_logits, type_logits)
        except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
            kind = self._fault(f"model:{type(err).__name__}", t, err)
            return self._decide_all(None, None, [kind] * self.n)
        self.last_latency_s = elapsed = time.perf_counter() - start
        for i, p in enumerate(probs):
            if faults[i] is None and not _finite([p]):  # silences only that session
                faults[i] = self._fault("model:nan", t, detail=f"non-finite probabilities, session {i}")
                if isinstance(self.head_state, torch.Tensor):  # GRU state [1, B, H]: put row i back
                    with torch.inference_mode():
                        self.head_state[:, i] = head_state[:, i]
            if faults[i] is not None:  # no probabilities from a failed session: certain silence
                probs[i], type_probs[i] = None, None
        if elapsed > self.deadline_s:
            detail = f"model call took {elapsed * 1e3:.1f} ms, deadline {self.deadline_s * 1e3:.1f} ms"
            kind = self._fault("deadline", t, detail=detail)
            faults = [f or kind for f in faults]
        return self._decide_all(probs, type_probs, faults)


_SILENCE = {"va_listener": 0.0, "va_speaker": 0.0}
