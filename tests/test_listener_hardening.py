"""Hostile inputs to ``StreamingListener.step`` (issue 12): one bad frame costs that frame only.

The rule (``plugin.listener`` docstring): a value the frame-input boundary can clamp (voice activity outside
[0, 1], prosody outside ``inputs.BOUNDS``) is fed clamped and is no fault; a frame it refuses is SILENT, never
reaches backbone nor head, and the policy sees it as certain silence; a model call that fails or gives bad or
non-finite outputs is SILENT and leaves the head's state as it was (and a non-finite backbone stream does not
advance). So every later frame is decided exactly as in a clean run where the bad frame was replaced by its
clamped equivalent, or dropped from the model's streams. The probes of the issue, then a property test.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from backchannel.corpora.dialogue import Word
from backchannel.plugin.features import StreamingFeatures
from backchannel.plugin.listener import StreamingListener, head_outputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_listener import (
    NO_DEADLINE,
    WORDS,
    FlakyHead,
    batched,
    normalise,
    reference_p_bc,
    synthetic_dialogue,
)

from backchannel.backbones import TimingBackbone
from backchannel.frames import FRAME_S
from backchannel.head import HeadOutputs, TimingHead
from backchannel.inputs import BOUNDS
from backchannel.policy import Policy
from backchannel.text import TextTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py

LO, HI = BOUNDS[:, 0], BOUNDS[:, 1]  # prosody bounds per column: f0 st, low-pitch flag, dB, voiced; x 2 parties


@pytest.fixture(scope="module")
def model():
    """The default-size backbone (256-frame window) of tests/test_listener.py, with a GRU head."""
    torch.manual_seed(0)
    backbone = TimingBackbone().eval()
    normalise(backbone)
    head = TimingHead(backbone.hidden_size, hidden=32, kind="gru").eval()
    with torch.no_grad():
        head.action.weight.mul_(4.0)
    return backbone, head


def tiny_model(seed: int = 0, d_model: int = 16, window: int = 8):
    torch.manual_seed(seed)
    backbone = TimingBackbone(d_model=d_model, n_heads=2, n_layers=2, window=window).eval()
    normalise(backbone)
    head = TimingHead(d_model, hidden=8, kind="gru").eval()
    with torch.no_grad():
        head.action.weight.mul_(8.0)
    return backbone, head


@pytest.fixture(scope="module")
def small():
    """A small backbone with a 16-frame window (the probes run past it: the ring buffer has wrapped)."""
    return tiny_model(1, d_model=32, window=16)


def run(listener, frames, words=None) -> list:
    """Reset ``listener`` and step it over ``frames``; ``words``: per frame, the step's word arguments."""
    listener.reset()
    return [listener.step(f, **(words or {}).get(t, {})) for t, f in enumerate(frames)]


def reference(backbone, head, policy, frames, dropped=(), words=None) -> list:
    """What the rule says: features of every frame, backbone and head stepped over all frames but ``dropped``
    (their features refused), the policy fed certain silence and a fault there. ``words``: per frame, the
    step's word arguments."""
    feats, words = StreamingFeatures(), words or {}
    fstate, bstate, hstate = feats.init_state(1)[0], backbone.init_state(1), head.init_state(1)
    pstate, out = policy.init_state(1)[0], []
    for t, f in enumerate(frames):
        if t in dropped:
            with pytest.raises(ValueError):  # a refused frame: its words are queued, the clock advances
                feats.step(fstate, {"va_listener": math.nan, "va_speaker": 0.0}, **words.get(t, {}))
            out.append(policy.decide(pstate, None, None, fault="features:ValueError"))
            continue
        x = feats.step(fstate, f, **words.get(t, {}))
        hidden, bstate = backbone.step(bstate, x)
        o, hstate = head.step(hstate, hidden, x)
        probs, types, _ = head_outputs(o, 1)
        out.append(policy.decide(pstate, probs[0], types[0]))
    return out


