"""The streaming listener: one ``step()`` per 80 ms frame -> a :class:`~backchannel.policy.Decision`.

``StreamingListener(backbone, head, policy)`` chains :class:`~backchannel.plugin.features.StreamingFeatures`
(given features or audio, plus recognised words), the frozen backbone's ``step``, the head's ``step`` and the
policy. Every stage follows one streaming protocol (``init_state(batch)``, ``step(state, x)``,
``reset(state, mask)``), all state is explicit (``feature_state``, ``backbone_state``, ``head_state``,
``policy_state``) and every decision is causal.

Fault isolation (the host's loop must never stall on us nor crash):

- any exception from the features, the backbone, the head, the output check or the policy makes that frame
  SILENT (``Decision.fault`` = ``"features:ValueError"``, ``"model:RuntimeError"``, ``"model:output"`` for
  head outputs of the wrong structure, type or shape...); non-finite outputs are ``"model:nan"``;
- a model call (backbone + head) whose wall time exceeds ``deadline_s`` makes that frame SILENT
  (``"deadline"``); its work is done and kept (states advanced), only the decision comes too late. The call
  is synchronous: a head that sleeps delays the host by that long, it cannot be preempted;
- faults are counted in ``faults`` and logged once per kind (``plugin.faults.Faults``); words refused by the
  bounded word queue are counted as ``"words:dropped"``, unreadable words as ``"words:malformed"`` (for both,
  the frame is still decided);
- one bad frame costs that frame only. Inputs are checked and clamped at the frame-input boundary
  (``FrameInputs.clamped``): a value it can clamp (voice activity outside [0, 1], prosody outside
  ``inputs.BOUNDS``) is fed clamped, not a fault; a frame it refuses (NaN/inf voice activity or unmasked
  prosody, wrong shapes or types) is SILENT (``"features:ValueError"``) and never reaches the model, and the
  queued words visible in it appear in the next frame. A backbone stream whose output is not finite does not
  advance (the next frame overwrites its slot); the head keeps its previous state on any fault of the model
  call (exception, bad output, non-finite output); the policy sees the faulted frame as certain silence
  (``probs=None``). A step that raises part-way leaves ``TimingBackbone``'s frame counter unchanged, so the
  failed frame is dropped from its history too. So the frames after a bad one are decided exactly as if it
  had been clamped (a clampable frame) or had reached neither backbone nor head (a refused frame) (tested).

``ListenerPool`` steps many sessions in one batched backbone/head call (same decisions as separate
listeners up to float rounding of batched matrix products). Every stage keeps one state row per session,
so sessions start and reset independently (``reset(i)``): a reset session's row is zeroed and the others
are untouched (bit-identical outputs, tested). A session whose features fail or whose outputs are
non-finite is silenced alone; a failed or late batched call silences that frame in every session.

:func:`load_listener` builds a listener from the package's default model, a model folder (``backchannel
export``) or a head checkpoint (``backchannel train head``): its frozen backbone, its head, the text tokenizer it
was trained with and, for a model folder, its dev-tuned policy. :func:`decide_wav` replays a WAV file through it.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from backchannel.corpora.events import ACTIONS

from backchannel.frames import FRAME_S
from backchannel.inputs import FrameInputs
from backchannel.lexicon import BC_TYPES
from backchannel.policy import Decision, Policy

from .faults import Faults
from .features import StreamingFeatures, split_frames

log = logging.getLogger(__name__)


_WORDS_DROPPED = "the words are dropped, the frame is decided"


class HeadOutputError(ValueError):
    """A head's outputs are not ``HeadOutputs`` of float tensors of the expected shapes."""


