"""Timing backbone: streaming == batched, causality, sliding window, masked prosody, VAP targets and
zero-shot probabilities (hand-computed), and the text-stream tokenizer."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backchannel.backbones import (
    FrameFeatures,
    TimingBackbone,
    VAPHead,
    vap_loss,
    vap_states,
    vap_targets,
    vap_zero_shot,
)
from backchannel.backbones.timing import vap_bin_weights
from backchannel.text import LEXICON_WORDS, PAD_ID, TextTokenizer


def make_inputs(B: int, T: int, seed: int = 0, k: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "va_listener": torch.rand(B, T, generator=g),
        "va_speaker": torch.rand(B, T, generator=g),
        "prosody": torch.randn(B, T, 8, generator=g) * 5,
        "prosody_mask": torch.rand(B, T, 8, generator=g) > 0.3,
        "text_ids": torch.randint(0, 4096, (B, T, 2, k), generator=g)
        * (torch.rand(B, T, 2, k, generator=g) > 0.7),
    }


def run_streaming(model: TimingBackbone, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    B, T = inputs["va_listener"].shape
    state, outs = model.init_state(B), []
    for t in range(T):
        hidden, state = model.step(state, {k: v[:, t] for k, v in inputs.items()})
        outs.append(hidden)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("config", [dict(window=16, d_model=64), dict()])  # small window; default (W=256)
def test_streaming_equals_batched_beyond_window(config):
    torch.manual_seed(0)
    model = TimingBackbone(**config).eval()
    T = 3 * model.config.window + 7 if model.config.window < 64 else model.config.window + 40
    inputs = make_inputs(2, T)
    with torch.no_grad():
        batched = model(inputs)
    streamed = run_streaming(model, inputs)
    assert batched.shape == (2, T, model.hidden_size)
    torch.testing.assert_close(streamed, batched, atol=1e-5, rtol=0)


def test_reset_is_a_new_state():
    torch.manual_seed(1)
    model = TimingBackbone(window=8, d_model=32, n_layers=2).eval()
    inputs = make_inputs(1, 12, seed=3)
    first = run_streaming(model, inputs)
    again = run_streaming(model, inputs)  # fresh state: same outputs
    torch.testing.assert_close(first, again, atol=0, rtol=0)


def test_causal_future_frames_do_not_change_the_past():
    torch.manual_seed(2)
    model = TimingBackbone(window=16, d_model=64).eval()
    inputs = make_inputs(2, 50, seed=4)
    changed = {k: v.clone() for k, v in inputs.items()}
    t = 30
    changed["va_listener"][:, t + 1 :] = 1 - changed["va_listener"][:, t + 1 :]
    changed["prosody"][:, t + 1 :] += 3.0
    changed["text_ids"][:, t + 1 :] = 7
    with torch.no_grad():
        a, b = model(inputs), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-3


def test_one_layer_sees_exactly_window_frames():
    torch.manual_seed(3)
    W = 8
    model = TimingBackbone(window=W, d_model=32, n_layers=1).eval()
    inputs = make_inputs(1, 30, seed=5)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["va_speaker"][:, 10] += 0.9
    with torch.no_grad():
        diff = (model(inputs) - model(changed)).abs().amax(dim=(0, 2))
    assert diff[:10].max() == 0  # before the change
    assert (diff[10 : 10 + W] > 1e-4).all()  # frames 10..17 attend to frame 10
    assert diff[10 + W :].max() < 1e-6  # frame 18 on: frame 10 is out of the window


def test_masked_prosody_is_really_masked():
    torch.manual_seed(4)
    model = TimingBackbone(window=16, d_model=32, n_layers=2).eval()
    inputs = make_inputs(2, 20, seed=6)
    changed = {k: v.clone() for k, v in inputs.items()}
    mask = changed["prosody_mask"]
    changed["prosody"][~mask] = torch.where(torch.rand(int((~mask).sum())) > 0.5, float("nan"), 1e4)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), model(changed), atol=0, rtol=0)
        # an unmasked value does reach the output
        changed["prosody"][mask] += 1.0
        assert (model(inputs) - model(changed)).abs().max() > 1e-3


def test_text_is_ignored_without_use_text():
    torch.manual_seed(5)
    model = TimingBackbone(window=8, d_model=32, n_layers=1, use_text=False).eval()
    inputs = make_inputs(1, 10, seed=7)
    no_text = {k: v for k, v in inputs.items() if k != "text_ids"}
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), model(no_text), atol=0, rtol=0)


def test_bad_input_shape_names_the_key():
    model = TimingBackbone(window=8, d_model=32, n_layers=1)
    inputs = make_inputs(1, 10)
    inputs["prosody"] = inputs["prosody"][..., :4]
    with pytest.raises(ValueError, match="prosody has shape"):
        model(inputs)
    with pytest.raises(ValueError, match="missing keys"):
        model({"va_listener": torch.zeros(1, 3)})


def test_frame_features_fit_masked_mean_std():
    feats = FrameFeatures()
    prosody = torch.zeros(4, 8)
    mask = torch.zeros(4, 8, dtype=torch.bool)
    prosody[:, 2] = torch.tensor([60.0, 70.0, 1e6, 80.0])  # listener intensity; third value masked
    mask[:, 2] = torch.tensor([True, True, False, True])
    feats.fit(prosody, mask)
    assert feats.shift[2].item() == pytest.approx(70.0)
    assert feats.scale[2].item() == pytest.approx(math.sqrt(200 / 3), rel=1e-6)
    assert feats.shift[0].item() == 0.0 and feats.scale[0].item() == 1.0  # never observed: identity
    out = feats({"va_listener": torch.tensor([0.5]), "va_speaker": torch.tensor([0.0]),
                 "prosody": prosody[:1], "prosody_mask": mask[:1]})
    assert out.shape == (1, 18)
    assert out[0, 0].item() == 0.5 and out[0, 4].item() == pytest.approx(-10 / math.sqrt(200 / 3))
    assert out[0, 10 + 2].item() == 1.0 and out[0, 10].item() == 0.0  # mask flags


# ----------------------------------------------------------------------------- VAP

def test_vap_bin_weights_cover_two_seconds():
    w = vap_bin_weights()
    assert w.shape == (25, 4)
    np.testing.assert_allclose(w.sum(0), 1.0)
    # 0.2 s bin = 2.5 frames: frames 0, 1 fully, frame 2 half
    np.testing.assert_allclose(w[:3, 0], [1 / 2.5, 1 / 2.5, 0.5 / 2.5])
    np.testing.assert_allclose(w[2, 1], 0.5 / 5)


def test_vap_targets_hand_computed():
    n = 30
    listener, speaker = np.zeros(n), np.zeros(n)
    listener[1:3] = 1.0  # frames 1, 2
    speaker[9:13] = 1.0  # frames 9..12
    speaker[16:21] = 1.0  # frames 16..20
    y = vap_targets(listener, speaker)
    assert y.shape == (n,) and y.dtype == torch.long
    # frame 0, window = frames 1..25. listener bin0 (frames 1, 2, half of 3): 2/2.5 = 0.8 -> on.
    # speaker bin2 (half 8, 9..15): 4/7.5 -> on; bin3 (16..25): 5/10 = 0.5 -> on (>= 0.5).
    assert y[0].item() == 1 + 2**6 + 2**7
    # frame 1, window = frames 2..26: listener bin0 = 1/2.5 off; speaker bin2 (half 9, 10..16) = 4.5/7.5 on,
    # bin3 (17..26) = 4/10 off.
    assert y[1].item() == 2**6
    # only frames 0..4 have a full 25-frame future
    assert (y[5:] == -100).all() and (y[:5] >= 0).all()


def test_vap_targets_half_frames_and_fractions():
    n = 26
    z = np.zeros(n)
    only3 = z.copy()
    only3[3] = 1.0  # half in bin0 (0.5/2.5), half in bin1 (0.5/5): nothing active
    assert vap_targets(only3, z)[0].item() == 0
    three_to_5 = z.copy()
    three_to_5[3:6] = 1.0  # bin1: (0.5 + 2) / 5 = 0.5 -> on; bin0: 0.2 -> off
    assert vap_targets(three_to_5, z)[0].item() == 2
    frac = z.copy()
    frac[1], frac[2] = 0.6, 0.65  # bin0 mean = 1.25 / 2.5 = 0.5 -> on
    assert vap_targets(frac, z)[0].item() == 1
    assert vap_targets(z, frac)[0].item() == 2**4  # the speaker's bits come after the listener's
    batched = vap_targets(np.stack([only3, three_to_5]), np.stack([z, z]))
    assert batched.shape == (2, n) and batched[:, 0].tolist() == [0, 2] and batched[:, 1:].eq(-100).all()
    assert (vap_targets(z[:25], z[:25]) == -100).all()  # too short for any target
    # end-padded batch: the second sequence has 27 real frames -> only its frames 0, 1 get targets
    padded = vap_targets(torch.zeros(2, 40), torch.zeros(2, 40), lengths=torch.tensor([40, 27]))
    assert (padded[0, :15] == 0).all() and (padded[0, 15:] == -100).all()
    assert padded[1, :2].tolist() == [0, 0] and (padded[1, 2:] == -100).all()


def test_vap_states_bit_layout():
    s = vap_states()
    assert s.shape == (256, 2, 4)
    assert s[1 + 2**6 + 2**7].tolist() == [[1, 0, 0, 0], [0, 0, 1, 1]]


def test_vap_zero_shot_hand_built_distributions():
    def logits_for(classes):
        p = torch.full((256,), 1e-12)
        for c, w in classes.items():
            p[c] = w
        return p.log()[None]

    listener_now = logits_for({0b0011: 1.0})  # listener active in bins 0, 1; speaker silent
    assert vap_zero_shot(listener_now)["p_now"].item() == pytest.approx(1.0, abs=1e-4)
    speaker_all = logits_for({0b1111 << 4: 1.0})
    assert vap_zero_shot(speaker_all)["p_now"].item() == pytest.approx(0.0, abs=1e-4)
    half = vap_zero_shot(logits_for({0b0011: 0.5, 0b0011 << 4: 0.5}))
    assert half["p_now"].item() == pytest.approx(0.5, abs=1e-4)
    # p_future looks at bins 2-3: listener bins 2,3 (weight .25) vs speaker bins 2,3 (weight .75)
    fut = vap_zero_shot(logits_for({0b1100: 0.25, 0b1100 << 4: 0.75}))
    assert fut["p_future"].item() == pytest.approx(0.25, abs=1e-4)
    # backchannel subset: listener bin 1 only (short), speaker active in the last bin
    bc = vap_zero_shot(logits_for({0b0010 | (0b1000 << 4): 0.3, 0b0011: 0.7}))
    assert bc["p_backchannel"].item() == pytest.approx(0.3, abs=1e-4)


def test_vap_head_and_loss_ignore_index():
    torch.manual_seed(6)
    head = VAPHead(16)
    logits = head(torch.randn(2, 5, 16))
    assert logits.shape == (2, 5, 256)
    targets = torch.tensor([[3, -100, 7, 255, -100], [-100, -100, 0, 1, 2]])
    valid = targets != -100
    expected = F.cross_entropy(logits[valid], targets[valid])
    torch.testing.assert_close(vap_loss(logits, targets), expected)
    none = vap_loss(logits, torch.full((2, 5), -100))
    assert none.item() == 0.0 and none.requires_grad


# ----------------------------------------------------------------------------- text stream

def test_tokenizer_lexicon_ids_and_hashing():
    tok = TextTokenizer()
    ids = [tok.word_id(w) for w in LEXICON_WORDS]
    assert ids == list(range(1, len(LEXICON_WORDS) + 1))  # own ids, no collisions
    assert tok.word_id("Uh-huh,") == tok.word_id("uhhuh") == LEXICON_WORDS.index("uhhuh") + 1
    n_fixed = len(LEXICON_WORDS) + 1
    assert tok.word_id("Map") == n_fixed + zlib.crc32(b"map") % (4096 - n_fixed)  # documented formula
    assert n_fixed <= tok.word_id("landmark") < 4096
    assert tok.word_id("...") == PAD_ID


def test_tokenizer_frames_keep_last_k_words():
    tok = TextTokenizer(k=2)
    mhm, yeah = tok.word_id("mhm"), tok.word_id("yeah")
    assert tok.encode_frame("") == [0, 0]
    assert tok.encode_frame("mhm") == [mhm, 0]
    assert tok.encode_frame("okay mhm yeah") == [mhm, yeah]
    assert tok.encode_frame(["okay", "mhm yeah"]) == [mhm, yeah]
    pair = tok.encode_pair(["", "mhm", ""], ["yeah", "", ""])
    assert pair.shape == (3, 2, 2) and pair.dtype == np.int64
    assert pair[1, 0].tolist() == [mhm, 0] and pair[0, 1].tolist() == [yeah, 0] and pair[2].sum() == 0
    with pytest.raises(ValueError, match="listener 1 frames, speaker 2 frames"):
        tok.encode_pair([""], ["", ""])