def discriminating_policy(backbone, head, frames) -> Policy:
    """A policy whose thresholds lie inside the range of this model's probabilities on ``frames`` (so that
    a changed probability would change decisions)."""
    with torch.no_grad():
        p = head(backbone(batched(frames)))[0].softmax(-1)[0].numpy()
    return Policy(on=float(np.quantile(p[:, 1], 0.7)), smoothing=3, refractory=0.24,
                  take_turn=float(np.quantile(p[:, 2], 0.8)))


# ------------------------------------------------------------------------------------ poisoning

def with_prosody(frame, column: int, value: float, masked: bool = False) -> dict:
    p, m = np.array(frame["prosody"], np.float32), np.array(frame["prosody_mask"], bool)
    p[column], m[column] = value, not masked
    return dict(frame, prosody=p, prosody_mask=m)


@pytest.mark.parametrize("bad, clamped", [
    (lambda f: dict(f, va_listener=1e30), lambda f: dict(f, va_listener=1.0)),  # the probe
    (lambda f: dict(f, va_speaker=np.float64(-1e30)), lambda f: dict(f, va_speaker=0.0)),
    (lambda f: with_prosody(f, 2, 1e30), lambda f: with_prosody(f, 2, 150.0)),  # listener dB: 0..150
    (lambda f: with_prosody(f, 4, -1e30), lambda f: with_prosody(f, 4, -48.0)),  # speaker f0: -48..48 st
    (lambda f: with_prosody(f, 0, math.nan, masked=True), lambda f: with_prosody(f, 0, 0.0, masked=True)),
])
def test_an_out_of_range_frame_is_fed_clamped(small, bad, clamped):
    backbone, head = small
    frames = synthetic_dialogue(60, seed=40)
    policy = discriminating_policy(backbone, head, frames)
    k = 40
    listener = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE)
    got = run(listener, frames[:k] + [bad(frames[k])] + frames[k + 1:])
    want = run(listener, frames[:k] + [clamped(frames[k])] + frames[k + 1:])
    assert got == want and not any(d.fault for d in got)  # every field, probabilities bit-identical
    assert not listener.faults
    if any(not np.array_equal(np.asarray(v), np.asarray(frames[k][key])) for key, v in clamped(frames[k]).items()):
        assert got[k] != run(listener, frames)[k]  # the frame was not ignored: its clamped value reached the model
    assert {d.action for d in got} >= {"SILENT", "TAKE_TURN"}


@pytest.mark.parametrize("bad", [
    lambda f: dict(f, va_listener=math.nan),
    lambda f: dict(f, va_speaker=-math.inf),
    lambda f: with_prosody(f, 2, math.inf),  # unmasked
    lambda f: dict(f, prosody=np.zeros(7)),
    lambda f: dict(f, va_listener="0.5"),
])
def test_a_refused_frame_costs_that_frame_only(small, bad):
    backbone, head = small
    frames = synthetic_dialogue(60, seed=41)
    policy = discriminating_policy(backbone, head, frames)
    k = 40
    words = {k: {"speaker_words": [("lake", (k - 3) * FRAME_S)]}, k - 1: {"listener_words": [("okay", 0.0)]}}
    listener = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE)
    got = run(listener, frames[:k] + [bad(frames[k])] + frames[k + 1:], words)
    assert got[k].action == "SILENT" and got[k].fault == "features:ValueError"
    assert dict(listener.faults) == {"features:ValueError": 1}
    want = reference(backbone, head, policy, frames, dropped={k}, words=words)
    assert got[:k] == want[:k] and got[k + 1:] == want[k + 1:]
    assert dataclasses.replace(got[k], fault=None) == dataclasses.replace(want[k], fault=None)
    assert int(listener.backbone_state.t) == 59  # frame k never reached the backbone