def head_outputs(out, batch: int) -> tuple[list, list, list | None]:
    """A head's ``HeadOutputs`` of one frame as nested lists: softmax of the ``[B, 3]`` action and ``[B, 5]``
    type logits, sigmoid of the ``[B]`` onset logits (None without); ``HeadOutputError`` for anything else
    (not three outputs, not floating-point tensors, other shapes). Finiteness is the caller's check."""
    if not isinstance(out, tuple) or len(out) != 3:
        raise HeadOutputError(f"head gave {type(out).__name__}, expected HeadOutputs(action, bc_type, onset)")
    action_logits, type_logits, onset = out
    for name, x in (("action", action_logits), ("type", type_logits), ("onset", onset)):
        if not (x is None and name == "onset") and not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            raise HeadOutputError(f"head gave {name} logits of type {type(x).__name__}"
                                  f"{f' {x.dtype}' if isinstance(x, torch.Tensor) else ''}, expected a float tensor")
    if tuple(action_logits.shape) != (batch, len(ACTIONS)) or tuple(type_logits.shape) != (batch, len(BC_TYPES)):
        raise HeadOutputError(f"head gave action logits {tuple(action_logits.shape)} and type logits "
                              f"{tuple(type_logits.shape)}; expected ({batch}, {len(ACTIONS)}) and "
                              f"({batch}, {len(BC_TYPES)})")
    if onset is not None and tuple(onset.shape) != (batch,):
        raise HeadOutputError(f"head gave onset logits {tuple(onset.shape)}; expected ({batch},)")
    return (action_logits.float().softmax(-1).tolist(), type_logits.float().softmax(-1).tolist(),
            None if onset is None else onset.float().sigmoid().tolist())


def _finite(row) -> bool:
    return all(math.isfinite(x) for x in row)


def _reset_state(module, state, mask) -> None:
    reset = getattr(module, "reset", None)
    if callable(reset):
        reset(state, mask)


class StreamingListener:
    """One session: ``step()`` per 80 ms frame -> ``Decision`` (see the module docstring).

    ``backbone``: a streaming backbone (``init_state``/``step``/``reset``) or None when the host feeds backbone
    hidden states itself (:meth:`step_hidden`); ``head``: a ``TimingHead``; ``policy``: the decision
    settings; ``features``: a :class:`StreamingFeatures` (default one at 16 kHz); ``deadline_s``:
    seconds allowed for the model call of one frame; ``logger``: where faults are logged.
    Set ``quiet = True`` to suppress backchannels and take-turns (e.g. while the user dictates digits).
    """

    checkpoint: dict | None = None
    """What :func:`load_listener` loaded (path, sha256, backbone, configs); None for a listener built from
    objects."""

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
        self.last_onset: float | None = None  # the head's p(the listener's current speech is a backchannel)
        self._faults = Faults("streaming listener", logger or log)
        self.reset()

    @property
    def faults(self):
        """Faults by kind (a ``Counter``; kept across ``reset``)."""
        return self._faults.counts

    def reset(self) -> None:
        """New feature, backbone, head and policy state (``faults`` counts and the policy's rate calibration,
        the deployment's, are kept)."""
        self.feature_state = self.features.init_state(1)
        self.backbone_state = self.backbone.init_state(1) if self.backbone is not None else None
        self.head_state = self.head.init_state(1)
        old = getattr(self, "policy_state", None)
        self.policy_state = self.policy.new_state(old.calibration if old is not None else None)

    @property
    def t(self) -> int:
        """Frames decided since the last reset (the next frame's index)."""
        return self.policy_state.t

    def _decide(self, probs=None, type_probs=None, fault: str | None = None) -> Decision:
        try:
            return self.policy.decide(self.policy_state, probs, type_probs, quiet=self.quiet, fault=fault)
        except Exception as err:  # noqa: BLE001 -- fault isolation: a policy error silences the frame too
            kind = self._faults.record(f"policy:{type(err).__name__}", self.t, err)
            return self.policy.decide(self.policy_state, None, None, quiet=self.quiet, fault=kind)

    def step(self, frame: Mapping | None = None, *, listener_pcm=None, speaker_pcm=None,
             listener_words: Sequence = (), speaker_words: Sequence = ()) -> Decision:
        """Decide the next frame from its given features (``frame``, see ``StreamingFeatures``) or 80 ms of
        audio per party, plus words recognised since the last step (``Word`` or ``(text, end_s)``). Never
        raises."""
        state = self.feature_state[0]
        try:
            inputs = self.features.step(state, frame, listener_pcm=listener_pcm, speaker_pcm=speaker_pcm,
                                        listener_words=listener_words, speaker_words=speaker_words)
        except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
            return self._decide(fault=self._faults.record(f"features:{type(err).__name__}", self.t, err))
        finally:
            self._record_words(state)
        if self.backbone is None:  # a setup error, not a frame's
            raise ValueError("this listener has no backbone: feed hidden states with step_hidden()")
        return self._model(lambda: self._backbone_head(inputs))  # checked and clamped by the features

    def _record_words(self, state) -> None:
        if state.dropped_words:
            self._faults.record("words:dropped", self.t, detail="words beyond the word queue's bounds",
                                n=state.dropped_words, consequence=_WORDS_DROPPED)
            state.dropped_words = 0
        if state.bad_words:
            self._faults.record("words:malformed", self.t, detail=state.bad_word, n=state.bad_words,
                                consequence=_WORDS_DROPPED)
            state.bad_words, state.bad_word = 0, ""

    def step_inputs(self, inputs: Mapping[str, torch.Tensor]) -> Decision:
        """Decide the next frame from ready backbone inputs (``FrameInputs`` of one frame, batch 1, or a dict
        with its keys). They pass the same boundary as :meth:`step`'s (shapes checked, values clamped by
        ``FrameInputs.clamped``; a frame that fails it is SILENT, ``"inputs:ValueError"``)."""
        if self.backbone is None:
            raise ValueError("this listener has no backbone: feed hidden states with step_hidden()")
        try:
            FrameInputs.check_shapes(inputs, "step_inputs", dims=1)
            ids = inputs.get("text_ids")
            x = FrameInputs(*(inputs[k] for k in ("va_listener", "va_speaker", "prosody", "prosody_mask")),
                            ids).clamped()
        except Exception as err:  # noqa: BLE001 -- fault isolation: a refused frame is SILENT
            return self._decide(fault=self._faults.record(f"inputs:{type(err).__name__}", self.t, err))
        return self._model(lambda: self._backbone_head(x))

    def step_hidden(self, hidden: torch.Tensor, inputs: Mapping | None = None) -> Decision:
        """Decide the next frame from a backbone hidden state ``[1, d]`` computed by the host (e.g. a
        duplex model's own loop), and the frame's inputs if the head reads them: head + policy only, with the
        same fault isolation."""
        return self._model(lambda: self._head(hidden, inputs))

    def _backbone_head(self, inputs):
        hidden, self.backbone_state = self.backbone.step(self.backbone_state, inputs)
        return self._head(hidden, inputs)

    def _head(self, hidden, inputs=None):
        out, self.head_state = self.head.step(self.head_state, hidden, inputs)
        return head_outputs(out, 1)

    def _model(self, call) -> Decision:
        t, head_state = self.t, self.head_state
        start = time.perf_counter()
        self.last_onset = None
        try:
            probs, type_probs, onset = call()
        except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
            self.head_state = head_state  # the head did not consume the frame
            kind = "model:output" if isinstance(err, HeadOutputError) else f"model:{type(err).__name__}"
            return self._decide(fault=self._faults.record(kind, t, err))
        self.last_latency_s = elapsed = time.perf_counter() - start
        if not (_finite(probs[0]) and _finite(type_probs[0]) and _finite(onset or [])):  # keep the state finite
            self.head_state = head_state
            return self._decide(fault=self._faults.record("model:nan", t, detail="non-finite probabilities"))
        self.last_onset = None if onset is None else onset[0]
        if elapsed > self.deadline_s:
            detail = f"model call took {elapsed * 1e3:.1f} ms, deadline {self.deadline_s * 1e3:.1f} ms"
            return self._decide(probs[0], type_probs[0], fault=self._faults.record("deadline", t, detail=detail))
        return self._decide(probs[0], type_probs[0])


