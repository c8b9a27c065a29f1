"""Tiny random Moshi and Mimi backbones (transformers, nothing downloaded): one hidden vector per 80 ms
frame with the documented shape, streaming == batched, causality and Moshi's codebook delay."""
from __future__ import annotations

import pytest
import torch

from backchannel.backbones.mimi import SAMPLES_PER_FRAME, MimiBackbone
from backchannel.backbones.moshi import TEXT_EPAD_ID, TEXT_PAD_ID, MoshiBackbone, moshi_text_stream


@pytest.fixture(scope="module")
def mimi() -> MimiBackbone:
    return MimiBackbone.tiny(seed=0)


@pytest.fixture(scope="module")
def moshi() -> MoshiBackbone:
    return MoshiBackbone.tiny(seed=0)


def stream_moshi(model: MoshiBackbone, text: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    state, outs = model.init_state(text.shape[0]), []
    for t in range(text.shape[1]):
        hidden, state = model.step(state, text[:, t], codes[..., t])
        outs.append(hidden)
    return torch.stack(outs, 1)


# ----------------------------------------------------------------------------- Mimi

def test_mimi_one_latent_per_frame(mimi):
    audio = torch.randn(2, 2, 5 * SAMPLES_PER_FRAME + 700)  # 5 frames + a partial sixth
    out = mimi(audio)
    assert out.shape == (2, 6, 2 * mimi.latent_dim) == (2, 6, mimi.hidden_size)
    # channel order: listener latents first; a silent speaker channel only changes the second half
    silent = audio.clone()
    silent[:, 1] = 0
    out2 = mimi(silent)
    torch.testing.assert_close(out[..., : mimi.latent_dim], out2[..., : mimi.latent_dim])
    assert (out[..., mimi.latent_dim :] - out2[..., mimi.latent_dim :]).abs().max() > 1e-6


def test_mimi_streaming_and_chunked_equal_batched(mimi):
    n = 8  # > the tiny encoder transformer's window (6 steps at 25 Hz = 3 frames)
    audio = torch.randn(2, 2, n * SAMPLES_PER_FRAME, generator=torch.Generator().manual_seed(1))
    batched = mimi(audio)
    torch.testing.assert_close(mimi(audio, chunk_frames=3), batched, atol=1e-5, rtol=0)
    state, outs = mimi.init_state(2), []
    for t in range(n):
        hidden, state = mimi.step(state, audio[..., t * SAMPLES_PER_FRAME : (t + 1) * SAMPLES_PER_FRAME])
        assert hidden.shape == (2, mimi.hidden_size)
        outs.append(hidden)
    torch.testing.assert_close(torch.stack(outs, 1), batched, atol=1e-5, rtol=0)


def test_mimi_is_causal(mimi):
    audio = torch.randn(1, 2, 8 * SAMPLES_PER_FRAME, generator=torch.Generator().manual_seed(2))
    changed = audio.clone()
    changed[..., 5 * SAMPLES_PER_FRAME :] += 1.0  # frames 5.. change
    a, b = mimi(audio), mimi(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=0)
    assert (a[:, 5] - b[:, 5]).abs().max() > 1e-6


def test_mimi_rejects_bad_audio(mimi):
    with pytest.raises(ValueError, match=r"\[batch, 2 channels, samples\]"):
        mimi(torch.randn(2, SAMPLES_PER_FRAME))
    with pytest.raises(ValueError, match="1920 samples per frame"):
        mimi.step(mimi.init_state(1), torch.randn(1, 2, 100))


# ----------------------------------------------------------------------------- Moshi

def test_moshi_one_hidden_per_frame(moshi):
    B, T, K = 2, 6, moshi.num_codebooks
    text = torch.randint(0, 50, (B, T))
    codes = torch.randint(0, 64, (B, 2, K, T))
    assert moshi(text, codes).shape == (B, T, moshi.hidden_size) == (B, T, 32)
    audio = torch.randn(B, 2, 4 * SAMPLES_PER_FRAME + 10)
    assert moshi.encode_audio(audio).shape == (B, 2, K, 5)
    assert moshi.forward_audio(audio, torch.randint(0, 50, (B, 5))).shape == (B, 5, 32)


def test_moshi_delay_pattern(moshi):
    codes = torch.arange(2 * 3 * 4).view(1, 2, 3, 4)  # [B=1, party, K=3, T=4]
    delayed = moshi.delay(codes)
    init = moshi.audio_initial_id
    assert delayed[0, 0].tolist() == [[0, 1, 2, 3], [init, 4, 5, 6], [init, 8, 9, 10]]
    assert delayed[0, 1].tolist() == [[12, 13, 14, 15], [init, 16, 17, 18], [init, 20, 21, 22]]


@pytest.mark.parametrize("layer", [None, 1])
def test_moshi_streaming_equals_batched_beyond_window(moshi, layer):
    model = moshi if layer is None else MoshiBackbone.tiny(seed=0, layer=layer)
    B, T = 2, 3 * model.window + 2  # 26 frames, the attention window is 8 steps
    g = torch.Generator().manual_seed(3)
    text = torch.randint(0, 50, (B, T), generator=g)
    codes = torch.randint(0, 64, (B, 2, model.num_codebooks, T), generator=g)
    batched = model(text, codes)
    torch.testing.assert_close(stream_moshi(model, text, codes), batched, atol=1e-5, rtol=0)


def test_moshi_causal_and_acoustic_codebooks_one_frame_late(moshi):
    B, T, K = 1, 10, moshi.num_codebooks
    g = torch.Generator().manual_seed(4)
    text = torch.randint(0, 50, (B, T), generator=g)
    codes = torch.randint(0, 64, (B, 2, K, T), generator=g)
    base = moshi(text, codes)

    def changed_at(frame, *, text_change=False, codebook=None):
        t2, c2 = text.clone(), codes.clone()
        if text_change:
            t2[:, frame] = (t2[:, frame] + 1) % 50
        else:
            c2[:, 1, codebook, frame] = (c2[:, 1, codebook, frame] + 1) % 64
        return (moshi(t2, c2) - base).abs().amax(dim=(0, 2))

    diff = changed_at(6, text_change=True)
    assert diff[:6].max() < 1e-6 and diff[6] > 1e-6
    diff = changed_at(6, codebook=0)  # semantic codebook: seen at its own frame
    assert diff[:6].max() < 1e-6 and diff[6] > 1e-6
    diff = changed_at(6, codebook=2)  # acoustic codebook: seen one frame later
    assert diff[:7].max() < 1e-6 and diff[7] > 1e-6


def test_moshi_rejects_mismatched_inputs(moshi):
    with pytest.raises(ValueError, match="codes"):
        moshi(torch.zeros(1, 4, dtype=torch.long),
              torch.zeros(1, 2, moshi.num_codebooks, 5, dtype=torch.long))


def test_moshi_text_stream_hand_built():
    def tokenize(text):  # one token per word: 10 + its length
        return [10 + len(w) for w in text.split()]

    P, E = TEXT_PAD_ID, TEXT_EPAD_ID
    frames = ["", "hello", "", "", "a bb", ""]
    assert moshi_text_stream(frames, tokenize).tolist() == [P, E, 15, P, E, 11]  # "bb" runs past the end
    assert moshi_text_stream(frames, tokenize, epad=False).tolist() == [P, 15, P, P, 11, 12]
    # tokens still queued from an earlier word push the next word later, never earlier
    assert moshi_text_stream(["abc de", "f", "", "", ""], tokenize).tolist() == [E, 13, 12, E, 11]
