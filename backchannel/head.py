"""The timing head: per 80 ms frame, action logits (SILENT, BACKCHANNEL, TAKE_TURN) and backchannel
type logits (``lexicon.BC_TYPES``), on top of frozen backbone states or raw frame features.

Class imbalance (most frames are SILENT) is handled explicitly in :func:`head_loss`: per-class
weights (e.g. :func:`inverse_frequency_weights`) and/or the focal loss of Lin et al. (2017).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backchannel.corpora.events import ACTIONS, BACKCHANNEL
from backchannel.lexicon import BC_TYPES

IGNORE_INDEX = -100


class TimingHead(nn.Module):
    """``kind="gru"``: LayerNorm -> one GRU layer -> two linear outputs (carries a hidden state in
    ``step``); ``kind="mlp"``: LayerNorm -> Linear -> GELU -> two linear outputs (frame-wise).

    ``forward(x [B, T, input_dim]) -> (action_logits [B, T, 3], type_logits [B, T, 5])``.
    """

    def __init__(self, input_dim: int, hidden: int = 64, kind: str = "gru", dropout: float = 0.0,
                 n_actions: int = len(ACTIONS), n_types: int = len(BC_TYPES)):
        super().__init__()
        if kind not in ("gru", "mlp"):
            raise ValueError(f"head kind must be 'gru' or 'mlp', got {kind!r}")
        self.kind, self.hidden = kind, hidden
        self.norm = nn.LayerNorm(input_dim)
        if kind == "gru":
            self.body = nn.GRU(input_dim, hidden, batch_first=True)
        else:
            self.body = nn.Sequential(nn.Linear(input_dim, hidden), nn.GELU())
        self.drop = nn.Dropout(dropout)
        self.action = nn.Linear(hidden, n_actions)
        self.bc_type = nn.Linear(hidden, n_types)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.norm(x)
        h = self.body(h)[0] if self.kind == "gru" else self.body(h)
        h = self.drop(h)
        return self.action(h), self.bc_type(h)

    def init_state(self, batch_size: int = 1) -> Tensor | None:
        """GRU hidden ``[1, B, hidden]`` of zeros (``None`` for the MLP)."""
        if self.kind == "mlp":
            return None
        w = self.action.weight
        return torch.zeros(1, batch_size, self.hidden, device=w.device, dtype=w.dtype)

    @torch.inference_mode()
    def reset(self, state: Tensor | None, mask) -> None:
        """Zero the hidden state of the streams where ``mask`` (bool ``[B]``) is true."""
        if state is not None:
            state[:, torch.as_tensor(mask, dtype=torch.bool).reshape(-1)] = 0

    @torch.inference_mode()
    def step(self, state: Tensor | None, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """One frame ``x [B, input_dim]`` -> ``(action_logits [B, 3], type_logits [B, 5], state)``. A stream
        whose new hidden state is not finite keeps its old one (one bad frame costs that frame only)."""
        h = self.norm(x)
        if self.kind == "gru":
            g = self.body
            h = torch.gru_cell(h, state[0], g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
            ok = torch.isfinite(h).all(dim=-1, keepdim=True)
            state = torch.where(ok, h, state[0]).unsqueeze(0)
        else:
            h = self.body(h)
        return self.action(h), self.bc_type(h), state


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
              type_weights: Tensor | None = None, type_loss_weight: float = 1.0) -> dict[str, Tensor]:
    """Action loss over all labelled frames plus type loss on BACKCHANNEL frames only.

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
    return {"loss": loss, "action_loss": action_loss, "type_loss": type_loss}


def inverse_frequency_weights(labels, n_classes: int, power: float = 1.0) -> Tensor:
    """Class weights ``(N / (C n_c))^power`` from label counts (negative labels ignored; unseen classes
    get 0)."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    labels = labels[labels >= 0]
    counts = torch.bincount(labels, minlength=n_classes).double()
    w = (counts.sum() / (n_classes * counts.clamp(min=1))) ** power
    w = torch.where(counts > 0, w, torch.zeros_like(w))
    return w.float()