def load_listener(path: str | Path | None = None, policy: Policy | None = None, *, target_rate: float | None = None,
                  **kw) -> StreamingListener:
    """A :class:`StreamingListener` from a model: with no ``path`` the package's default model
    (``backchannel/default_listener``, package data); else a model folder (``backchannel export``:
    config.json + model.safetensors) or a head checkpoint written by ``backchannel train head``.

    Loads it with ``train.predict.load_predictor`` (the frozen backbone and head evaluation uses, in eval
    mode) and feeds the text stream through the tokenizer the backbone was trained with. ``policy``: decision
    settings; default: a model folder's ``policy.json`` (the dev-tuned settings it ships with), else ``Policy()``
    (a ``.ckpt`` holds none). ``target_rate``: backchannels per listener-minute to calibrate that policy to
    online (``Policy.calibrated``, rule 9: no labels; the calibration carries across ``reset()``, one
    deployment); state your domain's rate, e.g. Map Task's ~1.5, MRDA meetings' ~0.5 isolated backchannels a
    minute. ``kw`` go to :class:`StreamingListener` (``deadline_s``, ``logger``, ``features``). A given
    ``features`` must encode words as the model's backbone does (same vocabulary size and words per frame);
    for audio at another rate use ``listener.features.with_rate(rate)``.
    ``listener.checkpoint`` describes what was loaded.

    Raises ``train.modules.CheckpointError`` naming the file when it is missing (for the default model: this
    install ships none yet), corrupt, not a backchannel model, a backbone-only checkpoint, or its weights do
    not fit its config. Nothing is unpickled.
    """
    from backchannel.train.predict import load_predictor
    from backchannel.train.pretrained import default_model

    where = default_model() if path is None else path
    pred = load_predictor(where)
    features = kw.pop("features", None)
    if features is None:
        features = StreamingFeatures(tokenizer=pred.tokenizer) if pred.tokenizer else StreamingFeatures()
    elif pred.tokenizer is not None:
        want = (pred.tokenizer.vocab_size, pred.tokenizer.k)
        got = (features.tokenizer.vocab_size, features.tokenizer.k)
        if got != want:
            raise ValueError(f"{where}: the backbone reads text as (vocab_size, words per frame) "
                             f"{want}, the given features encode {got}")
    if policy is None and pred.policy_settings is not None:
        policy = Policy.from_dict(pred.policy_settings)
    if target_rate is not None:
        policy = (policy or Policy()).calibrated(target_rate)
    listener = StreamingListener(pred.backbone, pred.head, policy, features=features, **kw)
    listener.checkpoint = pred.describe()
    return listener


