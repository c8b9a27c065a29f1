"""The ``timing`` backbone: a small causal transformer over both parties' voice activity, prosody
and text, pretrained with the Voice Activity Projection objective (Ekstedt & Skantze 2022).

Inputs: ``backchannel.inputs.FrameInputs`` (or a dict with its keys), ``[B, T]`` sequences for
``forward`` and one frame ``[B]`` for ``step``. Sequences in a batch may be padded at the end: the model
is causal, so padding never changes earlier outputs (give padded frames VAP target -100).

Attention is causal within a sliding window of ``window`` frames (the frame itself and the
``window - 1`` before it) with ALiBi position biases, which depend only on the distance between
frames, so the batched ``forward`` (block-wise sliding-window attention) and the streaming ``step``
(ring-buffer KV cache holding the last ``window`` frames, one write slot per stream) compute the same
function at any length. The streaming state is per stream: ``reset(state, mask)`` restarts some streams
of a batch and leaves the others as they are.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backchannel.frames import FRAME_S, PROSODY_DIM
from backchannel.inputs import FrameInputs
from backchannel.text import VOCAB_SIZE, WORDS_PER_FRAME

N_FRAME_FEATURES = 2 + 2 * PROSODY_DIM
IGNORE_INDEX = -100


# --------------------------------------------------------------------------- frame features

class FrameFeatures(nn.Module):
    """Per-frame feature vector ``[va_listener, va_speaker, prosody (normalised, 0 where masked), mask]``
    (``N_FRAME_FEATURES`` = 18 values). Masked prosody values never reach the output, NaN included.

    Prosody is normalised with per-column ``shift``/``scale`` buffers (identity until :meth:`fit`).
    Also usable as the no-backbone "raw" ablation: it has ``hidden_size``, ``init_state`` and ``step``.
    """

    hidden_size = N_FRAME_FEATURES

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.zeros(PROSODY_DIM))
        self.register_buffer("scale", torch.ones(PROSODY_DIM))

    @torch.no_grad()
    def fit(self, prosody, prosody_mask) -> None:
        """Set shift/scale to the masked mean/std of each prosody column (any leading shape ``[..., 8]``)."""
        x = torch.as_tensor(np.asarray(prosody), dtype=torch.float64).reshape(-1, PROSODY_DIM)
        m = torch.as_tensor(np.asarray(prosody_mask), dtype=torch.bool).reshape(-1, PROSODY_DIM)
        x = torch.where(m, x, torch.zeros((), dtype=x.dtype))
        n = m.sum(0)
        mean = x.sum(0) / n.clamp(min=1)
        var = (torch.where(m, x - mean, torch.zeros((), dtype=x.dtype)) ** 2).sum(0) / n.clamp(min=1)
        has = n > 0
        self.shift.copy_(torch.where(has, mean, torch.zeros_like(mean)).float())
        self.scale.copy_(torch.where(has, var.sqrt().clamp(min=1e-3), torch.ones_like(var)).float())

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        mask = inputs["prosody_mask"].bool()
        prosody = torch.where(mask, (inputs["prosody"] - self.shift) / self.scale, 0.0)
        va = torch.stack([inputs["va_listener"], inputs["va_speaker"]], dim=-1)
        return torch.cat([va.to(prosody.dtype), prosody, mask.to(prosody.dtype)], dim=-1)

    def init_state(self, batch_size: int):
        return None

    def reset(self, state, mask) -> None:
        return None

    def step(self, state, frame: Mapping[str, Tensor]):
        return self(frame), state


# --------------------------------------------------------------------------- transformer

@dataclass
class TimingConfig:
    """Sizes of :class:`TimingBackbone`. ``window`` in frames (256 = 20.48 s)."""

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    window: int = 256
    mlp_ratio: int = 4
    vocab_size: int = VOCAB_SIZE
    text_k: int = WORDS_PER_FRAME
    use_text: bool = True
    dropout: float = 0.0


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi slopes ``2^(-8 (h+1) / n_heads)`` (Press et al. 2022), one per head."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, window: int) -> Tensor:
    """Causal attention of each frame over itself and the ``window - 1`` frames before it, with ALiBi.

    ``q, k, v``: ``[B, H, T, Dh]``. Computed block-wise (blocks of ``S = min(window, T)`` queries
    against their ``S + window`` candidate keys), so memory is ``O(T * window)``, not ``O(T^2)``.
    """
    B, H, T, Dh = q.shape
    S = min(window, T)
    n = -(-T // S)
    pad = n * S - T
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    kb = F.pad(k, (0, 0, window, 0)).unfold(2, S + window, S).transpose(-1, -2)  # [B, H, n, S+W, Dh]
    vb = F.pad(v, (0, 0, window, 0)).unfold(2, S + window, S).transpose(-1, -2)
    qb = q.view(B, H, n, S, Dh)
    a = torch.arange(S, device=q.device)[:, None]
    b = torch.arange(S + window, device=q.device)[None, :]
    dist = a + window - b  # query frame minus key frame, [S, S+W]
    key_frame = torch.arange(n, device=q.device)[:, None, None] * S - window + b  # [n, 1, S+W]
    allowed = (dist >= 0) & (dist < window) & (key_frame >= 0)  # [n, S, S+W]
    bias = -slopes.to(q.dtype)[:, None, None, None] * dist.to(q.dtype)  # [H, 1, S, S+W]
    mask = bias.masked_fill(~allowed, float("-inf"))  # [H, n, S, S+W]
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)
    return out.reshape(B, H, n * S, Dh)[:, :, :T]


class Block(nn.Module):
    """Pre-norm transformer block: sliding-window ALiBi self-attention, then a GELU (tanh) MLP."""

    def __init__(self, cfg: TimingConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.head_dim = cfg.n_heads, d // cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        hidden = cfg.mlp_ratio * d
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, slopes: Tensor, window: int) -> Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = sliding_window_attention(q, k, v, slopes, window)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, d)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def step(self, x: Tensor, k_cache: Tensor, v_cache: Tensor, slot: int | Tensor, bias: Tensor) -> Tensor:
        """One frame: ``x`` ``[B, d]``; caches ``[B, H, W, Dh]`` written at ``slot`` (one int for all streams,
        or int64 ``[B]``, one per stream); bias ``[B or 1, H, 1, W]``.

        Same math as ``forward``, written with functional calls to keep per-frame overhead low."""
        B, d = x.shape
        ln1, ln2, fc1, fc2 = self.ln1, self.ln2, self.mlp[0], self.mlp[2]
        h = F.layer_norm(x, (d,), ln1.weight, ln1.bias, ln1.eps)
        qkv = F.linear(h, self.qkv.weight, self.qkv.bias)
        q, k, v = qkv.view(B, 3, self.n_heads, self.head_dim).unbind(1)
        if isinstance(slot, int):
            k_cache[:, :, slot] = k
            v_cache[:, :, slot] = v
        else:
            rows = torch.arange(B, device=x.device)
            k_cache[rows, :, slot] = k
            v_cache[rows, :, slot] = v
        att = F.scaled_dot_product_attention(q.unsqueeze(2), k_cache, v_cache, attn_mask=bias)
        x = x + F.linear(att.view(B, d), self.proj.weight, self.proj.bias)
        h = F.layer_norm(x, (d,), ln2.weight, ln2.bias, ln2.eps)
        h = F.gelu(F.linear(h, fc1.weight, fc1.bias), approximate="tanh")
        return x + F.linear(h, fc2.weight, fc2.bias)


@dataclass
class TimingState:
    """Streaming state of :class:`TimingBackbone`: ring-buffer KV cache ``[L, B, H, W, Dh]`` and the
    frames consumed per stream ``t`` (int64 ``[B]``). Reset = ``TimingBackbone.reset`` (per stream) or a
    new state from ``init_state``."""

    k: Tensor
    v: Tensor
    t: Tensor


class TimingBackbone(nn.Module):
    """Causal sliding-window transformer over per-frame timing features; ``hidden_size = d_model``."""

    def __init__(self, config: TimingConfig | None = None, **overrides):
        super().__init__()
        cfg = config or TimingConfig()
        if overrides:
            cfg = TimingConfig(**{**asdict(cfg), **overrides})
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        self.config = cfg
        self.hidden_size = cfg.d_model
        self.features = FrameFeatures()
        self.in_proj = nn.Linear(N_FRAME_FEATURES, cfg.d_model)
        if cfg.use_text:
            self.text_listener = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=0)
            self.text_speaker = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=0)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        slopes = alibi_slopes(cfg.n_heads)
        self.register_buffer("slopes", slopes, persistent=False)
        # Step biases per ring slot p: age of slot j is (p - j) mod W; before the ring is full
        # (t < W, slot p = t) slots j > p are still empty.
        W = cfg.window
        p, j = torch.arange(W)[:, None], torch.arange(W)[None, :]
        full = -slopes[None, :, None] * ((p - j) % W)[:, None, :].float()  # [W, H, W]
        warm = full.masked_fill((j > p)[:, None, :], float("-inf"))
        self.register_buffer("_bias_full", full[:, None, :, None, :], persistent=False)  # [W, 1, H, 1, W]
        self.register_buffer("_bias_warm", warm[:, None, :, None, :], persistent=False)

    def embed(self, inputs: Mapping[str, Tensor], skip_empty_text: bool = False) -> Tensor:
        """Input embedding ``[..., d]``: projected frame features plus, per party, the sum of the
        text-token embeddings (id 0 embeds to zero, so a frame without words adds nothing; with
        ``skip_empty_text`` the lookup is skipped when no id is set, which saves time in ``step``)."""
        x = self.in_proj(self.features(inputs))
        ids = inputs.get("text_ids") if self.config.use_text else None
        if ids is not None and not (skip_empty_text and not bool(ids.any())):
            x = x + self.text_listener(ids[..., 0, :]).sum(-2) + self.text_speaker(ids[..., 1, :]).sum(-2)
        return x

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Hidden states ``[B, T, d]`` for whole (end-padded) sequences."""
        FrameInputs.check_shapes(inputs, "timing backbone inputs", dims=2)
        x = self.drop(self.embed(inputs))
        for block in self.blocks:
            x = block(x, self.slopes, self.config.window)
        return self.norm(x)

    @torch.inference_mode()
    def init_state(self, batch_size: int = 1) -> TimingState:
        """A fresh (empty) streaming state for ``batch_size`` parallel streams."""
        cfg = self.config
        shape = (cfg.n_layers, batch_size, cfg.n_heads, cfg.window, cfg.d_model // cfg.n_heads)
        dev, dtype = self.in_proj.weight.device, self.in_proj.weight.dtype
        return TimingState(torch.zeros(shape, device=dev, dtype=dtype), torch.zeros(shape, device=dev, dtype=dtype),
                           torch.zeros(batch_size, dtype=torch.long, device=dev))

    @torch.inference_mode()
    def reset(self, state: TimingState, mask) -> None:
        """Restart the streams where ``mask`` (bool ``[B]``) is true; the others are untouched."""
        mask = torch.as_tensor(mask, dtype=torch.bool, device=state.t.device).reshape(-1)
        state.k[:, mask] = 0
        state.v[:, mask] = 0
        state.t[mask] = 0

    @torch.inference_mode()
    def step(self, state: TimingState, frame: Mapping[str, Tensor]) -> tuple[Tensor, TimingState]:
        """Consume one frame (inputs without the ``T`` axis); return hidden ``[B, d]`` (an inference
        tensor, no autograd) and the state, updated in place. A stream whose hidden state is not finite
        does not advance: its next frame overwrites the slot, so one bad frame costs that frame only."""
        W = self.config.window
        t = state.t
        if len(t) == 1:  # one stream: plain int slot and bias (the per-frame fast path)
            t0 = int(t[0])
            slot, bias = t0 % W, (self._bias_warm if t0 < W else self._bias_full)[t0 % W]
        else:
            slot = t % W
            bias = torch.where((t < W)[:, None, None, None], self._bias_warm[slot, 0], self._bias_full[slot, 0])
        x = self.embed(frame, skip_empty_text=True)
        for i, block in enumerate(self.blocks):
            x = block.step(x, state.k[i], state.v[i], slot, bias)
        hidden = self.norm(x)
        state.t += torch.isfinite(hidden).all(dim=-1).long()
        return hidden, state


# --------------------------------------------------------------------------- VAP objective

VAP_BIN_TIMES = (0.2, 0.4, 0.6, 0.8)


def vap_bin_weights(bin_times=VAP_BIN_TIMES) -> np.ndarray:
    """Matrix ``[horizon_frames, n_bins]``: row ``j`` (the ``j``-th frame after the current one) holds
    the share of each bin covered by that frame divided by the bin length, so that
    ``window @ weights`` is the mean voice activity of each bin.

    Bins are exact time intervals: at 12.5 Hz the 0.2 s bin covers 2.5 frames, so a frame on a bin
    edge counts half in each bin (the VAP repo instead truncates bin lengths to whole frames, which is
    the same at its 50 Hz). Horizon: ``ceil(sum(bin_times) / 0.08)`` = 25 frames (2 s).
    """
    edges = np.round(np.concatenate([[0.0], np.cumsum(bin_times)]) / FRAME_S, 9)
    horizon = math.ceil(edges[-1] - 1e-9)
    w = np.zeros((horizon, len(bin_times)))
    for j in range(horizon):
        for b in range(len(bin_times)):
            w[j, b] = max(0.0, min(j + 1, edges[b + 1]) - max(j, edges[b])) / (edges[b + 1] - edges[b])
    return w


def vap_targets(va_listener, va_speaker, bin_times=VAP_BIN_TIMES, threshold: float = 0.5,
                lengths=None) -> Tensor:
    """VAP class per frame, int64 ``[..., n]`` (inputs ``[..., n]``, fraction voiced per frame; numpy or
    torch on any device).

    For frame ``t`` the projection window is frames ``t+1 .. t+horizon``; bin ``b`` of a party is active
    when its mean voice activity is ``>= threshold`` (VAP repo convention). Class index
    ``sum_b listener_b 2^b + sum_b speaker_b 2^(n_bins + b)`` (listener = VAP channel 0).
    Frames whose window runs past the last frame get ``-100`` (ignored by the loss); for end-padded
    batches pass ``lengths [B]`` (frames) so that windows reaching into the padding are ignored too.
    """
    va = torch.stack([torch.as_tensor(va_listener, dtype=torch.float64),
                      torch.as_tensor(va_speaker, dtype=torch.float64)], dim=-1)  # [..., n, 2]
    weights = torch.as_tensor(vap_bin_weights(bin_times), device=va.device)
    horizon, n_bins = weights.shape
    n = va.shape[-2]
    out = torch.full(va.shape[:-1], IGNORE_INDEX, dtype=torch.long, device=va.device)
    if n <= horizon:
        return out
    windows = va[..., 1:, :].unfold(-2, horizon, 1)  # [..., n - horizon, 2, horizon]
    active = (windows @ weights) >= threshold - 1e-9  # [..., n - horizon, 2, n_bins]
    bits = 2 ** torch.arange(2 * n_bins, device=va.device).view(2, n_bins)
    out[..., : n - horizon] = (active.long() * bits).sum((-1, -2))
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=va.device)
        too_late = torch.arange(n, device=va.device) >= (lengths[..., None] - horizon)
        out = out.masked_fill(too_late, IGNORE_INDEX)
    return out


