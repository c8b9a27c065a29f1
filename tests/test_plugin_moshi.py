"""Moshi adapters: the listener acting inside Moshi's loop (the ``moshi`` package's ``LMGen`` and
transformers' ``MoshiForConditionalGeneration``), on tiny random models (nothing downloaded).

A scripted head (decisions fixed per frame) drives the real listener and policy, so the frames where
tokens must be forced are known by hand. Contract checked (``plugin/moshi_hf.py`` docstring): a form
decided at step ``c`` emits its text frame ``r`` at step ``c + r`` and its audio frame ``r`` (form
frame ``r + 1``, after EPAD) on codebook ``k`` at step ``c + 1 + r + delay[k]``; while the user holds
the floor the text is PAD; after TAKE_TURN every token is the model's own (greedy: the argmax of the
model's raw logits at that step).
"""

from __future__ import annotations

import logging
import math
import os
import time

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # before moshi is imported

import pytest
import torch
from backchannel.corpora.events import ACTIONS
from backchannel.plugin.duplex import FREE, MODEL, USER, FloorControl, SpokenForm
from backchannel.plugin.listener import StreamingListener
from backchannel.plugin.moshi_hf import BackchannelMoshiHF
from torch import nn

from backchannel.backbones.moshi import TEXT_EPAD_ID, TEXT_PAD_ID, MoshiBackbone
from backchannel.head import HeadOutputs, TimingHead
from backchannel.lexicon import BC_TYPES
from backchannel.policy import Decision, Policy

try:  # the optional extra: pip install --no-deps moshi (+ einops, sentencepiece)
    from backchannel.plugin import moshi_lm
    from moshi.models import loaders
except ImportError:
    moshi_lm = loaders = None
needs_moshi = pytest.mark.skipif(moshi_lm is None, reason="the optional 'moshi' package is not installed")

PAD, EPAD = TEXT_PAD_ID, TEXT_EPAD_ID
POLICY = {
    "on": 0.5,
    "refractory": 0.0,
    "take_turn": 0.5,
    "forms": {"continuer": ("mhm",), "agreement": ("yeah",)},
}
TEXT = {"mhm": [7], "yeah": [8, 9]}
NO_DEADLINE = 60.0

