"""The streaming listener inside Moshi's full-duplex loop, on transformers' ``MoshiForConditionalGeneration``.

The behaviour (forced tokens, floor rules, delays, form layout) is in :mod:`backchannel.plugin.duplex`, shared
with :mod:`backchannel.plugin.moshi_lm` (the ``moshi`` package's ``LMGen``).

The transformers loop (:class:`BackchannelMoshiHF`) mirrors ``moshi.models.LMGen``: ``step(user_codes
[B, K, 1]) -> [B, 1 + K, 1]`` (text + Moshi's audio codes of one undelayed frame, or None during the
first ``max_delay`` steps). Step ``c`` reads position ``c`` (initial tokens while ``c <= delay``, so
user frame 0 is never read, as in LMGen), samples position ``c + 1``. Real weights:
``BackchannelMoshiHF.from_pretrained(listener, forms, "kmhf/hf-moshiko")`` (bf16 ~15 GB); text
tokens from ``AutoTokenizer.from_pretrained("kmhf/hf-moshiko")``; forms' codes from
``model.audio_encoder`` (:func:`mimi_encoder`).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from .duplex import SpokenForm, adapter_control


def _cache_keyword(forward) -> str:
    """The KV-cache keyword (and output field) of a transformers ``forward``: ``cache`` since transformers
    5.x, where ``past_key_values`` is deprecated; ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def mimi_encoder(model, num_codebooks: int) -> Callable[[Tensor], Tensor]:
    """``encode`` for :func:`form_codes` from a transformers ``MimiModel`` (e.g. a Moshi model's
    ``audio_encoder``)."""

    def encode(x: Tensor) -> Tensor:
        p = next(model.parameters())
        return model.encode(x.to(p.device, p.dtype), num_quantizers=num_codebooks).audio_codes

    return encode


# ----------------------------------------------------------------------------- transformers loop