def test_a_non_finite_model_output_restores_the_last_good_state(model):
    """The issue's poisoning, inside the model: frame k's embedding becomes NaN (what 1e30 voice activity
    did before the clamp), past the 256-frame window. Frame k is SILENT; every later frame equals a run whose
    backbone and head never saw frame k (the issue: the attention cache kept the NaN, 1,020 frames went deaf)."""
    backbone, head = model
    frames = synthetic_dialogue(280, seed=42)
    policy = discriminating_policy(backbone, head, frames)
    k, calls = 262, {"n": 0}

    def poison(module, args, out):
        calls["n"] += 1
        return out * math.nan if calls["n"] == k + 1 else out

    listener = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE)
    hook = backbone.in_proj.register_forward_hook(poison)
    try:
        got = run(listener, frames)
    finally:
        hook.remove()
    assert got[k].fault == "model:nan" and dict(listener.faults) == {"model:nan": 1}
    want = reference(backbone, head, policy, frames, dropped={k})  # frame k reached neither backbone nor head
    assert got[:k] == want[:k] and got[k + 1:] == want[k + 1:]
    assert dataclasses.replace(got[k], fault=None) == dataclasses.replace(want[k], fault=None)
    assert all(d.fault is None for d in got[k + 1:]) and int(listener.backbone_state.t) == 279
    assert {d.action for d in got[k + 1:]} - {"SILENT"}  # not deaf


def test_step_inputs_clamps_and_refuses_at_the_same_boundary(model):
    backbone, head = model
    frames = synthetic_dialogue(40, seed=43)
    policy = discriminating_policy(backbone, head, frames)
    feats = StreamingFeatures()

    def replay(change):
        listener, state = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE), feats.init_state(1)[0]
        out = []
        for t, f in enumerate(frames):
            x = dict(feats.step(state, f))
            out.append(listener.step_inputs(change(x) if t == 20 else x))
        return out, listener

    raw, _ = replay(lambda x: x | {"va_listener": torch.tensor([1e30])})  # bypasses the features' clamp
    clamped, _ = replay(lambda x: x | {"va_listener": torch.tensor([1.0])})
    assert raw == clamped and not any(d.fault for d in raw)
    refused, listener = replay(lambda x: x | {"va_speaker": torch.tensor([math.nan])})
    assert refused[20].fault == "inputs:ValueError" and dict(listener.faults) == {"inputs:ValueError": 1}
    assert int(listener.backbone_state.t) == 39
    wrong, listener = replay(lambda x: x | {"prosody": torch.zeros(1, 7)})
    assert wrong[20].fault == "inputs:ValueError" and not any(d.fault for d in wrong[21:])


# ------------------------------------------------------------------------------------ bad head outputs

class BadHead(FlakyHead):
    """A head whose call ``at`` returns ``bad(outputs)`` while advancing its state as a real call does."""

    def __init__(self, head, at, bad):
        super().__init__(head)
        self.at, self.bad = at, bad

    def step(self, state, x, inputs=None):
        i, self.calls = self.calls, self.calls + 1
        out, state = self.head.step(state, x)
        return (self.bad(out) if i == self.at else out), state


