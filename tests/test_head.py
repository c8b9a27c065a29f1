"""Timing head: streaming == batched, loss with class weights / focal term / type masking (hand-computed)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from backchannel.backbones import FrameFeatures
from backchannel.corpora.events import BACKCHANNEL, SILENT, TAKE_TURN
from backchannel.head import (
    PAUSE_PRIOR_FRAMES,
    SHARE_DECAY,
    TimingHead,
    floor_context,
    focal_cross_entropy,
    head_loss,
    inverse_frequency_weights,
)


@pytest.mark.parametrize("kind", ["gru", "mlp"])
def test_step_equals_forward(kind):
    torch.manual_seed(0)
    head = TimingHead(24, hidden=16, kind=kind).eval()
    x = torch.randn(3, 40, 24)
    with torch.no_grad():
        actions, types, onset = head(x)
    assert actions.shape == (3, 40, 3) and types.shape == (3, 40, 5) and onset is None
    state, got_a, got_t = head.init_state(3), [], []
    for t in range(40):
        (a, b, _), state = head.step(state, x[:, t])
        got_a.append(a)
        got_t.append(b)
    torch.testing.assert_close(torch.stack(got_a, 1), actions, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(got_t, 1), types, atol=1e-5, rtol=0)


def test_gru_carries_state_and_mlp_does_not():
    torch.manual_seed(1)
    x = torch.randn(1, 6, 8)
    x2 = x.clone()
    x2[:, 0, 0] += 5.0  # one feature (a constant shift of all would vanish in the LayerNorm)
    for kind, should_differ in (("gru", True), ("mlp", False)):
        head = TimingHead(8, hidden=8, kind=kind).eval()
        with torch.no_grad():
            late = (head(x)[0][:, -1] - head(x2)[0][:, -1]).abs().max().item()
        assert (late > 1e-6) == should_differ, kind


def test_head_on_raw_frame_features():
    feats = FrameFeatures()
    head = TimingHead(feats.hidden_size, kind="mlp")
    frames = {"va_listener": torch.rand(2, 7), "va_speaker": torch.rand(2, 7),
              "prosody": torch.randn(2, 7, 8), "prosody_mask": torch.ones(2, 7, 8, dtype=torch.bool)}
    actions, types, _ = head(feats(frames))
    assert actions.shape == (2, 7, 3) and types.shape == (2, 7, 5)


def test_focal_loss_hand_computed():
    # frame 0: p = (.25, .25, .5), target 2; frame 1: p = (.6, .2, .2), target 0; frame 2 ignored
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)], [math.log(3.0), 0.0, 0.0], [9.0, 0.0, 0.0]])
    target = torch.tensor([2, 0, -100])
    w = torch.tensor([1.0, 2.0, 3.0])
    ce0, ce1 = -math.log(0.5), -math.log(0.6)
    assert focal_cross_entropy(logits, target).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    expected = (3 * 0.5**2 * ce0 + 1 * 0.4**2 * ce1) / (3 + 1)
    assert focal_cross_entropy(logits, target, w, gamma=2.0).item() == pytest.approx(expected, rel=1e-6)
    # gamma = 0 is PyTorch's weighted cross-entropy
    expected_ce = F.cross_entropy(logits, target, weight=w)
    torch.testing.assert_close(focal_cross_entropy(logits, target, w), expected_ce)


def test_type_loss_only_on_backchannel_frames():
    action = torch.tensor([[SILENT, BACKCHANNEL, TAKE_TURN, BACKCHANNEL, -100]])
    bc_type = torch.tensor([[2, 3, 1, -100, 4]])  # only frame 1 is a BACKCHANNEL frame with a type
    action_logits = torch.zeros(1, 5, 3)
    type_logits = torch.randn(1, 5, 5)
    type_logits[0, 1] = 0.0  # uniform over 5 types at the one counted frame
    out = head_loss(action_logits, type_logits, action, bc_type)
    assert out["type_loss"].item() == pytest.approx(math.log(5), rel=1e-6)
    assert out["action_loss"].item() == pytest.approx(math.log(3), rel=1e-6)  # 4 labelled frames, uniform
    assert out["loss"].item() == pytest.approx(math.log(3) + math.log(5), rel=1e-6)
    # type logits at other frames do not matter
    type_logits2 = type_logits.clone()
    type_logits2[0, [0, 2, 3, 4]] += 10 * torch.randn(4, 5)
    again = head_loss(action_logits, type_logits2, action, bc_type)
    assert again["type_loss"].item() == pytest.approx(math.log(5))
    # the dataset's encoding: int8 labels, bc_type -1 where the frame is not a backchannel
    bc_type8 = torch.tensor([[-1, 3, -1, -1, -1]], dtype=torch.int8)
    out8 = head_loss(action_logits, type_logits, action.to(torch.int8), bc_type8)
    assert out8["type_loss"].item() == pytest.approx(math.log(5), rel=1e-6)


def test_class_weights_change_the_action_loss():
    action = torch.tensor([SILENT, SILENT, SILENT, BACKCHANNEL])
    logits = torch.tensor([[2.0, 0.0, 0.0]] * 3 + [[2.0, 0.0, 0.0]])  # confident SILENT everywhere
    bc_type = torch.full((4,), -100)
    plain = head_loss(logits, torch.zeros(4, 5), action, bc_type)
    w = torch.tensor([1.0, 3.0, 1.0])
    weighted = head_loss(logits, torch.zeros(4, 5), action, bc_type, class_weights=w)
    p_silent = math.exp(2) / (math.exp(2) + 2)
    ce_right, ce_wrong = -math.log(p_silent), -math.log(1 / (math.exp(2) + 2))
    assert plain["action_loss"].item() == pytest.approx((3 * ce_right + ce_wrong) / 4, rel=1e-6)
    assert weighted["action_loss"].item() == pytest.approx((3 * ce_right + 3 * ce_wrong) / 6, rel=1e-6)
    assert plain["type_loss"].item() == 0.0  # no backchannel type anywhere


def test_loss_backpropagates_to_the_head():
    torch.manual_seed(2)
    head = TimingHead(8, hidden=8)
    actions, types, _ = head(torch.randn(2, 5, 8))
    action = torch.randint(0, 3, (2, 5))
    bc_type = torch.randint(0, 5, (2, 5))
    head_loss(actions, types, action, bc_type, focal_gamma=1.0)["loss"].backward()
    assert head.action.weight.grad.abs().sum() > 0 and head.body.weight_ih_l0.grad.abs().sum() > 0


def test_inverse_frequency_weights():
    w = inverse_frequency_weights(torch.tensor([0, 0, 0, 1, -100]), 3)
    torch.testing.assert_close(w, torch.tensor([4 / 9, 4 / 3, 0.0]))
    w_sqrt = inverse_frequency_weights(torch.tensor([0, 0, 0, 1]), 3, power=0.5)
    torch.testing.assert_close(w_sqrt, torch.tensor([math.sqrt(4 / 9), math.sqrt(4 / 3), 0.0]))


def test_bad_kind():
    with pytest.raises(ValueError, match="'gru' or 'mlp'"):
        TimingHead(8, kind="lstm")


@pytest.mark.parametrize("kind", ["gru", "mlp"])
def test_direct_inputs_text_and_onset_output_step_equals_forward(kind):
    """A head reading the frame inputs too (voice activity, its own text embedding) with the onset output:
    streaming equals batched; the direct inputs change its output; it refuses to run without them."""
    torch.manual_seed(3)
    head = TimingHead(12, hidden=16, kind=kind, direct=True, text_vocab=50, text_dim=4, onset=True).eval()
    x = torch.randn(2, 30, 12)
    inputs = {"va_listener": torch.rand(2, 30), "va_speaker": torch.rand(2, 30),
              "text_ids": torch.randint(0, 50, (2, 30, 2, 2))}
    with torch.no_grad():
        out = head(x, inputs)
        other = head(x, {**inputs, "text_ids": torch.zeros(2, 30, 2, 2, dtype=torch.long)})
    assert out.onset.shape == (2, 30) and not torch.allclose(out.action, other.action)
    state, steps = head.init_state(2), []
    for t in range(30):
        o, state = head.step(state, x[:, t], {k: v[:, t] for k, v in inputs.items()})
        steps.append(o)
    for i, name in enumerate(("action", "bc_type", "onset")):
        torch.testing.assert_close(torch.stack([s[i] for s in steps], 1), out[i], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="pass inputs"):
        head(x)
    assert TimingHead(**head.config()).config() == head.config()  # what a checkpoint rebuilds


def test_onset_loss_is_class_balanced_and_masked():
    """Onset BCE: each class carries half the loss, frames without a target (-1) count for nothing."""
    z = torch.tensor([[0.0, math.log(3.0), 2.0, 5.0]])  # sigmoid: 0.5, 0.75, ...
    y = torch.tensor([[1, 1, 0, -1]])
    out = head_loss(torch.zeros(1, 4, 3), torch.zeros(1, 4, 5), torch.zeros(1, 4, dtype=torch.long),
                    torch.full((1, 4), -1), onset_logits=z, onset=y, onset_loss_weight=2.0)
    bce_pos = (-math.log(0.5) - math.log(0.75)) / 2  # mean over the two positives
    bce_neg = -math.log(1 - 1 / (1 + math.exp(-2.0)))  # the one negative
    assert out["onset_loss"].item() == pytest.approx(0.5 * bce_pos + 0.5 * bce_neg, rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["action_loss"].item() + 2.0 * out["onset_loss"].item(), rel=1e-6)


def test_floor_context_hand_computed():
    """Speech shares (exponential window) and the floor silence relative to the floor party's mean pause."""
    a = SHARE_DECAY
    va_l = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    va_s = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    feats, state = floor_context(va_l, va_s)
    assert PAUSE_PRIOR_FRAMES == 6.0 and feats.shape == (1, 6, 3)
    w = [sum(a ** k for k in range(t + 1)) for t in range(6)]
    torch.testing.assert_close(feats[0, :, 1], torch.tensor([1.0, 1.0, (a * a + a) / w[2], (a ** 3 + a ** 2) / w[3],
                                                           (a ** 4 + a ** 3 + 1) / w[4],
                                                           (a ** 5 + a ** 4 + a) / w[5]]))
    torch.testing.assert_close(feats[0, :, 0], torch.tensor([0.0, 0.0, 1 / w[2], a / w[3], a * a / w[4],
                                                           a ** 3 / w[5]]))
    # silence 1 and 2 frames against the prior mean 6 frames; the 2-frame pause ends at frame 4, so the mean is
    # (2 + 6) / (1 + 1) = 4 frames at frame 5
    torch.testing.assert_close(feats[0, :, 2], torch.log(torch.tensor([1.0, 1.0, 7 / 6, 4 / 3, 1.0, 1.25])))
    torch.testing.assert_close(state[0, 3:], torch.tensor([1.0, 2.0, 1.0]))  # current silence, pause sum, count


