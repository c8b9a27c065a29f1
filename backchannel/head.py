"""The timing head: per 80 ms frame, action logits (SILENT, BACKCHANNEL, TAKE_TURN), backchannel type logits
(``lexicon.BC_TYPES``) and, optionally, a user-onset logit, on top of frozen backbone states.

- **Direct inputs** (``direct=True``): besides the backbone state, the head reads the frame's own voice
  activity of both parties and, with ``text_vocab``, its own embedding of both parties' words (the
  ``FrameInputs`` the backbone read), so exact timing and lexical cues reach it undiluted.
- **Floor context** (``context=True``): three causal running statistics of the voice activity
  (:func:`floor_context`): both parties' speech share over the last ~30 s and the floor party's current silence
  relative to its own mean pause, so the head can read a pause as long or short *for this speaker* (per-speaker
  timing normalisation; a meeting's floor pauses are half a Map Task giver's).
- **Onset output** (``onset=True``): at frames just after a listener speech onset while the floor party holds
  the floor, the logit that this speech is a backchannel (not a take-turn): the "user backchannel vs barge-in"
  decision when the model listens to the user (roles reversed).

Class imbalance (most frames are SILENT) is handled explicitly in :func:`head_loss`: per-class
weights (e.g. :func:`inverse_frequency_weights`) and/or the focal loss of Lin et al. (2017).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backchannel.corpora.events import ACTIONS, BACKCHANNEL
from backchannel.frames import FRAME_S
from backchannel.lexicon import BC_TYPES

IGNORE_INDEX = -100
#: ``floor_context``: per-frame decay of the speech shares (30 s time constant), per-pause decay of the floor
#: party's mean pause, its prior (frames, weighing as one pause), the longest silence counted as a pause (frames,
#: 5 s) and the voice activity at which the floor party counts as speaking.
SHARE_DECAY = math.exp(-FRAME_S / 30.0)
PAUSE_DECAY = 0.9
PAUSE_PRIOR_FRAMES = 6.0
PAUSE_CAP_FRAMES = 62.0
VOICED = 0.5
#: Widths of the ``floor_context`` features and of its state (zeros: no history).
CONTEXT_DIM, CONTEXT_STATE = 3, 6


def floor_context(va_listener: Tensor, va_speaker: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Causal per-speaker timing context of voice activity ``[B, T]`` (fractions) from ``state [B, 6]`` (zeros or
    None: no history) -> ``(features [B, T, 3], state [B, 6])``. Features at frame t, from frames <= t only: the
    listener's and the floor party's speech share (exponential window, 30 s), and ``log1p(s / m)`` with ``s`` the
    floor party's current silence and ``m`` its running mean pause (frames; silences ended by the floor party
    itself, capped at 5 s; prior 0.48 s). One code path for whole sequences and streaming steps (T = 1)."""
    vl = va_listener.detach().to("cpu", torch.float64).numpy()
    vs = va_speaker.detach().to("cpu", torch.float64).numpy()
    b, n = vl.shape
    s = np.zeros((b, CONTEXT_STATE)) if state is None else state.detach().to("cpu", torch.float64).numpy().copy()
    out = np.empty((b, n, CONTEXT_DIM))
    for t in range(n):
        s[:, :3] *= SHARE_DECAY
        s[:, 0] += vl[:, t]
        s[:, 1] += vs[:, t]
        s[:, 2] += 1.0
        voiced = vs[:, t] >= VOICED
        ended = voiced & (s[:, 3] > 0)
        if ended.any():
            s[ended, 4] = PAUSE_DECAY * s[ended, 4] + np.minimum(s[ended, 3], PAUSE_CAP_FRAMES)
            s[ended, 5] = PAUSE_DECAY * s[ended, 5] + 1.0
        s[:, 3] = np.where(voiced, 0.0, s[:, 3] + 1.0)
        out[:, t, 0] = s[:, 0] / s[:, 2]
        out[:, t, 1] = s[:, 1] / s[:, 2]
        out[:, t, 2] = np.log1p(s[:, 3] * (s[:, 5] + 1.0) / (s[:, 4] + PAUSE_PRIOR_FRAMES))
    dtype = va_listener.dtype if va_listener.is_floating_point() else torch.float32
    return (torch.from_numpy(out).to(va_listener.device, dtype),
            torch.from_numpy(s).to(va_listener.device, torch.float32))


class HeadOutputs(NamedTuple):
    """Logits per frame: ``action [..., 3]``, ``bc_type [..., 5]``, ``onset [...]`` (None without the output)."""

    action: Tensor
    bc_type: Tensor
    onset: Tensor | None = None