@pytest.mark.parametrize("bad, kind", [
    (lambda o: HeadOutputs(o.action[:, :2], o.bc_type), "model:output"),  # the probe: 2 action logits
    (lambda o: HeadOutputs(torch.cat([o.action, o.action], -1), o.bc_type), "model:output"),
    (lambda o: HeadOutputs(o.action[0], o.bc_type), "model:output"),  # [3], no batch axis
    (lambda o: HeadOutputs(o.action[..., None], o.bc_type), "model:output"),
    (lambda o: HeadOutputs(o.action, o.bc_type[:, :4]), "model:output"),  # type-logit length 4
    (lambda o: HeadOutputs(o.action, o.bc_type, torch.zeros(2)), "model:output"),  # onset shape
    (lambda o: HeadOutputs(o.action.numpy(), o.bc_type), "model:output"),  # not a tensor
    (lambda o: HeadOutputs(o.action.long(), o.bc_type), "model:output"),  # integer logits
    (lambda o: HeadOutputs(o.action.tolist(), o.bc_type), "model:output"),
    (lambda o: (o.action, o.bc_type), "model:output"),  # two outputs
    (lambda o: {"action": o.action}, "model:output"),
    (lambda o: None, "model:output"),
    (lambda o: HeadOutputs(o.action + math.inf, o.bc_type), "model:nan"),
    (lambda o: HeadOutputs(o.action, o.bc_type * math.nan), "model:nan"),
    (lambda o: HeadOutputs(o.action, o.bc_type, torch.full((1,), math.nan)), "model:nan"),
])
def test_a_bad_head_output_silences_that_frame_only(model, bad, kind):
    backbone, head = model
    frames = synthetic_dialogue(40, seed=44)
    k = 15
    policy = Policy(on=1.0, take_turn=0.0)  # every healthy frame is TAKE_TURN, so SILENT marks the faults
    listener = StreamingListener(backbone, BadHead(head, k, bad), policy, deadline_s=NO_DEADLINE)
    decisions = run(listener, frames)  # must not raise
    assert {d.frame: d.fault for d in decisions if d.action == "SILENT"} == {k: kind}
    assert dict(listener.faults) == {kind: 1}
    # the head's state went back to before frame k; the backbone consumed frame k
    want = reference_p_bc(backbone, head, frames, skip_head={k})
    got = np.array([math.nan if d.fault else d.probability for d in decisions])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_failing_policy_silences_that_frame(model):
    backbone, head = model

    class Flaky(Policy):
        def decide(self, state, probs=None, type_probs=None, **kw):
            if state.t == 5 and probs is not None:
                raise ZeroDivisionError("injected")
            return super().decide(state, probs, type_probs, **kw)

    listener = StreamingListener(backbone, head, Flaky(on=1.0, take_turn=0.0), deadline_s=NO_DEADLINE)
    decisions = run(listener, synthetic_dialogue(10, seed=45))
    assert [d.action for d in decisions] == ["TAKE_TURN"] * 5 + ["SILENT"] + ["TAKE_TURN"] * 4
    assert decisions[5].fault == "policy:ZeroDivisionError" and dict(listener.faults) == {"policy:ZeroDivisionError": 1}


# ------------------------------------------------------------------------------------ words

class CountingWords(list):
    """A word list that counts how many of its items were read."""

    read = 0

    def __iter__(self):
        for w in super().__iter__():
            self.read += 1
            yield w


def test_far_future_and_flooding_words_are_bounded_and_counted(model):
    backbone, head = model
    tok = TextTokenizer()
    silence = {"va_listener": 0.0, "va_speaker": 0.0}
    listener = StreamingListener(backbone, head, Policy(), deadline_s=NO_DEADLINE)
    d = listener.step(silence, speaker_words=[Word(1e18, 1e18, "forever"), ("later", 29.0)])
    assert d.fault is None and dict(listener.faults) == {"words:dropped": 1}  # 1e18 s: past max_future_s
    assert [w[4] for w in listener.feature_state[0].pending["speaker"]] == ["later"]

    flood = CountingWords((f"w{i}", 0.05) for i in range(100_000))  # all already ended: due now
    d = listener.step(silence, speaker_words=flood)
    cap = listener.features.max_pending_words  # 256; "later" holds one place
    assert d.fault is None and listener.faults["words:dropped"] == 1 + 100_000 - (cap - 1)
    assert flood.read == cap  # the rest is counted, not read: the step's work is bounded
    assert [w[4] for w in listener.feature_state[0].pending["speaker"]] == ["later"]
    d = listener.step(silence, speaker_words=[("w", 10.0)] * 300)  # ahead, within max_future_s: 255 fit
    assert d.fault is None and listener.faults["words:dropped"] == 1 + 100_000 - (cap - 1) + 300 - (cap - 1)
    assert len(listener.feature_state[0].pending["speaker"]) == cap
    # the flooded frame shows the last k = 2 of the 255 words it took (ordered by end, start, arrival)
    feats = StreamingFeatures(tokenizer=tok)
    state = feats.init_state(1)[0]
    x = feats.step(state, silence, speaker_words=[(f"w{i}", 0.05) for i in range(100_000)])
    assert x["text_ids"][0, 1].tolist() == [tok.word_id("w254"), tok.word_id("w255")]
    assert state.dropped_words == 100_000 - cap and not any(state.pending.values())


