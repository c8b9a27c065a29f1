"""The ``moshi`` backbone: hidden state of Moshi's temporal transformer at each 80 ms step
(transformers' ``MoshiForConditionalGeneration``), frozen.

Moshi (Défossez et al. 2024) models two audio streams and a text stream at 12.5 Hz. Its temporal
transformer sums, per step, the embeddings of one text token (the "inner monologue") and of
``num_codebooks`` Mimi codes for each audio stream. We cast the *listener* as Moshi (its audio is
the "moshi" stream, its words the text stream) and the *speaker* as the user (the "user" stream).

Input layout, as in Moshi's training and ``generate``:

- step 0 is the initial step (text id ``vocab_size``, every audio code ``audio_vocab_size``); its
  output is dropped, so output ``t`` belongs to frame ``t``;
- **codebook delay pattern**: at frame ``t`` the semantic codebook 0 carries frame ``t`` and the
  acoustic codebooks ``1..K-1`` carry frame ``t-1`` (initial token at ``t = 0``), built with
  transformers' own ``MoshiForConditionalGeneration.build_delay_pattern_mask``;
- attention: causal within ``config.sliding_window`` steps (3000 = 4 min for Moshi, the context of
  its ring KV cache), in ``forward`` by an explicit mask, in ``step`` by the sliding KV cache.

Output ``t`` has seen the text and semantic codes of frames ``<= t`` and the acoustic codes of
frames ``< t``, so it is available at the end of frame ``t`` (causal on our frame clock).

Real weights (transformers format): ``MoshiBackbone.from_pretrained("kmhf/hf-moshiko")`` (or
``kmhf/hf-moshika``; hidden size 4096, 8 codebooks per stream, bf16 ~15 GB). The ``kyutai/moshiko-*``
repositories hold the ``moshi`` package's format, not loadable here. The text stream must then use
Moshi's SentencePiece tokenizer, e.g. ``tok = AutoTokenizer.from_pretrained("kmhf/hf-moshiko")`` and
``moshi_text_stream(words_per_frame, lambda s: tok.encode(s, add_special_tokens=False))``.
Tests use :meth:`MoshiBackbone.tiny` (random weights, nothing downloaded).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import MoshiConfig, MoshiForConditionalGeneration

from backchannel.backbones.mimi import SAMPLES_PER_FRAME, tiny_mimi_config

TEXT_PAD_ID = 3  # Moshi's text padding token ("existing_text_padding_id")
TEXT_EPAD_ID = 0  # end-of-padding token, announces a word


def moshi_text_stream(frames: Sequence[str], tokenize: Callable[[str], Sequence[int]], epad: bool = True,
                      pad_id: int = TEXT_PAD_ID, epad_id: int = TEXT_EPAD_ID) -> Tensor:
    """Moshi's one-token-per-frame text stream ``[n_frames]`` from the per-frame visible words.

    The words of frame ``t`` (``""`` if none) are tokenised together; with ``epad`` the first free
    frame ``>= t`` gets EPAD and the tokens follow one per frame (Moshi's format: EPAD, then the
    word pieces), without it the tokens start at the first free frame ``>= t``. Frames are never
    filled before the words are visible (causal); tokens running past the end are dropped; all
    other frames are PAD.
    """
    out = torch.full((len(frames),), pad_id, dtype=torch.long)
    free = 0
    for t, text in enumerate(frames):
        if not text or not text.strip():
            continue
        tokens = ([epad_id] if epad else []) + list(tokenize(text))
        start = max(t, free)
        for i, tok in enumerate(tokens[: max(0, len(frames) - start)]):
            out[start + i] = tok
        free = start + len(tokens)
    return out


@dataclass
class MoshiState:
    """Streaming state: the decoder's KV cache, the previous frame's codes (for the acoustic
    delay) ``[B, 2, K]`` and the number of frames consumed ``t``."""

    cache: Any
    prev_codes: Tensor
    t: int = 0


class MoshiBackbone(nn.Module):
    """Frozen Moshi temporal transformer; ``hidden_size = config.hidden_size``.

    ``layer``: ``None`` = the last hidden state (after the final norm, what the text head and the
    depth transformer read); an int ``i`` = transformers' ``hidden_states[i]``: 0 = the summed input
    embeddings, ``i`` = after ``i`` decoder layers (the last entry equals the last hidden state).
    """

    def __init__(self, model: MoshiForConditionalGeneration, layer: int | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        cfg = model.config
        self.layer = layer
        self.num_codebooks = cfg.num_codebooks
        self.hidden_size = cfg.hidden_size
        self.window = cfg.sliding_window
        self.text_initial_id = cfg.vocab_size
        self.audio_initial_id = cfg.audio_vocab_size

    @classmethod
    def from_pretrained(cls, path_or_id: str = "kmhf/hf-moshiko", layer: int | None = None,
                        **kwargs) -> MoshiBackbone:
        """Load a transformers-format Moshi checkpoint (hub id or local folder); kwargs go to
        ``MoshiForConditionalGeneration.from_pretrained`` (e.g. ``dtype=torch.bfloat16``, ``device_map``)."""
        return cls(MoshiForConditionalGeneration.from_pretrained(path_or_id, **kwargs), layer=layer)

    @classmethod
    def tiny(cls, seed: int = 0, layer: int | None = None, **overrides) -> MoshiBackbone:
        """A tiny random-weight Moshi (hidden 32, 2 layers, 3 codebooks, window 8) for tests/examples."""
        torch.manual_seed(seed)
        return cls(MoshiForConditionalGeneration(tiny_moshi_config(**overrides)), layer=layer)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: stays in eval mode inside a training LightningModule
        return self

    @property
    def _dtype(self) -> torch.dtype:
        return self.model.decoder.lm_head.weight.dtype

    # ------------------------------------------------------------------ inputs

    @torch.no_grad()
    def encode_audio(self, audio: Tensor) -> Tensor:
        """Mimi codes ``[B, 2, K, n_frames]`` of 24 kHz audio ``[B, 2, samples]`` (listener, speaker),
        zero-padded to whole 80 ms frames, with Moshi's own audio encoder."""
        if audio.dim() != 3 or audio.shape[1] != 2:
            raise ValueError(
                f"MoshiBackbone expects audio [batch, 2, samples] at 24 kHz, got {tuple(audio.shape)}"
            )
        B, C, S = audio.shape
        n = -(-S // SAMPLES_PER_FRAME)
        enc = self.model.audio_encoder
        x = F.pad(audio, (0, n * SAMPLES_PER_FRAME - S)).reshape(B * C, 1, -1)
        x = x.to(next(enc.parameters()).dtype)
        codes = enc.encode(x, num_quantizers=self.num_codebooks).audio_codes  # [B*C, K, n]
        return codes.view(B, C, self.num_codebooks, -1)

    def delay(self, codes: Tensor) -> Tensor:
        """Apply Moshi's codebook delay to codes ``[B, 2, K, T]`` (codebook 0 undelayed, the others one
        frame late, initial token in front)."""
        B, C, K, T = codes.shape
        v = self.audio_initial_id
        delayed, _ = self.model.build_delay_pattern_mask(codes.reshape(B * C, K, T), bos_token_id=v,
                                                         pad_token_id=v, max_length=T + 1)
        return delayed.view(B, C, K, T)

    def _check(self, text_ids: Tensor, codes: Tensor, streaming: bool) -> None:
        want_text, want_codes = ("[B]", "[B, 2, K]") if streaming else ("[B, T]", "[B, 2, K, T]")
        lead = tuple(text_ids.shape)
        ok_text = text_ids.dim() == (1 if streaming else 2)
        want = (lead[:1] + (2, self.num_codebooks) + lead[1:]) if ok_text else None
        if want is None or tuple(codes.shape) != want:
            raise ValueError(
                f"MoshiBackbone: text_ids {lead} and codes {tuple(codes.shape)} do not match; "
                f"expected text_ids {want_text} and codes {want_codes} with K = {self.num_codebooks}"
            )

    def _hidden(self, out) -> Tensor:
        h = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        return h.float()

    # ------------------------------------------------------------------ batched

    @torch.no_grad()
    def forward(self, text_ids: Tensor, codes: Tensor) -> Tensor:
        """Hidden ``[B, T, hidden_size]`` from text ids ``[B, T]`` (Moshi vocabulary, see
        :func:`moshi_text_stream`) and undelayed Mimi codes ``[B, 2, K, T]`` (listener, speaker).
        Attention memory grows with ``T^2``; split very long dialogues or use ``step``."""
        self._check(text_ids, codes, streaming=False)
        B, T = text_ids.shape
        dev = text_ids.device
        init_text = torch.full((B, 1), self.text_initial_id, device=dev, dtype=torch.long)
        text = torch.cat([init_text, text_ids], 1)
        audio = torch.cat([torch.full((B, 2, self.num_codebooks, 1), self.audio_initial_id, device=dev,
                                      dtype=torch.long), self.delay(codes)], -1)
        pos = torch.arange(T + 1, device=dev)
        dist = pos[:, None] - pos[None, :]
        allowed = (dist >= 0) & (dist < self.window)
        mask = torch.zeros(T + 1, T + 1, device=dev, dtype=self._dtype)
        mask = mask.masked_fill(~allowed, torch.finfo(self._dtype).min)[None, None]
        out = self.model(input_ids=text, moshi_audio_codes=audio[:, 0], user_audio_codes=audio[:, 1],
                         attention_mask=mask, decoder_position_ids=pos[None], use_cache=False,
                         output_hidden_states=self.layer is not None)
        return self._hidden(out)[:, 1:]

    @torch.no_grad()
    def forward_audio(self, audio: Tensor, text_ids: Tensor) -> Tensor:
        """:meth:`forward` on 24 kHz audio ``[B, 2, samples]``, encoded with Moshi's Mimi."""
        return self(text_ids, self.encode_audio(audio))

    # ------------------------------------------------------------------ streaming

    @torch.no_grad()
    def init_state(self, batch_size: int = 1) -> MoshiState:
        """A fresh state that has consumed Moshi's initial step. Reset = a new state."""
        dev = self.model.decoder.lm_head.weight.device
        prev = torch.full((batch_size, 2, self.num_codebooks), self.audio_initial_id, device=dev,
                          dtype=torch.long)
        state = MoshiState(cache=None, prev_codes=prev, t=0)
        text = torch.full((batch_size,), self.text_initial_id, device=dev, dtype=torch.long)
        self._run(state, text, prev, position=0)
        return state

    def reset(self, state: MoshiState, mask) -> None:
        """Restart the streams where ``mask`` is true. Moshi's KV cache and positions are shared by the batch,
        so only all streams at once can restart (in place); a partial mask is refused."""
        mask = torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
        if not bool(mask.any()):
            return
        if not bool(mask.all()):
            raise ValueError("MoshiBackbone: its batch shares one KV cache; reset all streams together "
                             "(or run one backbone per session)")
        fresh = self.init_state(len(mask))
        state.cache, state.prev_codes, state.t = fresh.cache, fresh.prev_codes, fresh.t

    def _run(self, state: MoshiState, text_id: Tensor, audio: Tensor, position: int) -> Tensor:
        pos = torch.tensor([[position]], device=text_id.device)
        out = self.model(input_ids=text_id[:, None], moshi_audio_codes=audio[:, 0, :, None],
                         user_audio_codes=audio[:, 1, :, None], past_key_values=state.cache, use_cache=True,
                         decoder_position_ids=pos, output_hidden_states=self.layer is not None)
        state.cache = out.past_key_values
        return self._hidden(out)[:, 0]

    @torch.no_grad()
    def step(self, state: MoshiState, text_id: Tensor, codes: Tensor) -> tuple[Tensor, MoshiState]:
        """One frame: text id ``[B]`` and undelayed codes ``[B, 2, K]`` -> hidden ``[B, hidden_size]``."""
        self._check(text_id, codes, streaming=True)
        audio = torch.cat([codes[:, :, :1], state.prev_codes[:, :, 1:]], dim=-1)  # the acoustic delay
        state.prev_codes = codes
        hidden = self._run(state, text_id, audio, position=state.t + 1)
        state.t += 1
        return hidden, state


def tiny_moshi_config(**overrides) -> MoshiConfig:
    """A valid, tiny Moshi config (text vocab 50, hidden 32, 2 layers, 3 codebooks, window 8 steps)."""
    kwargs = dict(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
        num_codebooks=3, sliding_window=8, max_position_embeddings=64,
        audio_encoder_config=tiny_mimi_config().to_dict(),
        depth_decoder_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
                                  sliding_window=4, max_position_embeddings=4),
    )
    kwargs.update(overrides)
    return MoshiConfig(**kwargs)