def test_floor_context_caps_long_silences_and_streams_in_pieces():
    """A silence longer than 5 s counts as a 62-frame pause; running in two pieces with the state carried
    equals one run, and a future change leaves the past untouched (causal)."""
    va_s = torch.cat([torch.ones(3), torch.zeros(100), torch.ones(2), torch.zeros(1)])[None]
    feats, _ = floor_context(torch.zeros_like(va_s), va_s)
    assert feats[0, -1, 2].item() == pytest.approx(math.log1p(2 / (62 + 6)))
    torch.manual_seed(5)
    va_l, va_s = torch.rand(2, 90), (torch.rand(2, 90) > 0.4).float()
    whole, end = floor_context(va_l, va_s)
    first, mid = floor_context(va_l[:, :50], va_s[:, :50])
    second, end2 = floor_context(va_l[:, 50:], va_s[:, 50:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    torch.testing.assert_close(end2, end)
    changed = va_s.clone()
    changed[:, 60:] = 1 - changed[:, 60:]
    torch.testing.assert_close(floor_context(va_l, changed)[0][:, :60], whole[:, :60])


def test_context_head_streams_resets_per_row_and_rebuilds():
    """A head with the floor context: streaming equals batched; the context changes its output; a reset
    zeroes one row's GRU and context state only; it needs direct inputs and a GRU."""
    torch.manual_seed(4)
    head = TimingHead(10, hidden=8, direct=True, context=True).eval()
    x = torch.randn(2, 25, 10)
    inputs = {"va_listener": torch.rand(2, 25), "va_speaker": (torch.rand(2, 25) > 0.5).float()}
    with torch.no_grad():
        out = head(x, inputs)
        plain = TimingHead(10, hidden=8, direct=True)
        plain.load_state_dict({k: v[..., :12] if k == "body.weight_ih_l0" else v for k, v in head.state_dict().items()})
        assert not torch.allclose(plain.eval()(x, inputs).action, out.action)
    state, steps = head.init_state(2), []
    assert state.shape == (1, 2, 8 + 6)
    for t in range(25):
        o, state = head.step(state, x[:, t], {k: v[:, t] for k, v in inputs.items()})
        steps.append(o.action)
    torch.testing.assert_close(torch.stack(steps, 1), out.action, atol=1e-5, rtol=0)
    kept = state[0, 1].clone()
    head.reset(state, torch.tensor([True, False]))
    assert not state[0, 0].any() and torch.equal(state[0, 1], kept)
    assert TimingHead(**head.config()).config() == head.config() and head.config()["context"] is True
    for kwargs in ({"direct": False}, {"direct": True, "kind": "mlp"}):
        with pytest.raises(ValueError, match="context"):
            TimingHead(10, context=True, **kwargs)