def test_unreadable_words_are_dropped_and_counted_the_frame_decided(model):
    backbone, head = model
    tok = TextTokenizer()
    silence = {"va_listener": 0.0, "va_speaker": 0.0}
    feats = StreamingFeatures()
    listener = StreamingListener(backbone, head, Policy(on=1.0, take_turn=0.0), features=feats,
                                 deadline_s=NO_DEADLINE)
    bad = [None, ("a",), ("x", "0.1"), ("y", math.nan), ("z", 0.0, math.inf), (5, 0.1), 3.0,
           ("a", 0.0, 0.1, 0.2), b"go", Word(0.0, math.nan, "w")]
    listener.step(silence)
    d = listener.step(silence, speaker_words=[("go", 0.1)] + bad + [("left", 0.12)], listener_words="yeah")
    assert d.fault is None and d.action == "TAKE_TURN"  # decided, not silenced
    assert dict(listener.faults) == {"words:malformed": len(bad) + 1}  # + the bare string "yeah"
    assert listener.step(silence, speaker_words=None).fault is None and listener.faults["words:malformed"] == 11
    # the readable words still reach their frame, in order
    state = feats.init_state(1)[0]
    feats.step(state, silence)
    x = feats.step(state, silence, speaker_words=[("go", 0.1)] + bad + [("left", 0.12)])
    assert x["text_ids"][0].tolist() == [[0, 0], [tok.word_id("go"), tok.word_id("left")]]
    assert state.bad_words == len(bad) and state.bad_word == (
        "speaker: a word must be a Word or (text, end_s) / (text, start_s, end_s), got None")


@pytest.mark.parametrize("bad", [
    {"va_listener": math.nan, "va_speaker": 0.0},  # refused before the text is read
    {"va_listener": 0.0, "va_speaker": 0.0, "prosody": [0, 0, math.nan, 0, 0, 0, 0, 0], "prosody_mask": [True] * 8},
    {"va_listener": 0.0, "va_speaker": 0.0, "text_listener": "ok", "text_speaker": 5},  # after the listener's text
    {"va_listener": 0.0, "va_speaker": 0.0, "text_ids": np.zeros((2, 3), int)},
])
def test_a_refused_frame_loses_no_word(bad):
    tok = TextTokenizer()
    feats = StreamingFeatures(tokenizer=tok)
    state = feats.init_state(1)[0]
    silence = {"va_listener": 0.0, "va_speaker": 0.0}
    feats.step(state, silence, listener_words=[("yeah", 0.2)], speaker_words=[Word(0.1, 0.2, "lake")])  # due in frame 2
    feats.step(state, silence)
    with pytest.raises(ValueError, match="frame 2: "):
        feats.step(state, bad, speaker_words=[("left", 0.0)])  # late: due now
    x = feats.step(state, silence)
    assert x["text_ids"][0].tolist() == [[tok.word_id("yeah"), 0], [tok.word_id("left"), tok.word_id("lake")]]


# ------------------------------------------------------------------------------------ property test

TINY = tiny_model()
CLEAN = synthetic_dialogue(64, seed=46)
TINY_POLICY = discriminating_policy(*TINY, CLEAN)

_NUMBER_KINDS = ["float", "int", "f16", "f32", "f64", "i8", "u64", "bool", "array0", "array1"]