def sample_token(
    logits: Tensor, temperature: float, top_k: int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """Sample ``[B]`` from ``logits [B, V]`` (temperature, top-k; greedy when ``temperature <= 0``)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_k and top_k < probs.shape[-1]:
        p, idx = probs.topk(top_k, dim=-1)
        return idx.gather(-1, torch.multinomial(p, 1, generator=generator))[:, 0]
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class BackchannelMoshiHF:
    """Moshi's duplex loop on ``MoshiForConditionalGeneration``, one 80 ms step per :meth:`step`, with
    streaming listener(s) acting inside (see the module docstring).

    ``listeners``: one ``StreamingListener`` per batch row (a single one for batch 1); ``forms``:
    ``{form: SpokenForm}``; ``layer``: which hidden state the head reads (None: the last, after the
    final norm; ``i``: ``hidden_states[i]``, as ``MoshiBackbone(layer=i)``); sampling: ``temperature``,
    ``top_k`` for audio, ``text_temperature``, ``text_top_k`` (0 = greedy); ``generator`` seeds it.
    Remaining keywords (``duplex.CONTROL_KEYWORDS``: ``silence_codes``, ``floor``, ``yield_after``,
    ``on_decision``, ``logger``) go to :class:`DuplexControl` / :class:`FloorControl`.
    """

    def __init__(
        self,
        model,
        listeners,
        forms: Mapping[str, SpokenForm],
        *,
        layer: int | None = None,
        temperature: float = 0.8,
        top_k: int = 250,
        text_temperature: float = 0.7,
        text_top_k: int = 25,
        generator: torch.Generator | None = None,
        **control_kwargs,
    ):
        self.model = model.eval()
        cfg = model.config
        self.K = cfg.num_codebooks
        self.text_initial, self.audio_initial = cfg.vocab_size, cfg.audio_vocab_size
        own = [0] + [0] + [1] * (self.K - 1)  # text, semantic codebook 0, acoustic codebooks one step late
        self.delays = own + own[1:]  # then the user's codebooks, same pattern
        self.max_delay = max(self.delays)
        self.layer = layer
        self.temperature, self.top_k = temperature, top_k
        self.text_temperature, self.text_top_k = text_temperature, text_top_k
        self.generator = generator
        self._cache_kw = _cache_keyword(model.forward)
        self._depth_cache_kw = _cache_keyword(model.depth_decoder.forward)
        self.control, unknown = adapter_control(listeners, forms, own, text_vocab=cfg.vocab_size,
                                                audio_vocab=cfg.audio_vocab_size, **control_kwargs)
        if unknown:
            raise TypeError(f"BackchannelMoshiHF: unexpected keyword(s) {sorted(unknown)}")
        self.reset()

    @classmethod
    def from_pretrained(
        cls,
        listeners,
        forms: Mapping[str, SpokenForm],
        path_or_id: str = "kmhf/hf-moshiko",
        model_kwargs: Mapping | None = None,
        **kwargs,
    ) -> BackchannelMoshiHF:
        """Load transformers-format Moshi weights (``model_kwargs`` to ``from_pretrained``, e.g.
        ``dtype=torch.bfloat16, device_map="cuda"``)."""
        from transformers import MoshiForConditionalGeneration

        model = MoshiForConditionalGeneration.from_pretrained(path_or_id, **dict(model_kwargs or {}))
        return cls(model, listeners, forms, **kwargs)

    @property
    def batch_size(self) -> int:
        return len(self.control)

    @property
    def device(self) -> torch.device:
        return self.model.decoder.lm_head.weight.device

    def reset(self) -> None:
        """A new conversation: empty KV cache, step 0, listeners and floors reset."""
        B, C = self.batch_size, len(self.delays)
        self.t = 0
        self._cache = None
        self._ring = torch.full((B, C, self.max_delay + 2), -2, dtype=torch.long, device=self.device)
        initial = torch.full((C,), self.audio_initial, dtype=torch.long)
        initial[0] = self.text_initial
        self._initial = initial.to(self.device)
        self.last_tokens = None
        self.control.reset()

    @torch.no_grad()
    def step(self, user_codes: Tensor) -> Tensor | None:
        """One step: the user's Mimi codes ``[B, K, 1]`` of the newest frame -> the model's undelayed
        frame ``[B, 1 + K, 1]`` (text, audio codes) from ``max_delay`` steps ago, or None at first.
        ``last_tokens [B, 1 + K]`` holds what was sampled (or forced) this step, delayed layout."""
        B, K, C = self.batch_size, self.K, len(self.delays)
        if user_codes.shape != (B, K, 1):
            raise ValueError(
                f"BackchannelMoshiHF.step: user codes must be [{B}, {K}, 1], got {tuple(user_codes.shape)}"
            )
        c, CT, dev = self.t, self._ring.shape[-1], self.device
        ring, delays = self._ring, self.delays
        for k in range(1 + K, C):  # the user's codes enter at their delayed positions
            ring[:, k, (c + delays[k]) % CT] = user_codes[:, k - 1 - K, 0].to(dev)
        inp = ring[:, :, c % CT].clone()
        for k in range(C):
            if c <= delays[k]:
                inp[:, k] = self._initial[k]
        out = self.model(
            input_ids=inp[:, :1],
            moshi_audio_codes=inp[:, 1 : 1 + K, None],
            user_audio_codes=inp[:, 1 + K :, None],
            use_cache=True,
            decoder_position_ids=torch.tensor([[c]], device=dev),
            output_hidden_states=self.layer is not None,
            **{self._cache_kw: self._cache},
        )
        self._cache = getattr(out, self._cache_kw)
        hidden = (out.last_hidden_state if self.layer is None else out.hidden_states[self.layer])[:, -1]
        prev_text = ring[:, 0, c % CT].tolist() if c > 0 else None
        forced = self.control(hidden, prev_text).to(dev)

        text = sample_token(out.logits[:, -1], self.text_temperature, self.text_top_k, self.generator)
        text = torch.where(forced[:, 0] >= 0, forced[:, 0], text)
        audio = self._depth(out.last_hidden_state[:, -1:], text, forced[:, 1:])
        tokens = torch.cat([text[:, None], audio], dim=1)
        ring[:, : 1 + K, (c + 1) % CT] = tokens
        self.last_tokens = tokens
        self.t = c + 1
        if c + 1 <= self.max_delay:
            return None
        idx = torch.tensor([(c + 1 - self.max_delay + d) % CT for d in delays[: 1 + K]], device=dev)
        return ring[:, torch.arange(1 + K, device=dev), idx][:, :, None].clone()

    def _depth(self, last_hidden: Tensor, text: Tensor, forced: Tensor) -> Tensor:
        """The depth transformer, codebook by codebook with its own cache, each code sampled or
        forced (a forced code is what the next codebook is conditioned on)."""
        depth, cache, prev, codes = self.model.depth_decoder, None, text, []
        for k in range(self.K):
            o = depth(input_ids=prev[:, None], last_hidden_state=last_hidden, use_cache=True,
                      **{self._depth_cache_kw: cache})
            cache = getattr(o, self._depth_cache_kw)
            code = sample_token(o.logits[:, -1], self.temperature, self.top_k, self.generator)
            prev = torch.where(forced[:, k] >= 0, forced[:, k], code)
            codes.append(prev)
        return torch.stack(codes, dim=1)