class TimingHead(nn.Module):
    """``kind="gru"``: LayerNorm -> one GRU layer -> linear outputs (carries a hidden state in ``step``);
    ``kind="mlp"``: LayerNorm -> Linear -> GELU -> linear outputs (frame-wise). See the module docstring for
    ``direct``, ``text_vocab`` (ids of ``text.TextTokenizer``, 0 = no text embedding), ``text_dim``, ``context``
    (GRU only: ``step``'s state then carries the ``floor_context`` state after the hidden units) and ``onset``.

    ``forward(x [B, T, input_dim], inputs=None) -> HeadOutputs``; ``inputs``: the ``FrameInputs`` (or dict)
    the backbone read, needed when ``direct``.
    """

    def __init__(self, input_dim: int, hidden: int = 64, kind: str = "gru", dropout: float = 0.0,
                 n_actions: int = len(ACTIONS), n_types: int = len(BC_TYPES), *, direct: bool = False,
                 text_vocab: int = 0, text_dim: int = 16, context: bool = False, onset: bool = False):
        super().__init__()
        if kind not in ("gru", "mlp"):
            raise ValueError(f"head kind must be 'gru' or 'mlp', got {kind!r}")
        if text_vocab and not direct:
            raise ValueError("a head text embedding (text_vocab) needs direct=True")
        if context and (not direct or kind != "gru"):
            raise ValueError("the floor context (context=True) needs direct=True and kind='gru'")
        self.kind, self.hidden, self.direct, self.context = kind, hidden, direct, bool(context)
        self.text = nn.Embedding(text_vocab, text_dim, padding_idx=0) if text_vocab else None
        extra = (2 + (2 * text_dim if text_vocab else 0) + (CONTEXT_DIM if context else 0)) if direct else 0
        self.norm = nn.LayerNorm(input_dim)
        width = input_dim + extra
        if kind == "gru":
            self.body = nn.GRU(width, hidden, batch_first=True)
        else:
            self.body = nn.Sequential(nn.Linear(width, hidden), nn.GELU())
        self.drop = nn.Dropout(dropout)
        self.action = nn.Linear(hidden, n_actions)
        self.bc_type = nn.Linear(hidden, n_types)
        self.onset = nn.Linear(hidden, 1) if onset else None

    def _input(self, x: Tensor, inputs: Mapping | None, context: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        if not self.direct:
            return h
        if inputs is None:
            raise ValueError("this head reads the frame inputs too (direct=True): pass inputs")
        parts = [h, inputs["va_listener"].to(h.dtype).unsqueeze(-1), inputs["va_speaker"].to(h.dtype).unsqueeze(-1)]
        if self.text is not None:
            ids = inputs["text_ids"].long().clamp(0, self.text.num_embeddings - 1)  # [..., 2, K]
            e = self.text(ids).sum(-2)  # [..., 2, text_dim]
            parts.append(e.flatten(-2).to(h.dtype))
        if context is not None:
            parts.append(context.to(h.dtype))
        return torch.cat(parts, dim=-1)

    def _outputs(self, h: Tensor) -> HeadOutputs:
        return HeadOutputs(self.action(h), self.bc_type(h), self.onset(h)[..., 0] if self.onset is not None else None)

    def forward(self, x: Tensor, inputs: Mapping | None = None) -> HeadOutputs:
        """Whole sequences ``x [B, T, input_dim]``, each from the start of its session (with ``context``, unless
        ``inputs["context"]`` gives the ``floor_context`` features of these frames computed from the session's
        start: a training crop's)."""
        context = None
        if self.context:
            context = inputs["context"] if "context" in inputs else floor_context(inputs["va_listener"],
                                                                                  inputs["va_speaker"])[0]
        h = self._input(x, inputs, context)
        h = self.body(h)[0] if self.kind == "gru" else self.body(h)
        return self._outputs(self.drop(h))

    def init_state(self, batch_size: int = 1) -> Tensor | None:
        """GRU hidden ``[1, B, hidden]`` of zeros, with ``context`` ``[1, B, hidden + 6]`` (``None`` for the MLP)."""
        if self.kind == "mlp":
            return None
        w = self.action.weight
        width = self.hidden + (CONTEXT_STATE if self.context else 0)
        return torch.zeros(1, batch_size, width, device=w.device, dtype=w.dtype)

    @torch.inference_mode()
    def reset(self, state: Tensor | None, mask) -> None:
        """Zero the hidden state of the streams where ``mask`` (bool ``[B]``) is true."""
        if state is not None:
            state[:, torch.as_tensor(mask, dtype=torch.bool).reshape(-1)] = 0

    @torch.inference_mode()
    def step(self, state: Tensor | None, x: Tensor, inputs: Mapping | None = None) -> tuple[HeadOutputs, Tensor | None]:
        """One frame ``x [B, input_dim]`` (and its ``inputs`` when ``direct``) -> ``(HeadOutputs, state)``. A
        stream whose new hidden state is not finite keeps its old one (one bad frame costs that frame only)."""
        context = None
        if self.context:
            context, ctx_state = floor_context(inputs["va_listener"][:, None], inputs["va_speaker"][:, None],
                                               state[0, :, self.hidden:])
            context = context[:, 0]
        h = self._input(x, inputs, context)
        if self.kind == "gru":
            g, old = self.body, state[0, :, :self.hidden]
            h = torch.gru_cell(h, old, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
            ok = torch.isfinite(h).all(dim=-1, keepdim=True)
            h_state = torch.where(ok, h, old)
            if self.context:
                h_state = torch.cat([h_state, torch.where(ok, ctx_state.to(h_state), state[0, :, self.hidden:])], -1)
            state = h_state.unsqueeze(0)
        else:
            h = self.body(h)
        return self._outputs(h), state

    def config(self) -> dict:
        """What rebuilds this head (``TimingHead(**config)``)."""
        return {"input_dim": self.norm.normalized_shape[0], "hidden": self.hidden, "kind": self.kind,
                "direct": self.direct, "text_vocab": self.text.num_embeddings if self.text is not None else 0,
                "text_dim": self.text.embedding_dim if self.text is not None else 16, "context": self.context,
                "onset": self.onset is not None}


def focal_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None = None,
                        gamma: float = 0.0) -> Tensor:
    """``sum_i w_{y_i} (1 - p_i)^gamma (-log p_i) / sum_i w_{y_i}`` over frames with a target (negative
    targets, e.g. -100 or -1, are ignored); with ``gamma = 0`` this is ``F.cross_entropy(logits, target,
    weight)``. ``logits [N, C]``, ``target [N]``; returns 0 (with a graph) when no frame has a target."""
    target = target.long()
    valid = target >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits, target = logits[valid], target[valid]
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
    w = weight.to(logp)[target] if weight is not None else torch.ones_like(logp)
    loss = -w * logp
    if gamma:
        loss = loss * (1.0 - logp.exp()).clamp(min=0.0) ** gamma
    return loss.sum() / w.sum()


def head_loss(action_logits: Tensor, type_logits: Tensor, action: Tensor, bc_type: Tensor,
              class_weights: Tensor | None = None, focal_gamma: float = 0.0,
              type_weights: Tensor | None = None, type_loss_weight: float = 1.0, onset_logits: Tensor | None = None,
              onset: Tensor | None = None, onset_loss_weight: float = 1.0) -> dict[str, Tensor]:
    """Action loss over all labelled frames plus type loss on BACKCHANNEL frames only, plus (with
    ``onset_logits``) the binary cross-entropy of the onset output on frames with an ``onset`` target (1:
    the listener's current speech is a backchannel, 0: a take-turn; negative: none), class-balanced.

    ``action_logits [..., 3]``, ``type_logits [..., 5]``, ``action [...]`` (negative = ignore),
    ``bc_type [...]`` (``lexicon.BC_TYPE_INDEX`` of the upcoming backchannel; negative where none, as
    the dataset's -1). Labels may be any integer dtype (the dataset stores int8).
    ``class_weights [3]`` and ``type_weights [5]`` weight the classes; ``focal_gamma > 0`` adds the
    focal term to both. Returns ``{"loss", "action_loss", "type_loss"}``.
    """
    action, bc_type = action.reshape(-1).long(), bc_type.reshape(-1).long()
    action_loss = focal_cross_entropy(action_logits.reshape(-1, action_logits.shape[-1]), action,
                                      class_weights, focal_gamma)
    type_target = torch.where((action == BACKCHANNEL) & (bc_type >= 0), bc_type, IGNORE_INDEX)
    type_loss = focal_cross_entropy(type_logits.reshape(-1, type_logits.shape[-1]), type_target,
                                    type_weights, focal_gamma)
    loss = action_loss + type_loss_weight * type_loss
    out = {"action_loss": action_loss, "type_loss": type_loss}
    if onset_logits is not None and onset is not None:
        y = onset.reshape(-1).long()
        keep = y >= 0
        z = onset_logits.reshape(-1)[keep].float()
        y = y[keep].float()
        if len(y):
            pos = y.sum().clamp(min=1.0)
            neg = (1 - y).sum().clamp(min=1.0)
            w = torch.where(y > 0, 0.5 / pos, 0.5 / neg)  # each class carries half the loss
            out["onset_loss"] = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * w).sum()
        else:
            out["onset_loss"] = onset_logits.sum() * 0.0
        loss = loss + onset_loss_weight * out["onset_loss"]
    return {"loss": loss, **out}


def inverse_frequency_weights(labels, n_classes: int, power: float = 1.0) -> Tensor:
    """Class weights ``(N / (C n_c))^power`` from labels (negative labels ignored; unseen classes get 0)."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    return count_weights(torch.bincount(labels[labels >= 0], minlength=n_classes), power)


def count_weights(counts, power: float = 1.0) -> Tensor:
    """Class weights ``(N / (C n_c))^power`` from per-class counts ``n_c`` (``[C]``; unseen classes get 0)."""
    counts = torch.as_tensor(counts).reshape(-1).double()
    n_classes = len(counts)
    w = (counts.sum() / (n_classes * counts.clamp(min=1))) ** power
    w = torch.where(counts > 0, w, torch.zeros_like(w))
    return w.float()