def as_kind(value: float, kind: str):
    """``value`` given as one of the scalar forms a host might pass (numpy dtypes overflow as numpy does)."""
    with np.errstate(all="ignore"):
        finite = value if math.isfinite(value) else 0.0
        return {"float": lambda: float(value), "int": lambda: int(max(-2 ** 62, min(2 ** 62, finite))),
                "f16": lambda: np.float16(value), "f32": lambda: np.float32(value), "f64": lambda: np.float64(value),
                "i8": lambda: np.int8(max(-128, min(127, finite))), "u64": lambda: np.uint64(min(max(finite, 0), 2 ** 63)),
                "bool": lambda: bool(value > 0.5), "array0": lambda: np.array(value),
                "array1": lambda: np.array([value], np.float32)}[kind]()


JUNK_VALUES = [None, "0.5", "abc", b"\x00", [0.1, 0.2], np.array([]), np.zeros((2, 2)), 1j, np.complex64(1),
               {"v": 1}, math.nan, -math.inf, math.inf, np.float32(math.nan), object()]
JUNK_FRAMES = [None, 5, "frame", [], {}, {"va_listener": 0.0}, {"va_speaker": 0.0}]
JUNK_FIELDS = {"prosody": [np.zeros(7), np.zeros(9), ["a"] * 8, {"p": 1}, "prosody", np.full(8, math.nan)],
               "prosody_mask": [np.ones(7, bool), "mask", np.ones((8, 2), bool)],
               "text_listener": [5, [1, 2], b"yeah", ["ok", None], 1.5],
               "text_ids": [np.zeros((2, 3), int), np.zeros((2, 2)), np.full((2, 2), -1), np.full((2, 2), 10 ** 9),
                            "ids"]}
JUNK_PCM = [np.zeros(100), np.full(1280, math.nan), "pcm", [None] * 1280]


def readable(w) -> bool:
    """The word rule of ``StreamingFeatures.add_words``, as a test oracle."""
    if isinstance(w, Word):
        return math.isfinite(w.start) and math.isfinite(w.end)
    if not isinstance(w, tuple) or len(w) not in (2, 3) or not isinstance(w[0], str):
        return False
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in w[1:])


BAD_WORDS = [None, ("a",), ("x", "0.1"), ("y", math.nan), (5, 0.1), 3.0, ("a", 0.0, 0.1, 0.2),
             Word(0.0, math.inf, "w"), ("z", 0.0, -math.inf)]
WORD_CODES = st.lists(st.tuples(st.integers(0, len(WORDS) + len(BAD_WORDS) + 2), st.floats(-2.0, 3.0)), max_size=3)


def word_list(codes, t: int) -> list:
    """Words of frame ``t`` from drawn ``(code, dt)``: a word ending ``dt`` s after the frame's end (a tuple or,
    for odd codes, a ``Word``), one far ahead or behind (1e18 s), or an unreadable one."""
    now, out = (t + 1) * FRAME_S, []
    for code, dt in codes:
        if code < len(WORDS):
            out.append((WORDS[code], now + dt) if code % 2 else Word(now + dt - 0.1, now + dt, WORDS[code]))
        elif code < len(WORDS) + len(BAD_WORDS):
            out.append(BAD_WORDS[code - len(WORDS)])
        else:
            out.append(("far", 1e18) if code % 2 else ("past", -1e18))
    return out