def decide_wav(listener: StreamingListener, path: str | Path, *, speaker_channel: int = 0,
               listener_channel: int | None = 1) -> list[Decision]:
    """Reset ``listener`` and decide every 80 ms frame of a WAV file (any ``soundfile`` format) as if live,
    from the audio alone (no words). A mono file is the user speaking (the listener's own channel silent);
    in a multi-channel file ``speaker_channel`` is the user and ``listener_channel`` the listener itself (the
    bot; None: silent), as ``backchannel simulate`` writes them (0: speaker, 1: listener). The listener's
    features take the file's sample rate; a last partial frame is dropped. A file is not live: the listener's
    ``deadline_s`` does not apply while it is replayed (restored after). One decision per frame."""
    import soundfile

    try:
        pcm, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as err:  # soundfile's LibsndfileError is a RuntimeError
        raise ValueError(f"{path}: not a readable audio file: {err}") from None
    channels = pcm.shape[1]
    for name, ch in (("speaker_channel", speaker_channel), ("listener_channel", listener_channel)):
        if ch is not None and channels > 1 and not 0 <= ch < channels:
            raise ValueError(f"{path}: {name} {ch} but the file has {channels} channels")
    speaker = pcm[:, speaker_channel if channels > 1 else 0]
    own = pcm[:, listener_channel] if channels > 1 and listener_channel is not None else np.zeros_like(speaker)
    if listener.features.sample_rate != rate:
        listener.features = listener.features.with_rate(rate)
    listener.reset()
    n = round(FRAME_S * rate)
    deadline, listener.deadline_s = listener.deadline_s, math.inf
    try:
        return [listener.step(listener_pcm=own[i:i + n], speaker_pcm=speaker[i:i + n])
                for i in range(0, len(speaker) - n + 1, n)]
    finally:
        listener.deadline_s = deadline


def run_offline(listener: StreamingListener, frames: Mapping | Iterable[Mapping]) -> list[Decision]:
    """Reset ``listener`` and replay ``frames`` through it as if live: a framed listener row (a dataset row,
    cut with ``split_frames``) or an iterable of per-frame feature dicts. Returns one decision per frame."""
    listener.reset()
    if isinstance(frames, Mapping):
        frames = split_frames(frames)
    return [listener.step(frame) for frame in frames]


