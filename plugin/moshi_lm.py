"""The streaming listener inside the ``moshi`` package's ``LMGen`` loop (optional extra ``moshi``).

:class:`BackchannelLMGen` is an ``LMGen`` (moshi 0.2.x) whose every ``step`` also runs the head on the
temporal transformer's output of that step and forces tokens before they are sampled (the behaviour,
floor rules, delays and form layout are in :mod:`backchannel.plugin.duplex`, shared by both Moshi
adapters). Use it exactly like ``LMGen``: ``with gen.streaming(1): out = gen.step(user_codes)``.

How it hooks in (moshi 0.2.13, ``LMGen._step``), with no change to moshi's code:

1. **Hidden state**: ``_init_streaming_state`` (overridden, calls ``super()``) wraps the state's
   ``graphed_main`` (``LMModel.forward_text``, CUDA-graphed on GPU) in :class:`_Tap`, a plain Python
   callable: after the transformer has run, the tap takes ``transformer_out`` (the last layer after
   ``out_norm``, what the text head and depformer read; the conditional half under CFG), runs the
   listeners (:class:`~backchannel.plugin.duplex.DuplexControl`) and decides this step's forced
   tokens. Running outside the graph, it works with CUDA graphs too.
2. **Text**: the tap returns the text logits with each forced row replaced by ``0`` at the forced
   id and ``-1e4`` elsewhere, so ``sample_token`` (greedy, temperature, top-k) picks the forced id;
   the constant survives CFG (both halves equal). ``on_text_logits_hook`` sees the forced logits.
3. **Audio**: a forward hook on each depformer output layer ``lm_model.linears[k]`` (registered for
   the streaming session, removed when it ends) forces codebook ``k``'s logits the same way from
   two persistent buffers (``where``: no Python branching on values, so it is captured correctly in
   a CUDA graph). The depformer then conditions the next codebook on the forced code, as in teacher
   forcing; a row not forced keeps its sampled codes.
4. ``reset_streaming`` also resets the listeners and floors of the reset rows; rows not executing
   (``exec_mask``) are skipped (their listener does not step).

The forced tokens are the ones written into LMGen's cache, returned by ``step`` (after the usual
``max_delay`` steps) and passed to ``on_text_hook`` / ``on_audio_hook``. Listener frame ``t`` is
LMGen step ``t`` (step 0 reads only the initial tokens).

Real weights (``kyutai/moshiko-pytorch-bf16``)::

    from moshi.models import loaders
    info = loaders.CheckpointInfo.from_hf_repo("kyutai/moshiko-pytorch-bf16")
    mimi, lm = info.get_mimi(device="cuda"), info.get_moshi(device="cuda")
    sp = info.get_text_tokenizer()
    forms = build_forms({f: form_codes(f"{f}.wav", mimi.encode) for f in ("mhm", "yeah")}, sp.encode)
    gen = BackchannelLMGen(lm, listener, forms, **info.lm_gen_config)

Tests build a tiny random ``LMModel`` (``NO_TORCH_COMPILE=1``); see ``examples/moshi_loop.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from moshi.models.lm import LMGen, LMModel
from torch import Tensor

from .duplex import FREE, SpokenForm, adapter_control, build_forms, form_codes  # noqa: F401 (re-exported)

FORCED_OUT = (
    -1e4
)  # logit of every id but the forced one (0): probability 0 after softmax at any sane temperature


def force_logits(logits: Tensor, forced: Tensor) -> Tensor:
    """``logits [N, ..., V]`` with each row ``n`` whose ``forced[n] >= 0`` replaced by 0 at that id and
    ``FORCED_OUT`` elsewhere; ``forced [B]`` with ``N`` a multiple of ``B`` (CFG doubles the batch)."""
    reps = logits.shape[0] // forced.shape[0]
    f = forced.repeat(reps).view(-1, *([1] * (logits.dim() - 1)))
    ids = torch.arange(logits.shape[-1], device=logits.device)
    one_hot = torch.where(ids == f, 0.0, FORCED_OUT).to(logits.dtype)
    return torch.where(f >= 0, one_hot, logits)


class _Tap:
    """Wraps ``LMGen``'s ``graphed_main``: calls it, then hands ``transformer_out`` to ``on_hidden``,
    which returns the forced text ids ``[B]``; returns the (forced) text logits."""

    def __init__(self, inner, on_hidden):
        self.inner, self.on_hidden = inner, on_hidden

    def __call__(self, *args, **kwargs):
        transformer_out, text_logits = self.inner(*args, **kwargs)
        forced_text = self.on_hidden(transformer_out)
        return transformer_out, force_logits(text_logits, forced_text.to(text_logits.device))


class BackchannelLMGen(LMGen):
    """``LMGen`` with streaming listener(s) acting inside its loop (see the module docstring).

    ``listeners``: one ``StreamingListener`` per batch row (a single one for batch 1), whose head reads
    ``lm_model.dim``-dimensional hidden states; ``forms``: ``{form: SpokenForm}`` with ``dep_q`` audio
    rows (text ids < ``text_card``, codes < ``card``). Keywords ``silence_codes``, ``floor`` (default
    ``"user"``), ``yield_after`` (default 25 steps), ``on_decision``, ``logger`` (``duplex.CONTROL_KEYWORDS``)
    go to :class:`~backchannel.plugin.duplex.DuplexControl`; the rest to ``LMGen`` (sampling, CFG, hooks).
    ``control`` holds the listeners, floors (``control.floors[b].stats``) and faults.
    """

    def __init__(self, lm_model: LMModel, listeners, forms: Mapping[str, SpokenForm], **kwargs):
        own = lm_model.delays[: 1 + lm_model.dep_q]  # text + the model's own audio codebooks
        control, lmgen_kwargs = adapter_control(listeners, forms, own, text_vocab=lm_model.text_card,
                                                audio_vocab=lm_model.card, pad_id=lm_model.text_padding_token_id,
                                                **kwargs)
        super().__init__(lm_model, **lmgen_kwargs)
        self.control = control

    def _init_streaming_state(self, batch_size: int):
        if batch_size != len(self.control):
            raise ValueError(
                f"BackchannelLMGen: streaming batch of {batch_size} for {len(self.control)} listener(s)"
            )
        state = super()._init_streaming_state(batch_size)
        dev, dep_q = self.lm_model.device, self.lm_model.dep_q
        self._forced_audio = torch.full((batch_size, dep_q), FREE, dtype=torch.long, device=dev)
        state.graphed_main = _Tap(state.graphed_main, self._on_hidden)
        for k, linear in enumerate(self.lm_model.linears[:dep_q]):
            handle = linear.register_forward_hook(self._audio_hook(k))
            state.exit_stack.callback(handle.remove)
        reset_lm = state.reset_callback

        def reset_callback(reset_mask: Tensor) -> None:
            reset_lm(reset_mask)
            self.control.reset([b for b, r in enumerate(reset_mask.tolist()) if r])
            self._forced_audio.fill_(FREE)

        state.reset_callback = reset_callback
        self.control.reset()
        return state

    def _audio_hook(self, k: int):
        def hook(module, args, output):
            return force_logits(output, self._forced_audio[:, k])

        return hook

    def _on_hidden(self, transformer_out: Tensor) -> Tensor:
        """One step of the listeners on this step's hidden state; sets the forced audio buffer and
        returns the forced text ids ``[B]``."""
        state = self._streaming_state
        B = state.batch_size
        cache, offsets = state.cache, state.offsets
        prev_text = None
        if state.offset_cpu > 0:  # the text written at the previous step (position = offset)
            prev_text = cache[torch.arange(B, device=cache.device), 0, offsets % cache.shape[-1]].tolist()
        try:
            forced = self.control(transformer_out[:B, -1], prev_text, state.exec_mask.tolist())
        except Exception as err:  # noqa: BLE001 -- never stall Moshi's loop: this step goes on unforced
            self.control.fault(f"control:{type(err).__name__}", -1, err)
            forced = torch.full((B, 1 + self.lm_model.dep_q), FREE, dtype=torch.long)
        self._forced_audio.copy_(forced[:, 1:])
        return forced[:, 0]