@st.composite
def plans(draw):
    """A session: per frame, what ``step`` gets and what the rule says it equals (``None``: refused)."""
    n = draw(st.integers(8, 24))
    start = draw(st.integers(0, len(CLEAN) - n))
    out = []
    for t in range(n):
        frame = dict(CLEAN[start + t])
        kind = draw(st.sampled_from(["clean"] * 4 + ["va", "prosody", "junk_value", "junk_field", "junk_frame",
                                                     "junk_pcm"]))
        kwargs, equiv = {}, frame
        if kind == "va":  # finite or not, any dtype: clamped if its float32 value is finite, else refused
            key = draw(st.sampled_from(["va_listener", "va_speaker"]))
            value = as_kind(draw(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
                [1e30, -1e30, 1e-45, 1.0000001, -0.0, 255.0, 2.0 ** 64])), draw(st.sampled_from(_NUMBER_KINDS)))
            with np.errstate(all="ignore"):
                v32 = np.float32(float(np.asarray(value).reshape(())))
            frame = dict(frame, **{key: value})
            equiv = dict(frame, **{key: float(np.clip(v32, 0.0, 1.0))}) if np.isfinite(v32) else None
        elif kind == "prosody":  # some columns replaced, mask given or left to default (= finite)
            p = np.array(frame["prosody"], np.float64)
            m = np.array(frame["prosody_mask"], bool)
            for col in draw(st.lists(st.integers(0, 7), min_size=1, max_size=4)):
                p[col] = draw(st.floats(width=64) | st.sampled_from([1e30, -1e30, math.nan, math.inf]))
                m[col] = draw(st.booleans())
            given_mask = draw(st.booleans())
            with np.errstate(all="ignore"):
                p32 = p.astype(np.float32)
            mask = m if given_mask else np.isfinite(p32)
            frame = {k: v for k, v in frame.items() if k != "prosody_mask"} | {"prosody": p}
            if given_mask:
                frame["prosody_mask"] = m
            ok = not (mask & ~np.isfinite(p32)).any()
            clamped = np.where(mask, np.clip(np.nan_to_num(p32), LO, HI), 0.0).astype(np.float32)
            equiv = dict(frame, prosody=clamped, prosody_mask=mask) if ok else None
        elif kind == "junk_value":
            frame = dict(frame, **{draw(st.sampled_from(["va_listener", "va_speaker"])): draw(st.sampled_from(
                JUNK_VALUES))})
            equiv = None
        elif kind == "junk_field":
            key = draw(st.sampled_from(sorted(JUNK_FIELDS)))
            frame, equiv = dict(frame, **{key: draw(st.sampled_from(JUNK_FIELDS[key]))}), None
        elif kind == "junk_frame":
            frame, equiv = draw(st.sampled_from(JUNK_FRAMES)), None
        elif kind == "junk_pcm":
            kwargs = {draw(st.sampled_from(["listener_pcm", "speaker_pcm"])): draw(st.sampled_from(JUNK_PCM))}
            frame = draw(st.sampled_from([None, frame]))  # pcm alone (bad), or pcm and features (both: refused)
            equiv = None
        if draw(st.integers(0, 2)) == 0:  # words on a third of the steps
            kwargs |= {"listener_words": word_list(draw(WORD_CODES), t), "speaker_words": word_list(draw(WORD_CODES), t)}
        out.append((frame, kwargs, equiv))
    return out


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plans())
def test_step_never_raises_and_a_bad_frame_costs_itself_only(plan):
    backbone, head = TINY
    listener = StreamingListener(backbone, head, TINY_POLICY, deadline_s=NO_DEADLINE)
    got = [listener.step(frame, **kwargs) for frame, kwargs, _ in plan]  # never raises

    # the rule: clamped equivalents of accepted frames; refused frames dropped from the model's streams;
    # the readable words of every step, refused frames included
    dropped = {t for t, (_, _, equiv) in enumerate(plan) if equiv is None}
    words = {t: {k: [w for w in kw[k] if readable(w)] for k in ("listener_words", "speaker_words") if k in kw}
             for t, (_, kw, _) in enumerate(plan)}
    frames = [equiv if equiv is not None else CLEAN[0] for _, _, equiv in plan]
    want = reference(backbone, head, TINY_POLICY, frames, dropped, words)
    for t, (g, w) in enumerate(zip(got, want)):
        if t in dropped:
            assert g.action == "SILENT" and g.fault.startswith("features:"), (t, g)
            assert dataclasses.replace(g, fault=None) == dataclasses.replace(w, fault=None), t
        else:
            assert g == w, (t, g, w)  # not silenced, and decided as in the clean run, probabilities included
    n_bad = sum(len(kw[k]) - len(words[t][k]) for t, (_, kw, _) in enumerate(plan) for k in words[t])
    assert listener.faults["words:malformed"] == n_bad
    assert sum(v for k, v in listener.faults.items() if k.startswith("features:")) == len(dropped)