def vap_states(n_bins: int = 4) -> Tensor:
    """Binary bin activity of every class, ``[2^(2 n_bins), 2, n_bins]`` (party 0 = listener)."""
    idx = torch.arange(2 ** (2 * n_bins))
    bits = (idx[:, None] >> torch.arange(2 * n_bins)) & 1
    return bits.view(-1, 2, n_bins).float()


class VAPHead(nn.Module):
    """Linear map from backbone hidden ``[..., d]`` to VAP logits ``[..., 2^(2 n_bins)]`` (256)."""

    def __init__(self, d: int, n_bins: int = 4):
        super().__init__()
        self.n_bins = n_bins
        self.proj = nn.Linear(d, 2 ** (2 * n_bins))

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(hidden)


def vap_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over frames with a target (``-100`` ignored); 0 if there is none."""
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    if not bool((targets != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)


def vap_next_speaker(probs: Tensor, from_bin: int, to_bin: int) -> Tensor:
    """Listener's share of the expected activity in bins ``from_bin..to_bin`` (VAP's
    ``probs_next_speaker_aggregate`` for channel 0): ``E[listener] / (E[listener] + E[speaker])``."""
    n_bins = round(math.log2(probs.shape[-1]) / 2)
    states = vap_states(n_bins).to(probs)[:, :, from_bin : to_bin + 1].sum(-1)  # [C, 2]
    expected = probs @ states  # [..., 2]
    return expected[..., 0] / (expected.sum(-1) + 1e-5)


def vap_zero_shot(logits: Tensor) -> dict[str, Tensor]:
    """VAP zero-shot probabilities from logits ``[..., 256]`` (each output ``[...]``):

    - ``p_now``: listener's share of activity in bins 0-1 (next 0.6 s). In a mutual silence after the
      speaker's speech this is p(shift to the listener); p(hold) = 1 - p_now.
    - ``p_future``: the same over bins 2-3 (0.6-2 s), for shift prediction during speech.
    - ``p_backchannel``: probability mass of the classes where the listener is active in some of the
      first bins but not the last one while the speaker is active in the last bin (VAP's
      short-response subset: ``A |__|--|--|__|`` / ``B |__|__|__|--|``).
    """
    probs = logits.float().softmax(-1)
    n_bins = round(math.log2(probs.shape[-1]) / 2)
    states = vap_states(n_bins).to(probs.device)
    bc = (states[:, 0, :-1].amax(-1) > 0) & (states[:, 0, -1] == 0) & (states[:, 1, -1] > 0)
    return {
        "p_now": vap_next_speaker(probs, 0, 1),
        "p_future": vap_next_speaker(probs, 2, n_bins - 1),
        "p_backchannel": probs[..., bc].sum(-1),
    }
