"""The ``mimi`` backbone: Mimi encoder latents of each audio channel, one vector per 80 ms frame.

Mimi (Défossez et al. 2024, the codec under Moshi) encodes 24 kHz audio with a causal SEANet
encoder and a causal transformer into continuous latents at 12.5 Hz, exactly our frame clock:
latent ``t`` has heard the samples ``[0, 1920 (t + 1))``, i.e. frame ``t`` up to its end. We return
the continuous latents *before* quantisation (``MimiEncoderModel.forward().latents``).

Real weights (transformers format): ``MimiBackbone.from_pretrained("kyutai/mimi")`` (hidden size
512 per channel). Tests use :meth:`MimiBackbone.tiny` (random weights, nothing downloaded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import MimiConfig, MimiModel

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 1920  # 80 ms at 24 kHz


@dataclass
class MimiState:
    """Streaming state: the encoder's convolution padding cache and transformer KV cache."""

    padding_cache: Any = None
    past_key_values: Any = None


class MimiBackbone(nn.Module):
    """Frozen Mimi encoder applied to each channel; ``hidden_size = channels * latent_dim``.

    Audio ``[B, channels, samples]`` at 24 kHz, channel 0 = listener, 1 = speaker. Output frame ``t``
    is ``[latent(listener, t), latent(speaker, t)]`` concatenated.
    """

    def __init__(self, model: MimiModel, channels: int = 2):
        super().__init__()
        cfg = model.config
        if cfg.sampling_rate != SAMPLE_RATE or cfg.frame_size != SAMPLES_PER_FRAME:
            raise ValueError(
                f"MimiBackbone needs a 24 kHz, 12.5 Hz Mimi (1920 samples per frame); this config has "
                f"sampling_rate {cfg.sampling_rate}, frame_size {cfg.frame_size}"
            )
        if model.encoder is None:
            raise ValueError("MimiBackbone needs a Mimi model with an encoder (encoder_config is None)")
        self.encoder = model.encoder.eval().requires_grad_(False)
        self.channels = channels
        self.latent_dim = cfg.hidden_size
        self.hidden_size = channels * cfg.hidden_size

    @classmethod
    def from_pretrained(cls, path_or_id: str = "kyutai/mimi", channels: int = 2, **kwargs) -> MimiBackbone:
        """Load a transformers-format Mimi checkpoint (hub id or local folder); kwargs go to
        ``MimiModel.from_pretrained`` (e.g. ``dtype``, ``device_map``)."""
        return cls(MimiModel.from_pretrained(path_or_id, **kwargs), channels=channels)

    @classmethod
    def tiny(cls, seed: int = 0, channels: int = 2) -> MimiBackbone:
        """A tiny random-weight Mimi (latent_dim 16, ~0.1 M parameters) for tests and examples."""
        torch.manual_seed(seed)
        return cls(MimiModel(tiny_mimi_config()), channels=channels)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: stays in eval mode inside a training LightningModule
        return self

    def _check_audio(self, audio: Tensor) -> None:
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise ValueError(
                f"MimiBackbone expects audio [batch, {self.channels} channels, samples] at 24 kHz, "
                f"got shape {tuple(audio.shape)}"
            )

    def _to_frames(self, latents: Tensor, batch: int) -> Tensor:
        """``[B * C, D, n]`` -> ``[B, n, C * D]``."""
        n = latents.shape[-1]
        latents = latents.view(batch, self.channels, self.latent_dim, n).permute(0, 3, 1, 2)
        return latents.reshape(batch, n, -1).float()

    @torch.no_grad()
    def forward(self, audio: Tensor, chunk_frames: int | None = None) -> Tensor:
        """Latents ``[B, n_frames, hidden_size]`` with ``n_frames = ceil(samples / 1920)`` (the audio is
        zero-padded to whole frames). ``chunk_frames``: encode in streaming chunks of that many frames
        (same result, bounded memory for long dialogues)."""
        self._check_audio(audio)
        B, C, S = audio.shape
        n = -(-S // SAMPLES_PER_FRAME)
        dtype = next(self.encoder.parameters()).dtype
        x = F.pad(audio, (0, n * SAMPLES_PER_FRAME - S)).reshape(B * C, 1, -1).to(dtype)
        if chunk_frames is None:
            latents = self.encoder(x).latents
        else:
            state, parts = MimiState(), []
            for start in range(0, n, chunk_frames):
                chunk = x[..., start * SAMPLES_PER_FRAME : (start + chunk_frames) * SAMPLES_PER_FRAME]
                parts.append(self._encode_streaming(state, chunk))
            latents = torch.cat(parts, dim=-1)
        if latents.shape[-1] != n:
            raise RuntimeError(f"Mimi returned {latents.shape[-1]} frames for {n} frames of audio")
        return self._to_frames(latents, B)

    def _encode_streaming(self, state: MimiState, x: Tensor) -> Tensor:
        out = self.encoder(x, padding_cache=state.padding_cache, past_key_values=state.past_key_values,
                           use_streaming=True)
        state.padding_cache, state.past_key_values = out.padding_cache, out.past_key_values
        return out.latents

    def init_state(self, batch_size: int = 1) -> MimiState:
        """Empty caches (created on the first step). Reset = a new state."""
        return MimiState()

    def reset(self, state: MimiState, mask) -> None:
        """Restart the streams where ``mask`` is true: all at once (Mimi's streaming caches are shared by the
        batch); a partial mask is refused."""
        mask = torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
        if bool(mask.any()) and not bool(mask.all()):
            raise ValueError("MimiBackbone: its batch shares one streaming cache; reset all streams together")
        if bool(mask.any()):
            state.padding_cache = state.past_key_values = None

    @torch.no_grad()
    def step(self, state: MimiState, audio_frame: Tensor) -> tuple[Tensor, MimiState]:
        """One frame of audio ``[B, channels, 1920]`` -> latents ``[B, hidden_size]``."""
        self._check_audio(audio_frame)
        B, C, S = audio_frame.shape
        if S != SAMPLES_PER_FRAME:
            raise ValueError(f"MimiBackbone.step expects {SAMPLES_PER_FRAME} samples per frame, got {S}")
        dtype = next(self.encoder.parameters()).dtype
        latents = self._encode_streaming(state, audio_frame.reshape(B * C, 1, S).to(dtype))
        return self._to_frames(latents, B)[:, 0], state


def tiny_mimi_config(**overrides) -> MimiConfig:
    """A valid, tiny 24 kHz / 12.5 Hz Mimi config (random-weight tests; also Moshi's tiny audio encoder)."""
    kwargs = dict(
        hidden_size=16, num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 6, 5, 4],
        codebook_size=64, codebook_dim=16, num_quantizers=4, num_semantic_quantizers=1,
        vector_quantization_hidden_dimension=16, upsample_groups=16, num_hidden_layers=1,
        intermediate_size=32, num_attention_heads=2, num_key_value_heads=2, sliding_window=6,
    )
    kwargs.update(overrides)
    return MimiConfig(**kwargs)