class ListenerPool:
    """``n_sessions`` listeners sharing one model, stepped together in one batched call per frame.

    ``step(frames)`` takes one given-features frame per session (``None``: that session's frame is silent
    with no voice, prosody or text) and returns one decision per session. ``quiet[i]`` silences session
    ``i``; ``reset(i)`` restarts session ``i`` alone (see the module docstring).
    """

    def __init__(self, backbone, head, policy: Policy | None = None, n_sessions: int = 1, *,
                 features: StreamingFeatures | None = None, deadline_s: float = 0.04,
                 logger: logging.Logger | None = None):
        if n_sessions < 1:
            raise ValueError(f"n_sessions must be >= 1, got {n_sessions}")
        self.backbone, self.head, self.n = backbone, head, n_sessions
        self.policy = policy or Policy()
        self.features = features or StreamingFeatures()
        self.deadline_s = deadline_s
        self.quiet = [False] * n_sessions
        self.last_latency_s = math.nan
        self.last_onset: list | None = None  # per session, the head's onset probability of the last frame
        self._faults = Faults("listener pool", logger or log)
        self.feature_states = self.features.init_state(self.n)
        self.backbone_state = self.backbone.init_state(self.n)
        self.head_state = self.head.init_state(self.n)
        self.policy_states = self.policy.init_state(self.n)

    @property
    def faults(self):
        return self._faults.counts

    def reset(self, sessions: int | Sequence[int] | None = None) -> None:
        """Restart ``sessions`` (an index or indices; None: all); the other sessions are untouched."""
        mask = np.zeros(self.n, dtype=bool)
        if sessions is None:
            mask[:] = True
        else:
            mask[np.atleast_1d(np.asarray(sessions, dtype=int))] = True
        self.features.reset(self.feature_states, mask)
        _reset_state(self.backbone, self.backbone_state, mask)
        _reset_state(self.head, self.head_state, mask)
        self.policy.reset(self.policy_states, mask)

    def t(self, session: int = 0) -> int:
        """Frames decided by ``session`` since its last reset."""
        return self.policy_states[session].t

    def _decide_all(self, probs, type_probs, faults: list) -> list[Decision]:
        out = []
        for i, state in enumerate(self.policy_states):
            p = None if probs is None else probs[i]
            tp = None if type_probs is None else type_probs[i]
            try:
                out.append(self.policy.decide(state, p, tp, quiet=self.quiet[i], fault=faults[i]))
            except Exception as err:  # noqa: BLE001 -- fault isolation
                kind = self._faults.record(f"policy:{type(err).__name__}", state.t, err)
                out.append(self.policy.decide(state, None, None, quiet=self.quiet[i], fault=kind))
        return out

    def step(self, frames: Sequence[Mapping | None]) -> list[Decision]:
        """One frame for every session -> one decision per session. A session whose features fail is fed an
        empty frame (no voice, masked prosody, no text) and is SILENT with the fault; a session whose outputs
        are non-finite is SILENT and its head state row is put back; a failed or late batched model call
        silences every session."""
        if len(frames) != self.n:
            raise ValueError(f"pool step: {len(frames)} frames for {self.n} sessions")
        faults: list[str | None] = [None] * self.n
        rows = []
        for i, (state, frame) in enumerate(zip(self.feature_states, frames)):
            try:
                rows.append(self.features.step(state, _SILENCE if frame is None else frame))
            except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
                faults[i] = self._faults.record(f"features:{type(err).__name__}", state.t - 1, err)
                rows.append(FrameInputs.frame(0.0, 0.0, text_ids=np.zeros((2, self.features.tokenizer.k), int)))
        inputs = FrameInputs.stack(rows)
        head_state = self.head_state.clone() if isinstance(self.head_state, torch.Tensor) else self.head_state
        start = time.perf_counter()
        try:
            hidden, self.backbone_state = self.backbone.step(self.backbone_state, inputs)
            out, self.head_state = self.head.step(self.head_state, hidden, inputs)
            probs, type_probs, onset = head_outputs(out, self.n)
        except Exception as err:  # noqa: BLE001 -- fault isolation: any failure silences the frame
            self.head_state = head_state  # no session's head consumed the frame
            kind = "model:output" if isinstance(err, HeadOutputError) else f"model:{type(err).__name__}"
            kind = self._faults.record(kind, self.t(), err)
            return self._decide_all(None, None, [kind] * self.n)
        self.last_latency_s = elapsed = time.perf_counter() - start
        self.last_onset = onset
        for i in range(self.n):
            if faults[i] is None and not (_finite(probs[i]) and _finite(type_probs[i])):  # silences that session
                faults[i] = self._faults.record("model:nan", self.t(i), detail=f"non-finite probabilities, session {i}")
                if isinstance(self.head_state, torch.Tensor):  # GRU state [1, B, H]: put row i back
                    with torch.inference_mode():
                        self.head_state[:, i] = head_state[:, i]
            if faults[i] is not None:  # no probabilities from a failed session: certain silence
                probs[i], type_probs[i] = None, None
        if elapsed > self.deadline_s:
            detail = f"model call took {elapsed * 1e3:.1f} ms, deadline {self.deadline_s * 1e3:.1f} ms"
            kind = self._faults.record("deadline", self.t(), detail=detail)
            faults = [f or kind for f in faults]
        return self._decide_all(probs, type_probs, faults)


_SILENCE = {"va_listener": 0.0, "va_speaker": 0.0}
