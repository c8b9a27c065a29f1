"""Streaming listener: streaming == offline evaluation, causality, fault isolation (exceptions,
missed deadlines, NaN), state consistency after a fault, the batched pool, and the streaming features
(given features, word visibility, audio path)."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
from backchannel.corpora.audio import voice_activity
from backchannel.corpora.dialogue import Word
from backchannel.plugin.features import StreamingFeatures, split_frames
from backchannel.plugin.listener import ListenerPool, StreamingListener, run_offline

from backchannel.backbones import TimingBackbone
from backchannel.frames import FRAME_S
from backchannel.head import HeadOutputs, TimingHead
from backchannel.policy import Policy
from backchannel.text import TextTokenizer

# Timing-independent tests use a deadline no scheduler hiccup reaches (the machine is shared);
# the fault tests set their own.
NO_DEADLINE = 60.0
WORDS = ["so", "then", "we", "go", "left", "around", "the", "lake", "okay", "yeah", "mhm", "right"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def synthetic_dialogue(T: int, seed: int = 0) -> list[dict]:
    """Per-frame features (the framed dataset columns) of a made-up dialogue: the speaker talks in
    stretches of 1-3 s, the listener now and then; prosody where voiced (F0 masked otherwise); words."""
    rng = np.random.default_rng(seed)
    va_s = np.zeros(T)
    va_l = np.zeros(T)
    t = 0
    while t < T:
        n = min(rng.integers(12, 38), T - t)
        va_s[t:t + n] = 1.0
        va_s[t + n - 1] = rng.uniform(0.2, 0.9)  # partial last frame
        t += n + rng.integers(2, 12)
    va_l[(rng.random(T) < 0.08) | ((va_s == 0) & (rng.random(T) < 0.3))] = 1.0
    frames = []
    for t in range(T):
        pros = np.zeros(8, dtype=np.float32)
        mask = np.zeros(8, dtype=bool)
        for j, va in ((0, va_l[t]), (4, va_s[t])):
            mask[j + 1:j + 4] = True
            pros[j + 2] = 60.0 + 20 * va + rng.normal()
            pros[j + 3] = va
            if va > 0.5:
                mask[j] = True
                pros[j] = rng.normal(0, 2)
                pros[j + 1] = float(pros[j] < -1.3)
        frames.append({
            "va_listener": np.float32(va_l[t]), "va_speaker": np.float32(va_s[t]),
            "prosody": pros, "prosody_mask": mask,
            "text_listener": "yeah" if va_l[t] and rng.random() < 0.3 else "",
            "text_speaker": " ".join(rng.choice(WORDS, rng.integers(1, 3)))
            if va_s[t] and rng.random() < 0.4 else "",
        })
    return frames


def batched(frames: list[dict], tokenizer=None) -> dict[str, torch.Tensor]:
    """The whole-sequence inputs [1, T, ...] the offline evaluation gives ``backbone.forward``."""
    tok = tokenizer or TextTokenizer()
    return {
        "va_listener": torch.tensor(np.array([f["va_listener"] for f in frames]))[None],
        "va_speaker": torch.tensor(np.array([f["va_speaker"] for f in frames]))[None],
        "prosody": torch.tensor(np.stack([f["prosody"] for f in frames]))[None],
        "prosody_mask": torch.tensor(np.stack([f["prosody_mask"] for f in frames]))[None],
        "text_ids": torch.from_numpy(tok.encode_pair([f["text_listener"] for f in frames],
                                                     [f["text_speaker"] for f in frames]))[None],
    }


def offline_probs(backbone, head, frames) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        actions, types, _ = head(backbone(batched(frames)))
    return actions.softmax(-1)[0].double().numpy(), types.softmax(-1)[0].double().numpy()


def safe_threshold(values: np.ndarray, q: float, margin: float = 1e-4) -> float:
    """A threshold near the ``q`` quantile of ``values`` lying at least ``margin`` from every value,
    so that float rounding (streaming vs batched, ~1e-6) cannot flip a comparison."""
    v = np.sort(np.asarray(values).reshape(-1))
    gaps = (v[1:] - v[:-1]) > 2 * margin
    mids = (v[1:] + v[:-1]) / 2
    i = np.flatnonzero(gaps)
    best = i[np.argmin(np.abs(i / len(v) - q))]
    return float(mids[best])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    backbone = TimingBackbone().eval()  # default size: window 256 frames, so 520 frames wrap the ring
    head = TimingHead(backbone.hidden_size, hidden=32, kind="gru").eval()
    normalise(backbone)
    with torch.no_grad():  # spread the random head's probabilities so that thresholds matter
        head.action.weight.mul_(4.0)
    return backbone, head


def normalise(backbone):
    """Fit the prosody normalisation (as training does), else intensity in dB (~70) swamps the inputs."""
    inputs = batched(synthetic_dialogue(400, seed=100))
    backbone.features.fit(inputs["prosody"], inputs["prosody_mask"])


# ------------------------------------------------------------------------------------ streaming == offline

def test_streaming_equals_offline_evaluation(model):
    backbone, head = model
    frames = synthetic_dialogue(520, seed=1)
    probs, _ = offline_probs(backbone, head, frames)
    smoothing, refractory = 3, 0.8
    s = Policy(smoothing=smoothing).smooth(probs)
    on = safe_threshold(s[:, 1], 0.7)
    take = safe_threshold(s[:, 2], 0.9)
    policy = Policy(on=on, smoothing=smoothing, refractory=refractory, take_turn=take)
    onsets = Policy(on=on, smoothing=smoothing, refractory=refractory, take_turn=None).run(probs).backchannel_onsets
    assert len(onsets) >= 5
    decisions = run_offline(StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE), frames)

    assert [d.frame for d in decisions] == list(range(520))
    np.testing.assert_allclose([d.probability for d in decisions], s[:, 1], atol=1e-5, rtol=0)
    np.testing.assert_allclose([d.p_take_turn for d in decisions], s[:, 2], atol=1e-5, rtol=0)
    got = np.array([d.time for d in decisions if d.action == "BACKCHANNEL"])
    np.testing.assert_array_equal(got, onsets)
    bc_frames = set(np.round(onsets / FRAME_S).astype(int) - 1)
    want = ["BACKCHANNEL" if t in bc_frames else "TAKE_TURN" if s[t, 2] >= take else "SILENT"
            for t in range(520)]
    assert [d.action for d in decisions] == want
    assert "TAKE_TURN" in want


def test_decisions_are_causal(model):
    backbone, head = model
    frames = synthetic_dialogue(300, seed=2)
    policy = Policy(on=safe_threshold(offline_probs(backbone, head, frames)[0][:, 1], 0.8), refractory=0.3)
    listener = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE)
    before = run_offline(listener, frames)
    cut = 150
    changed = frames[:cut + 1] + synthetic_dialogue(300, seed=99)[cut + 1:]
    after = run_offline(listener, changed)
    assert after[:cut + 1] == before[:cut + 1]  # every field identical, probabilities included
    assert after[cut + 1:] != before[cut + 1:]


def test_run_offline_on_a_framed_row_and_reset(model):
    backbone, head = model
    frames = synthetic_dialogue(40, seed=3)
    row = {k: [f[k] for f in frames] for k in frames[0]} | {"dialogue": "d1"}
    listener = StreamingListener(backbone, head, Policy(on=0.3), deadline_s=NO_DEADLINE)
    a = run_offline(listener, row)
    b = run_offline(listener, frames)  # run_offline resets: same decisions again
    assert a == b and len(a) == 40
    with pytest.raises(ValueError, match="d1: column 'va_speaker' has 3 frames, expected 40"):
        list(split_frames(row | {"va_speaker": [0.0] * 3}))


def test_pool_equals_separate_listeners(model):
    backbone, head = model
    dialogues = [synthetic_dialogue(120, seed=10 + i) for i in range(3)]
    probs = np.concatenate([offline_probs(backbone, head, f)[0][:, 1] for f in dialogues])
    policy = Policy(on=safe_threshold(probs, 0.8), refractory=0.0, take_turn=None)
    alone = [run_offline(StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE), f)
             for f in dialogues]
    pool = ListenerPool(backbone, head, policy, 3, deadline_s=NO_DEADLINE)
    together = [pool.step([f[t] for f in dialogues]) for t in range(120)]
    for i in range(3):
        mine = [step[i] for step in together]
        assert [d.action for d in mine] == [d.action for d in alone[i]]
        assert [d.form for d in mine] == [d.form for d in alone[i]]
        np.testing.assert_allclose([d.probability for d in mine], [d.probability for d in alone[i]],
                                   atol=1e-5)
    assert sum(d.action == "BACKCHANNEL" for d in alone[0] + alone[1] + alone[2]) >= 3


def test_pool_isolates_one_sessions_faults(model, caplog):
    backbone, head = model
    dialogues = [synthetic_dialogue(30, seed=20 + i) for i in range(3)]
    bad = [list(d) for d in dialogues]
    bad[1][5] = {"va_listener": 0.0}  # session 1: a broken frame at tick 5

    class RowNaN(FlakyHead):  # session 2: NaN output and state at tick 8
        def step(self, state, x, inputs=None):
            i, self.calls = self.calls, self.calls + 1
            (a, b, _), state = self.head.step(state, x)
            if i == 8:
                a, state = a.clone(), state.clone()
                a[2], state[:, 2] = float("nan"), float("nan")
            return HeadOutputs(a, b), state

    policy = Policy(on=1.0, take_turn=0.0)  # healthy frames are TAKE_TURN
    pool = ListenerPool(backbone, RowNaN(head), policy, 3, deadline_s=NO_DEADLINE)
    caplog.set_level(logging.WARNING)
    out = [pool.step([d[t] for d in bad]) for t in range(30)]
    silent = {(i, t): step[i].fault for t, step in enumerate(out) for i in range(3)
              if step[i].action == "SILENT"}
    assert silent == {(1, 5): "features:ValueError", (2, 8): "model:nan"}
    assert len(caplog.records) == 2
    # session 0 never noticed; session 2 continues from its state before tick 8
    clean = ListenerPool(backbone, head, Policy(on=1.0, take_turn=0.0), 3, deadline_s=NO_DEADLINE)
    ref = [clean.step([d[t] for d in dialogues]) for t in range(30)]
    np.testing.assert_allclose([s[0].probability for s in out], [s[0].probability for s in ref], atol=1e-6)
    assert all(np.isfinite([s[2].probability for s in out]))


def test_step_hidden_equals_step(model):
    backbone, head = model
    frames = synthetic_dialogue(50, seed=9)
    policy = Policy(on=0.2, refractory=0.0)
    full = run_offline(StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE), frames)
    feats, state = StreamingFeatures(), backbone.init_state(1)
    fstate = feats.init_state(1)[0]
    head_only = StreamingListener(None, head, policy, deadline_s=NO_DEADLINE)
    got = []
    for f in frames:
        hidden, state = backbone.step(state, feats.step(fstate, f))
        got.append(head_only.step_hidden(hidden))
    assert got == full


# ------------------------------------------------------------------------------------ faults

class FlakyHead:
    """Wraps a head: raises on some calls, sleeps on others, returns NaN on others (call i = frame i)."""

    def __init__(self, head, raise_at=(), sleep_at=(), sleep_s=0.0, nan_at=()):
        self.head, self.raise_at, self.sleep_at, self.nan_at = head, raise_at, sleep_at, nan_at
        self.sleep_s = sleep_s
        self.calls = 0

    def init_state(self, batch_size=1):
        return self.head.init_state(batch_size)

    def step(self, state, x, inputs=None):
        i, self.calls = self.calls, self.calls + 1
        if i in self.raise_at:
            raise RuntimeError(f"injected failure at call {i}")
        if i in self.sleep_at:
            time.sleep(self.sleep_s)
        (a, b, _), state = self.head.step(state, x)
        if i in self.nan_at:  # a NaN that also poisons the recurrent state
            return HeadOutputs(a * float("nan"), b), state * float("nan")
        return HeadOutputs(a, b), state


def reference_p_bc(backbone, head, frames, skip_head=()):
    """p(BACKCHANNEL) per frame: backbone over every frame, head stepped over all but ``skip_head``."""
    with torch.no_grad():
        hidden = backbone(batched(frames))[0]
    state, out = head.init_state(1), []
    for t in range(len(frames)):
        if t in skip_head:
            out.append(np.nan)
            continue
        (a, _, _), state = head.step(state, hidden[t:t + 1])
        out.append(a.softmax(-1)[0, 1].item())
    return np.array(out)


def test_fault_injection_keeps_the_host_loop_running(model, caplog):
    backbone, head = model
    frames = synthetic_dialogue(60, seed=4)
    flaky = FlakyHead(head, raise_at={10, 20}, sleep_at={30}, sleep_s=0.45)
    policy = Policy(on=1.0, take_turn=0.0)  # every healthy frame is TAKE_TURN, so SILENT marks the faults
    listener = StreamingListener(backbone, flaky, policy, deadline_s=0.2)
    caplog.set_level(logging.WARNING)
    decisions = [listener.step(f) for f in frames]  # the host loop: must never raise

    assert [d.frame for d in decisions] == list(range(60))  # no dropped frames
    silent = {d.frame: d.fault for d in decisions if d.action == "SILENT"}
    assert silent == {10: "model:RuntimeError", 20: "model:RuntimeError", 30: "deadline"}
    assert dict(listener.faults) == {"model:RuntimeError": 2, "deadline": 1}
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 2 and all("\n" not in r.getMessage() for r in records)  # one line per kind
    assert "frame 10" in records[0].getMessage() and "injected failure" in records[0].getMessage()
    assert "deadline" in records[1].getMessage()

    # State after the faults: the backbone consumed every frame; the head skipped the frames where it
    # raised and kept the late frame 30 (its work was done)
    want = reference_p_bc(backbone, head, frames, skip_head={10, 20})
    got = np.array([np.nan if d.fault and d.fault != "deadline" else d.probability for d in decisions])
    np.testing.assert_allclose(got, want, atol=1e-5)
    naive = reference_p_bc(backbone, head, frames)  # a head that had seen frame 10 differs afterwards
    assert abs(naive[11] - want[11]) > 1e-4


def test_backbone_failure_mid_step_drops_the_frame():
    torch.manual_seed(5)
    backbone = TimingBackbone(d_model=32, n_heads=2, n_layers=3, window=16).eval()
    normalise(backbone)
    head = TimingHead(32, hidden=16, kind="gru").eval()
    frames = synthetic_dialogue(60, seed=5)
    block = backbone.blocks[1]
    original, calls = block.step, {"n": 0}

    def fail_once(*args):  # layer 0 has already written its key/value for this frame
        calls["n"] += 1
        if calls["n"] == 26:  # frame 25, past the 16-frame ring: a live slot is overwritten
            raise RuntimeError("injected backbone failure")
        return original(*args)

    block.step = fail_once
    listener = StreamingListener(backbone, head, Policy(on=1.0, take_turn=None), deadline_s=NO_DEADLINE)
    decisions = [listener.step(f) for f in frames]
    del block.step
    assert decisions[25].fault == "model:RuntimeError" and int(listener.backbone_state.t) == 59
    want = reference_p_bc(backbone, head, frames[:25] + frames[26:])
    got = np.array([d.probability for d in decisions[:25] + decisions[26:]])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_nan_and_bad_input_frames_are_silent(model, caplog):
    backbone, head = model
    frames = synthetic_dialogue(12, seed=6)
    frames[4] = {"va_listener": 0.0}  # no va_speaker
    # head call 6 is frame 7: frame 4 never reaches the head
    listener = StreamingListener(backbone, FlakyHead(head, nan_at={6}), Policy(on=1.0, take_turn=0.0),
                                 deadline_s=NO_DEADLINE)
    caplog.set_level(logging.WARNING)
    decisions = [listener.step(f) for f in frames]
    silent = {d.frame: d.fault for d in decisions if d.action == "SILENT"}
    assert silent == {4: "features:ValueError", 7: "model:nan"}
    assert "missing 'va_speaker'" in caplog.records[0].getMessage()
    assert listener.feature_state[0].t == 12 and int(listener.backbone_state.t) == 11  # frame 4 never reached it


def test_quiet_switch(model):
    backbone, head = model
    policy = Policy(on=0.0, refractory=0.0, take_turn=0.0)
    listener = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE)
    frames = synthetic_dialogue(6, seed=7)
    actions = []
    for t, f in enumerate(frames):
        listener.quiet = 2 <= t < 4
        actions.append(listener.step(f).action)
    # on=0: the trigger fires at frame 0 and never re-arms (nothing is < 0); the rest take the turn
    assert actions == ["BACKCHANNEL", "TAKE_TURN", "SILENT", "SILENT", "TAKE_TURN", "TAKE_TURN"]


# ------------------------------------------------------------------------------------ features

def test_given_features_equal_the_batched_inputs():
    frames = synthetic_dialogue(80, seed=8)
    whole = batched(frames)
    feats = StreamingFeatures()
    state = feats.init_state(1)[0]
    for t, f in enumerate(frames):
        got = feats.step(state, f)
        for key, x in whole.items():
            assert torch.equal(got[key], x[:, t]), (key, t)


def test_words_become_visible_at_their_end_frame():
    tok = TextTokenizer()
    feats = StreamingFeatures(tokenizer=tok)
    state = feats.init_state(1)[0]
    silence = {"va_listener": 0.0, "va_speaker": 0.0}
    ids = []
    for t in range(14):
        words = {}
        if t == 0:  # known early: "go" ends in frame 2 (0.17 s), "left" in frame 12 (1.0 s)
            words["speaker_words"] = [Word(0.1, 0.17, "go"), ("left", 1.0)]
        if t == 5:  # arrives late: ended at 0.1 s (frame 1), visible from now
            words["listener_words"] = [("okay", 0.1)]
        ids.append(feats.step(state, silence, **words)["text_ids"][0])
    visible = {t: x for t, x in enumerate(ids) if x.any()}
    assert sorted(visible) == [2, 5, 12]
    assert visible[2].tolist() == [[0, 0], [tok.word_id("go"), 0]]
    assert visible[5].tolist() == [[tok.word_id("okay"), 0], [0, 0]]
    assert visible[12].tolist() == [[0, 0], [tok.word_id("left"), 0]]


def test_feature_errors_name_the_frame_and_keep_the_clock():
    feats = StreamingFeatures()
    state = feats.init_state(1)[0]
    feats.step(state, {"va_listener": 0.0, "va_speaker": 0.0})
    with pytest.raises(ValueError, match="frame 1: prosody value 2 is NaN/inf but not masked"):
        feats.step(state, {"va_listener": 0.0, "va_speaker": 0.0, "prosody": [0, 0, np.nan, 0, 0, 0, 0, 0],
                           "prosody_mask": [True] * 8})
    with pytest.raises(ValueError, match="frame 2: listener: audio frame has 100 samples, expected 1280"):
        feats.step(state, listener_pcm=np.zeros(100))
    with pytest.raises(ValueError, match="frame 3: no input"):
        feats.step(state)
    assert state.t == 4


def tone_with_pauses(sr: int, seed: int = 0) -> np.ndarray:
    """0.8 s of noise, 1.2 s of a 200 Hz harmonic tone, 0.4 s at 140 Hz, 0.8 s of noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(3.2 * sr)) / sr
    phase = 2 * np.pi * np.cumsum(np.where(t < 2.0, 200.0, 140.0)) / sr
    x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6)) * ((t >= 0.8) & (t < 2.4))
    return x + rng.normal(0, 0.003, len(t))