# A tiny Moshi-like LM: text + 4 own + 4 user codebooks; own delays 0, 1, 2, 2 (Moshi uses 0, 1, ..., 1;
# the 2 checks that each codebook keeps its own delay).
TINY_LM = {
    "dim": 32,
    "text_card": 40,
    "existing_text_padding_id": PAD,
    "n_q": 8,
    "dep_q": 4,
    "card": 64,
    "num_heads": 2,
    "num_layers": 2,
    "hidden_scale": 2,
    "causal": True,
    "layer_scale": None,
    "context": 16,
    "max_period": 10000,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 16,
    "depformer_dim_feedforward": 32,
    "depformer_num_heads": 2,
    "depformer_num_layers": 1,
    "depformer_layer_scale": None,
    "depformer_multi_linear": True,
    "depformer_context": 4,
    "depformer_max_period": 10000,
    "depformer_gating": "silu",
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "delays": [0, 0, 1, 2, 2, 0, 1, 2, 2],
}
LM_OWN_DELAYS = [0, 0, 1, 2, 2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


class ScriptedHead(nn.Module):
    """Stands in for a trained head: frame ``t``'s action is ``script[t]`` (``"BACKCHANNEL:agreement"``
    names the type; default SILENT); records the hidden states it is given; raises or sleeps on the
    frames listed in ``raise_at`` / ``sleep_at``."""

    def __init__(self, script: dict[int, str], raise_at=(), sleep_at=(), sleep_s: float = 0.0):
        super().__init__()
        self.script, self.raise_at, self.sleep_at, self.sleep_s = (
            script,
            set(raise_at),
            set(sleep_at),
            sleep_s,
        )
        self.seen: list[torch.Tensor] = []

    def init_state(self, batch_size: int = 1):
        self.t = 0

    def step(self, state, x, inputs=None):
        t = self.t
        self.t += 1
        self.seen.append(x.detach().clone())
        if t in self.raise_at:
            raise RuntimeError(f"injected fault at frame {t}")
        if t in self.sleep_at:
            time.sleep(self.sleep_s)
        action, _, bc_type = self.script.get(t, "SILENT").partition(":")
        logits = torch.full((1, len(ACTIONS)), -10.0)
        logits[0, ACTIONS.index(action)] = 10.0
        types = torch.zeros(1, len(BC_TYPES))
        types[0, BC_TYPES.index(bc_type or "continuer")] = 5.0
        return HeadOutputs(logits, types), state


def scripted_listener(script, deadline_s=NO_DEADLINE, **head_kwargs):
    return StreamingListener(
        None, ScriptedHead(script, **head_kwargs), Policy(**POLICY), deadline_s=deadline_s
    )


def forms_for(n_audio: int, card: int, seed: int = 0) -> dict[str, SpokenForm]:
    g = torch.Generator().manual_seed(seed)
    codes = {
        "mhm": torch.randint(0, card, (n_audio, 3), generator=g),
        "yeah": torch.randint(0, card, (n_audio, 4), generator=g),
    }
    return {f: SpokenForm.build(TEXT[f], codes[f]) for f in codes}


def expected_forcing(bcs: dict[int, str], forms, delays, n_steps):
    """{(step, channel): token} for backchannels decided at ``bcs`` (step -> form), laid out by the
    documented contract: text frame r at step c + r; form frame r on channel k at c + r + delay[k]."""
    out = {}
    for c, form in bcs.items():
        tokens = forms[form].tokens
        for k, d in enumerate(delays):
            for r in range(tokens.shape[1]):
                if tokens[k, r] != FREE and c + r + d < n_steps:
                    out[(c + r + d, k)] = int(tokens[k, r])
    return out


# ----------------------------------------------------------------------------- forms and floor


def test_spoken_form_layout_by_hand():
    codes = torch.tensor([[11, 12, 13], [21, 22, 23]])
    f = SpokenForm.build([7, 8], codes)
    assert f.tokens.tolist() == [[EPAD, 7, 8, PAD], [FREE, 11, 12, 13], [FREE, 21, 22, 23]]
    g = SpokenForm.build([7, 8, 9, 10], codes[:, :2], epad=False)
    assert g.tokens.tolist() == [[7, 8, 9, 10], [11, 12, FREE, FREE], [21, 22, FREE, FREE]]
    with pytest.raises(ValueError, match="codes must be"):
        SpokenForm.build([7], torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="text id"):
        SpokenForm.build([], codes)


def D(t, action, form=None):
    return Decision(frame=t, time=0.08 * (t + 1), action=action, probability=0.0, form=form)


def test_floor_control_schedule_respects_each_delay():
    form = SpokenForm.build([7], torch.tensor([[11, 12], [21, 22], [31, 32]]))
    fc = FloorControl({"mhm": form}, delays=[0, 0, 1, 2], silence_codes=[1, 2, 3])
    rows = [fc.step(D(0, "BACKCHANNEL", "mhm")).tolist()] + [
        fc.step(D(t, "SILENT")).tolist() for t in range(1, 7)
    ]
    # steps:   text   cb0 (delay 0)   cb1 (delay 1)   cb2 (delay 2); silence codes fill the free slots
    assert rows == [
        [EPAD, 1, 2, 3],
        [7, 11, 2, 3],
        [PAD, 12, 21, 3],
        [PAD, 1, 22, 31],
        [PAD, 1, 2, 32],
        [PAD, 1, 2, 3],
        [PAD, 1, 2, 3],
    ]
    assert fc.stats["backchannel"] == 1 and not fc.speaking


def test_floor_control_take_turn_yield_and_dropped_backchannels(caplog):
    form = SpokenForm.build([7], torch.tensor([[11, 12], [21, 22]]))
    fc = FloorControl({"mhm": form}, delays=[0, 0, 1], yield_after=3)
    assert fc.step(D(0, "SILENT")).tolist() == [PAD, FREE, FREE]
    with caplog.at_level(logging.WARNING):
        assert fc.step(D(1, "BACKCHANNEL", "wow")).tolist() == [PAD, FREE, FREE]  # no such form: not said
        fc.step(D(2, "BACKCHANNEL", "wow"))
    assert fc.stats["dropped_unknown_form"] == 2
    assert sum("no spoken form for 'wow'" in r.message for r in caplog.records) == 1  # logged once
    assert fc.step(D(3, "BACKCHANNEL", "mhm")).tolist() == [EPAD, FREE, FREE]
    assert fc.step(D(4, "BACKCHANNEL", "mhm")).tolist() == [7, 11, FREE]  # busy: the first goes on
    assert fc.stats["dropped_busy"] == 1
    assert fc.step(D(5, "TAKE_TURN")).tolist() == [PAD, 12, 21]  # released; the form completes (its PAD too)
    assert fc.floor == MODEL
    assert fc.step(D(6, "BACKCHANNEL", "mhm"), prev_text=PAD).tolist() == [FREE, FREE, 22]
    assert fc.stats["dropped_model_floor"] == 1
    # the model's own text: a word, then PAD x3 -> it yields at the third PAD
    assert fc.step(D(7, "SILENT"), prev_text=15).tolist() == [FREE, FREE, FREE]
    assert fc.step(D(8, "SILENT"), prev_text=PAD).tolist() == [FREE, FREE, FREE]
    assert fc.step(D(9, "SILENT"), prev_text=PAD).tolist() == [FREE, FREE, FREE]
    assert fc.step(D(10, "SILENT"), prev_text=PAD).tolist() == [PAD, FREE, FREE]
    assert fc.floor == USER and fc.stats["yield"] == 1 and fc.stats["take_turn"] == 1
    with pytest.raises(ValueError, match="audio codebooks"):
        FloorControl({"mhm": form}, delays=[0, 0, 1, 1])


@needs_moshi
def test_force_logits_survives_cfg():
    logits = torch.randn(4, 1, 1, 6)  # CFG: conditional rows 0-1, unconditional rows 2-3
    forced = torch.tensor([2, FREE])
    out = moshi_lm.force_logits(logits, forced)
    assert torch.equal(out[1], logits[1]) and torch.equal(out[3], logits[3])
    cfg = out[2:] + (out[:2] - out[2:]) * 3.0  # LMGen's CFG combination
    assert cfg[0].argmax().item() == 2 and cfg[0].softmax(-1)[0, 0, 2].item() == 1.0


# ----------------------------------------------------------------------------- moshi LMGen


def tiny_lm(seed: int = 0):
    torch.manual_seed(seed)
    return loaders.get_moshi_lm(None, lm_kwargs=TINY_LM, device="cpu", dtype=torch.float32).eval()


class Recorder:
    """Per-step text/audio tokens from LMGen's hooks and the model's raw (unforced) logits, captured
    by forward hooks registered before the adapter's own."""

    def __init__(self, lm):
        self.text, self.audio, self.raw_text, self.out_norm = [], [], [], []
        self.raw_audio = [[] for _ in range(lm.dep_q)]
        lm.text_linear.register_forward_hook(lambda m, a, o: self.raw_text.append(o[:, -1].clone()))
        lm.out_norm.register_forward_hook(lambda m, a, o: self.out_norm.append(o[:, -1].clone()))
        for k, lin in enumerate(lm.linears):
            lin.register_forward_hook(lambda m, a, o, k=k: self.raw_audio[k].append(o[:, -1].clone()))

    def hooks(self):
        return {
            "on_text_hook": lambda t: self.text.append(t.clone()),
            "on_audio_hook": lambda a: self.audio.append(a.clone()),
        }


def run_lmgen(lm, listeners, forms, n_steps, batch=1, seed=0, **kwargs):
    torch.manual_seed(seed)
    rec = Recorder(lm)
    decisions = {}
    gen = moshi_lm.BackchannelLMGen(
        lm,
        listeners,
        forms,
        on_decision=lambda b, d: decisions.setdefault(b, []).append(d),
        **rec.hooks(),
        **kwargs,
    )
    user = torch.randint(0, lm.card, (n_steps, batch, lm.n_q - lm.dep_q, 1))
    outs = []
    with gen.streaming(batch):
        for c in range(n_steps):
            outs.append(gen.step(user[c]))
        offset = gen._streaming_state.offset_cpu
    return gen, rec, decisions, outs, offset


SCRIPT = {
    3: "BACKCHANNEL",
    12: "BACKCHANNEL:agreement",
    14: "BACKCHANNEL",
    24: "TAKE_TURN",
    25: "TAKE_TURN",
    28: "BACKCHANNEL",
}
N = 34


@needs_moshi
@pytest.mark.parametrize("use_sampling", [False, True])
def test_lmgen_emits_forced_tokens_at_decided_frames(use_sampling):
    lm = tiny_lm()
    forms = forms_for(lm.dep_q, lm.card)
    listener = scripted_listener(SCRIPT)
    gen, rec, decisions, outs, offset = run_lmgen(
        lm, listener, forms, N, use_sampling=use_sampling, yield_after=None
    )
    text = [int(t[0]) for t in rec.text]
    audio = [a[0].tolist() for a in rec.audio]
    assert len(text) == len(audio) == N and offset == N  # one sample per step, none dropped
    assert [d.frame for d in decisions[0]] == list(range(N))  # listener frame t = LMGen step t
    assert [d.form for d in decisions[0] if d.action == "BACKCHANNEL"] == ["mhm", "yeah", "mhm", "mhm"]
    stats = gen.control.floors[0].stats
    assert stats["backchannel"] == 2 and stats["dropped_busy"] == 1 and stats["dropped_model_floor"] == 1

    # the head read the temporal transformer's output (after out_norm) of every step
    seen = listener.head.seen
    assert len(seen) == N and all(torch.equal(s, o) for s, o in zip(seen, rec.out_norm))

    expected = expected_forcing({3: "mhm", 12: "yeah"}, forms, LM_OWN_DELAYS, N)
    # hand-checked placements: "mhm" decided at step 3 -> EPAD at 3, its piece at 4, its first audio frame
    # on codebooks 0/1/2/3 (delays 0/1/2/2) at steps 4/5/6/6; "yeah" at 12 -> pieces at 13, 14
    assert (
        expected[(3, 0)] == EPAD
        and expected[(4, 0)] == 7
        and expected[(13, 0)] == 8
        and expected[(14, 0)] == 9
    )
    assert [expected[(s, k)] for s, k in [(4, 1), (5, 2), (6, 3), (6, 4)]] == forms["mhm"].tokens[
        1:, 1
    ].tolist()
    for (c, k), tok in expected.items():
        got = text[c] if k == 0 else audio[c][k - 1]
        assert got == tok, f"step {c} channel {k}: {got} != forced {tok}"
    # user holds the floor until the TAKE_TURN at step 24: only PAD text besides the forms' tokens
    assert all(text[c] == PAD for c in range(24) if (c, 0) not in expected)
    # the undelayed output frames carry each form whole: frame of step c + 1 + r (+ max_delay to get out)
    md = gen.max_delay
    for r in range(3):
        assert outs[3 + 1 + r + md][0, 1:, 0].tolist() == forms["mhm"].tokens[1:, 1 + r].tolist()
    assert outs[3 + md][0, 0, 0].item() == EPAD and outs[4 + md][0, 0, 0].item() == 7
    assert all(o is None for o in outs[:md]) and all(o is not None for o in outs[md:])

    if not use_sampling:  # greedy: every token not forced is the model's own argmax
        for c in range(N):
            if (c, 0) not in expected and c >= 24:
                assert text[c] == int(rec.raw_text[c][0].argmax()), f"text at step {c}"
            for k in range(lm.dep_q):  # audio is free except the forms' codes (no silence codes here)
                if (c, k + 1) not in expected:
                    assert audio[c][k] == int(rec.raw_audio[k][c][0].argmax()), f"audio {k} at step {c}"
        assert any(text[c] != PAD for c in range(24, N))  # the random model speaks once released
        # while forced, the model's raw choice differs at least once (the forcing is not a no-op)
        assert any(
            audio[c][k - 1] != int(rec.raw_audio[k - 1][c][0].argmax()) for (c, k) in expected if k > 0
        )


@needs_moshi
def test_lmgen_silence_codes_suppress_audio_too():
    lm = tiny_lm(1)
    forms = forms_for(lm.dep_q, lm.card)
    silence = [1, 2, 3, 4]
    _, rec, _, _, _ = run_lmgen(
        lm,
        scripted_listener({2: "BACKCHANNEL", 15: "TAKE_TURN"}),
        forms,
        20,
        use_sampling=False,
        silence_codes=silence,
        yield_after=None,
    )
    expected = expected_forcing({2: "mhm"}, forms, LM_OWN_DELAYS, 20)
    audio = [a[0].tolist() for a in rec.audio]
    for c in range(15):
        want = [expected.get((c, k + 1), silence[k]) for k in range(lm.dep_q)]
        assert audio[c] == want, f"step {c}"
    for c in range(15, 20):  # released: the model's own greedy codes
        assert audio[c] == [int(rec.raw_audio[k][c][0].argmax()) for k in range(lm.dep_q)]


@needs_moshi
def test_lmgen_batch_rows_are_independent():
    lm = tiny_lm(2)
    forms = forms_for(lm.dep_q, lm.card)
    listeners = [scripted_listener({4: "BACKCHANNEL"}), scripted_listener({0: "TAKE_TURN"})]
    _, rec, decisions, _, _ = run_lmgen(
        lm, listeners, forms, 12, batch=2, use_sampling=False, yield_after=None
    )
    text = torch.stack(rec.text)  # [steps, B]
    expected = expected_forcing({4: "mhm"}, forms, LM_OWN_DELAYS, 12)
    for (c, k), tok in expected.items():
        got = text[c, 0].item() if k == 0 else rec.audio[c][0, k - 1].item()
        assert got == tok
    assert all(text[c, 0].item() == PAD for c in range(12) if (c, 0) not in expected)
    assert [text[c, 1].item() for c in range(12)] == [int(rec.raw_text[c][1].argmax()) for c in range(12)]
    assert [d.frame for d in decisions[1]] == list(range(12))


@needs_moshi
def test_lmgen_head_faults_keep_the_loop_running(caplog):
    lm = tiny_lm(3)
    forms = forms_for(lm.dep_q, lm.card)
    script = {5: "BACKCHANNEL", 7: "TAKE_TURN", 9: "BACKCHANNEL"}
    # frame 5 raises, 7 sleeps past the deadline: both SILENT; 9 backchannels normally
    listener = scripted_listener(script, deadline_s=0.05, raise_at=[5], sleep_at=[7], sleep_s=0.15)
    bad_callback_calls = []

    def on_decision(b, d):
        bad_callback_calls.append(d.frame)
        if d.frame == 2:
            raise KeyError("host callback bug")

    rec = Recorder(lm)
    gen = moshi_lm.BackchannelLMGen(
        lm, listener, forms, on_decision=on_decision, use_sampling=False, yield_after=None, **rec.hooks()
    )
    n = 16
    with caplog.at_level(logging.WARNING), gen.streaming(1):
        outs = [gen.step(torch.randint(0, lm.card, (1, lm.n_q - lm.dep_q, 1))) for _ in range(n)]
        assert gen._streaming_state.offset_cpu == n
    assert all(o is not None for o in outs[gen.max_delay :]) and len(rec.text) == n
    assert bad_callback_calls == list(range(n)) and gen.control.faults["on_decision:KeyError"] == 1
    assert listener.faults["model:RuntimeError"] == 1 and listener.faults["deadline"] == 1
    text = [int(t[0]) for t in rec.text]
    expected = expected_forcing({9: "mhm"}, forms, LM_OWN_DELAYS, n)
    assert text[5] == PAD and text[7] == PAD  # faulty frames: SILENT, still suppressed (no TAKE_TURN)
    assert all(text[c] == tok for (c, k), tok in expected.items() if k == 0)
    assert listener.t == n


@needs_moshi
def test_lmgen_with_a_timing_head_and_reset():
    lm = tiny_lm(4)
    listener = StreamingListener(None, TimingHead(lm.dim, hidden=16), Policy(), deadline_s=NO_DEADLINE)
    gen = moshi_lm.BackchannelLMGen(lm, listener, forms_for(lm.dep_q, lm.card))
    with gen.streaming(1):
        for _ in range(6):
            gen.step(torch.randint(0, lm.card, (1, 4, 1)))
        assert listener.t == 6 and gen.control.last_decisions[0].frame == 5
        gen.control.floors[0].floor = MODEL
        gen.reset_streaming()
        assert listener.t == 0 and gen.control.floors[0].floor == USER
        gen.step(torch.randint(0, lm.card, (1, 4, 1)))
        assert gen.control.last_decisions[0].frame == 0
    with pytest.raises(ValueError, match="batch of 2 for 1 listener"):
        gen.streaming(2)
    bad = {"mhm": SpokenForm.build([7], torch.full((4, 2), lm.card))}
    with pytest.raises(ValueError, match="out of range"):
        moshi_lm.BackchannelLMGen(lm, listener, bad)


# ----------------------------------------------------------------------------- transformers Moshi

HF_OWN_DELAYS = [0, 0, 1, 1]  # text, semantic codebook, 2 acoustic codebooks (tiny config: 3 codebooks)


def run_hf(model, listener, forms, n_steps, seed=0, **kwargs):
    K, V = model.config.num_codebooks, model.config.audio_vocab_size
    raw_text, raw_audio = [], []
    h1 = model.decoder.lm_head.register_forward_hook(lambda m, a, o: raw_text.append(o[:, -1].clone()))
    h2 = model.depth_decoder.lm_heads.register_forward_hook(
        lambda m, a, o: raw_audio.append(o[:, -1].clone())
    )
    decisions = []
    loop = BackchannelMoshiHF(
        model,
        listener,
        forms,
        text_temperature=0.0,
        temperature=0.0,
        on_decision=lambda b, d: decisions.append(d),
        **kwargs,
    )
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(0, V, (n_steps, 1, K, 1), generator=g)
    tokens, outs = [], []
    for c in range(n_steps):
        outs.append(loop.step(user[c]))
        tokens.append(loop.last_tokens[0].tolist())
    h1.remove()
    h2.remove()
    raw_audio = [raw_audio[c * K : (c + 1) * K] for c in range(n_steps)]  # K depth calls per step
    return loop, tokens, outs, raw_text, raw_audio, decisions, user


def test_hf_emits_forced_tokens_at_decided_frames():
    model = MoshiBackbone.tiny(seed=5).model
    K = model.config.num_codebooks
    forms = forms_for(K, model.config.audio_vocab_size)
    listener = scripted_listener(SCRIPT)
    loop, tokens, outs, raw_text, raw_audio, decisions, _ = run_hf(
        model, listener, forms, N, yield_after=None
    )
    assert loop.t == N and [d.frame for d in decisions] == list(range(N))
    expected = expected_forcing({3: "mhm", 12: "yeah"}, forms, HF_OWN_DELAYS, N)
    assert (
        expected[(3, 0)] == EPAD and expected[(4, 0)] == 7 and expected[(4, 1)] == forms["mhm"].tokens[1, 1]
    )
    assert expected[(5, 2)] == forms["mhm"].tokens[2, 1]  # acoustic codebooks one step later
    for (c, k), tok in expected.items():
        assert tokens[c][k] == tok, f"step {c} channel {k}"
    assert all(tokens[c][0] == PAD for c in range(24) if (c, 0) not in expected)
    for c in range(N):  # everything not forced is the model's own greedy choice
        if c >= 24 and (c, 0) not in expected:
            assert tokens[c][0] == int(raw_text[c][0].argmax())
        for k in range(K):
            if (c, k + 1) not in expected:
                assert tokens[c][k + 1] == int(raw_audio[c][k][0].argmax()), f"audio {k} at step {c}"
    assert any(tokens[c][0] != PAD for c in range(24, N))
    for r in range(3):  # undelayed output frames carry the form whole
        assert outs[3 + 1 + r + loop.max_delay][0, 1:, 0].tolist() == forms["mhm"].tokens[1:, 1 + r].tolist()
    assert outs[0] is None and all(o is not None for o in outs[1:])


def test_hf_head_reads_the_same_hidden_state_as_moshi_backbone():
    backbone = MoshiBackbone.tiny(seed=6)  # sliding window 8: the run goes past it
    model, K = backbone.model, backbone.num_codebooks
    listener = scripted_listener({2: "BACKCHANNEL", 9: "TAKE_TURN"})
    n = 14
    _, _, outs, *_, user = run_hf(
        model, listener, forms_for(K, model.config.audio_vocab_size), n, yield_after=None
    )
    # own frame F (F >= 1) = output of step F; user frame F = input of step F. Step c's hidden has read
    # frames 1..c, which is MoshiBackbone's frame c - 1 on the streams starting at frame 1.
    own = torch.stack([o[0, :, 0] for o in outs[1:]])  # frames 1..n-1: [n - 1, 1 + K]
    text_ids = own[:, 0][None]
    codes = torch.stack([own[:, 1:].T, user[1:, 0, :, 0].T])[None]  # [1, 2, K, n - 1]
    ref = backbone(text_ids, codes)[0]
    seen = torch.cat(listener.head.seen[1:])
    torch.testing.assert_close(seen, ref, rtol=1e-4, atol=1e-5)


def test_hf_head_faults_keep_the_loop_running():
    model = MoshiBackbone.tiny(seed=7).model
    K = model.config.num_codebooks
    listener = scripted_listener({4: "BACKCHANNEL"}, raise_at=[4, 6])
    loop, tokens, outs, *_ = run_hf(model, listener, forms_for(K, model.config.audio_vocab_size), 12)
    assert loop.t == 12 and listener.t == 12 and listener.faults["model:RuntimeError"] == 2
    assert all(o is not None for o in outs[1:])
    assert [t[0] for t in tokens] == [PAD] * 12  # the faulty backchannel frame is SILENT: nothing said
    with pytest.raises(ValueError, match="user codes must be"):
        loop.step(torch.zeros(1, K, dtype=torch.long))


def test_adapter_keywords_reach_the_control_and_a_misspelt_one_is_refused():
    model = MoshiBackbone.tiny(seed=7).model
    K = model.config.num_codebooks
    forms = forms_for(K, model.config.audio_vocab_size)
    loop = BackchannelMoshiHF(model, scripted_listener({}), forms, yield_after=3, floor=MODEL, top_k=5)
    floor = loop.control.floors[0]
    assert (floor.yield_after, floor.initial_floor, loop.top_k) == (3, MODEL, 5)
    assert math.isnan(loop.control.last_call_s)
    loop.step(torch.zeros(1, K, 1, dtype=torch.long))
    assert 0 <= loop.control.last_call_s < 1.0  # the step's listener time (head, policy, floor), in seconds
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['yeild_after'\]"):
        BackchannelMoshiHF(model, scripted_listener({}), forms, yeild_after=3)


def test_decision_lines_say_what_became_of_each_decision():
    from backchannel.plugin.duplex import decision_lines

    fc = FloorControl(forms_for(3, 64), delays=[0, 0, 1, 1], yield_after=None)  # mhm: 4 frames, 5 steps ahead
    script = {0: ("BACKCHANNEL", "mhm"), 1: ("BACKCHANNEL", "yeah"), 7: ("BACKCHANNEL", "okay"),
              8: ("TAKE_TURN", None), 9: ("TAKE_TURN", None), 10: ("BACKCHANNEL", "mhm")}
    timeline = []
    for frame in range(11):  # one step per frame
        action, form = script.get(frame, ("SILENT", None))
        d = Decision(frame, 0.08 * (frame + 1), action, 0.9, form=form)
        fc.step(d)
        timeline.append((d, fc.last_outcome))
    lines = decision_lines(timeline, fc.stats)
    assert [line.split("(", 1)[-1] for line in lines[:-1]] == [
        "said)", "not said: another backchannel is still being spoken)", "not said: no spoken form for 'okay')",
        "took the floor)", "the model holds the floor already)", "not said: the model holds the floor)"]
    assert lines[-1] == ("4 BACKCHANNEL decision(s), said 1 (not said: {'dropped_busy': 1, 'dropped_unknown_form': 1, "
                         "'dropped_model_floor': 1}); took the turn 1 time(s), yielded 0")