def stream_audio(feats: StreamingFeatures, x: np.ndarray, sr: int) -> list[dict]:
    n = round(FRAME_S * sr)
    state = feats.init_state(1)[0]
    return [feats.step(state, listener_pcm=x[i * n:(i + 1) * n]) for i in range(len(x) // n)]


def test_audio_path_voice_activity_and_prosody():
    sr = 16000
    x = tone_with_pauses(sr)
    rows = stream_audio(StreamingFeatures(sr, min_voiced_s=0.5), x, sr)
    va = np.array([r["va_listener"].item() for r in rows])
    np.testing.assert_array_equal(va, voice_activity(x, sr))  # same webrtcvad decisions as offline
    pros = np.stack([r["prosody"][0, :4].numpy() for r in rows])
    f0_ok = np.array([bool(r["prosody_mask"][0, 0]) for r in rows])
    assert not any(r["prosody_mask"][0, 4:].any() for r in rows)  # no speaker audio: masked
    # voiced 10 ms samples from frame 10 (0.8 s); F0 unmasked once 0.5 s of them is seen (~6 per frame)
    np.testing.assert_array_equal(pros[:, 3] > 0.5, (np.arange(40) >= 10) & (np.arange(40) < 30))
    assert not f0_ok[:17].any() and f0_ok[19:30].all() and not f0_ok[30:].any()
    np.testing.assert_allclose(pros[19:25, 0], 0.0, atol=0.3)  # 200 Hz = the running median
    np.testing.assert_allclose(pros[26:30, 0], 12 * np.log2(140 / 200), atol=0.3)  # -6.2 st
    assert pros[26:30, 1].tolist() == [1.0] * 4  # below the running 26th percentile: low pitch
    assert pros[12:28, 2].min() > pros[32:, 2].max() + 20  # tone is > 20 dB louder than the noise


def test_audio_path_is_causal_and_takes_8k():
    sr = 8000
    x = tone_with_pauses(sr)
    y = x.copy()
    y[int(1.6 * sr):] = 0.5 * np.sin(np.arange(len(y) - int(1.6 * sr)) * 0.3)  # change everything after 1.6 s
    a = stream_audio(StreamingFeatures(sr), x, sr)
    b = stream_audio(StreamingFeatures(sr), y, sr)
    for t in range(20):  # frames 0-19 end by 1.6 s
        for key in a[t]:
            assert torch.equal(a[t][key], b[t][key]), (key, t)
    assert not all(torch.equal(a[t]["prosody"], b[t]["prosody"]) for t in range(20, 40))
    va = np.array([r["va_listener"].item() for r in a])
    assert va[11:29].min() == 1.0 and va[:9].max() == 0.0 and va[32:].max() == 0.0


def test_audio_less_dataset_rows_replay_with_masked_prosody(model):
    """Dataset rows without audio store prosody as 0 x 8; replaying one equals replaying it with
    explicit all-masked prosody, and the logistic baseline featurises it the same way."""
    from backchannel.baselines import HandcraftedFeatures

    backbone, head = model
    frames = synthetic_dialogue(30, seed=5)
    for f in frames:
        f["prosody"], f["prosody_mask"] = [0.0] * 8, [False] * 8
    full = {k: [f[k] for f in frames] for k in frames[0]} | {"dialogue": "d2"}
    stored = full | {"prosody": [], "prosody_mask": []}
    listener = StreamingListener(backbone, head, Policy(on=0.3), deadline_s=NO_DEADLINE)
    assert run_offline(listener, stored) == run_offline(listener, full)
    assert all(not np.any(f["prosody_mask"]) for f in split_frames(stored))  # absent audio: all masked
    hf = HandcraftedFeatures()
    row = {"va_speaker": full["va_speaker"], "va_listener": full["va_listener"], "prosody": [], "prosody_mask": []}
    x = hf.from_row(row)
    y = hf(full["va_speaker"], full["va_listener"], None, np.zeros((30, 8)), np.zeros((30, 8), bool))
    np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------ one frame-input path

def _round_trip(row, tokenizer):
    """A dataset row cut into frames and fed through the streaming builder, stacked along time."""
    feats = StreamingFeatures(tokenizer=tokenizer)
    state = feats.init_state(1)[0]
    frames = [feats.step(state, f) for f in split_frames(row)]
    return {k: torch.cat([f[k] for f in frames]) for k in frames[0]}


@pytest.mark.parametrize("with_audio", [False, True])
def test_row_frames_streaming_round_trip_equals_the_row_builder(with_audio):
    """row -> split_frames -> StreamingFeatures.step == FrameInputs.from_row, exactly, with and without audio."""
    from backchannel.inputs import FrameInputs

    frames = synthetic_dialogue(90, seed=11)
    row = {k: [f[k] for f in frames] for k in frames[0]} | {"dialogue": "d3", "n_frames": 90}
    if not with_audio:
        row |= {"prosody": np.zeros((0, 8), np.float32), "prosody_mask": np.zeros((0, 8), bool)}
    tok = TextTokenizer()
    whole = FrameInputs.from_row(row, tok)
    streamed = _round_trip(row, tok)
    assert set(streamed) == set(whole)
    for key in whole:
        assert torch.equal(streamed[key], whole[key]), key
    assert bool(whole["prosody_mask"].any()) == with_audio


def test_real_row_round_trip(corpora_root, tmp_path):
    """The same on a real Map Task dialogue (prepared here): a dataset row read back from Arrow."""
    from backchannel.corpora.dataset import build_dataset, load_prepared
    from backchannel.corpora.maptask import read_maptask_dialogue

    from backchannel.evaluation.data import load_rows
    from backchannel.inputs import FrameInputs

    d = read_maptask_dialogue(corpora_root / "maptask", "q7ec1").with_split("test")
    build_dataset([d], tmp_path / "ds", corpus="maptask", progress=False)
    dsd, _ = load_prepared(tmp_path / "ds")
    for row in (dsd["test"][0], load_rows(dsd["test"], progress=False)[1]):
        tok = TextTokenizer()
        whole, streamed = FrameInputs.from_row(row, tok), _round_trip(row, tok)
        for key in whole:
            assert torch.equal(streamed[key], whole[key]), key


def test_pool_resets_one_session_and_leaves_the_others_bit_identical(model):
    backbone, head = model
    dialogues = [synthetic_dialogue(90, seed=30 + i) for i in range(3)]
    policy = Policy(on=0.3, refractory=0.0, take_turn=0.5)
    a = ListenerPool(backbone, head, policy, 3, deadline_s=NO_DEADLINE)
    b = ListenerPool(backbone, head, policy, 3, deadline_s=NO_DEADLINE)
    out_a, out_b = [], []
    for t in range(90):
        if t == 40:
            b.reset(1)  # session 1 restarts (a new caller); sessions 0 and 2 go on
        out_a.append(a.step([d[t] for d in dialogues]))
        out_b.append(b.step([d[t] for d in dialogues]))
    for i in (0, 2):
        assert [s[i] for s in out_a] == [s[i] for s in out_b]  # every field, probabilities bit-identical
    assert [s[1] for s in out_a[:40]] == [s[1] for s in out_b[:40]]
    assert out_b[40][1].frame == 0 and b.t(1) == 50 and b.t(0) == 90
    # the reset session now equals a fresh session fed the same frames from frame 40 on
    fresh = ListenerPool(backbone, head, policy, 3, deadline_s=NO_DEADLINE)
    ref = [fresh.step([d[40 + t] for d in dialogues]) for t in range(50)]
    np.testing.assert_allclose([s[1].probability for s in out_b[40:]], [s[1].probability for s in ref], atol=1e-6)
