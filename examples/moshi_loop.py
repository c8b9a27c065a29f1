"""Moshi (the ``moshi`` package's ``LMGen`` loop) with the backchannel listener acting inside it.

Each 80 ms frame of the user's audio is Mimi-encoded, stepped through :class:`BackchannelLMGen`
(which runs the timing head on the temporal transformer's output and forces the backchannel, the
suppression or the release), and Moshi's output frame is decoded back to audio. Writes a stereo
WAV (user left, Moshi right) and prints the decisions.

Real weights (a GPU with ~24 GB; ``pip install --no-deps moshi`` plus ``einops sentencepiece``)::

    python examples/moshi_loop.py --user user.wav --forms-dir forms/ --head head.pt --out moshi.wav

``forms/`` holds one recording per form (``mhm.wav``, ``yeah.wav``, ...; silences trimmed), encoded once
with Mimi at start; ``head.pt`` a ``TimingHead`` state dict trained on Moshi hidden states (dim 4096;
``--head-hidden``/``--head-kind`` give its shape). Weights come from ``--hf-repo``
(``kyutai/moshiko-pytorch-bf16``) through ``moshi.models.loaders.CheckpointInfo``.

``--tiny``: a tiny random LM and a random-weight Mimi, synthetic audio and a random head; runs on
a CPU in ~20 s and downloads nothing (the output is noise: only the wiring is real; the random head
is nudged towards BACKCHANNEL so the demo says some).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import soundfile
import torch
from backchannel.plugin.duplex import load_wav, policy_forms, report_loop
from backchannel.plugin.listener import StreamingListener
from backchannel.plugin.moshi_lm import BackchannelLMGen, build_forms, form_codes

from backchannel.head import TimingHead
from backchannel.policy import Policy

SR, FRAME = 24_000, 1920  # Mimi: 24 kHz, 80 ms frames

# A tiny Moshi-shaped LM (8 + 8 codebooks over Mimi's 2048 codes, Moshi's delays) with random weights.
TINY_LM = {
    "dim": 64,
    "text_card": 64,
    "existing_text_padding_id": 3,
    "n_q": 16,
    "dep_q": 8,
    "card": 2048,
    "num_heads": 4,
    "num_layers": 2,
    "hidden_scale": 2,
    "causal": True,
    "layer_scale": None,
    "context": 64,
    "max_period": 10000,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 32,
    "depformer_dim_feedforward": 64,
    "depformer_num_heads": 2,
    "depformer_num_layers": 1,
    "depformer_layer_scale": None,
    "depformer_multi_linear": True,
    "depformer_context": 8,
    "depformer_max_period": 10000,
    "depformer_gating": "silu",
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "delays": [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1],
}


def synth_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: 1-2.5 s stretches of a voiced buzz with a falling pitch, then pauses."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    t = 0
    while t < len(out):
        n = min(int(rng.uniform(1.0, 2.5) * SR), len(out) - t)
        f0 = np.linspace(180, 110, n)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        env = np.minimum(1, np.minimum(np.arange(n), n - np.arange(n)) / 800)
        out[t : t + n] = (
            0.2 * env * np.sign(np.sin(phase)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(n) / SR))
        )
        t += n + int(rng.uniform(0.3, 0.9) * SR)
    return out


def synth_forms(folder: Path) -> None:
    """Hummed stand-ins for recorded forms: "mhm" (two hums), "yeah" (a gliding vowel)."""
    n = int(0.4 * SR)
    env = np.sin(np.pi * np.arange(n) / n).astype(np.float32)
    hum = 0.2 * env * np.sin(2 * np.pi * 140 * np.arange(n) / SR)
    soundfile.write(folder / "mhm.wav", np.concatenate([hum, hum[::-1]]), SR)
    glide = 0.2 * env * np.sin(2 * np.pi * np.cumsum(np.linspace(220, 160, n)) / SR)
    soundfile.write(folder / "yeah.wav", glide, SR)


def toy_tokenize(text: str) -> list[int]:
    """Stand-in for Moshi's SentencePiece model in --tiny mode: one id per letter (ids 4..)."""
    return [4 + (ord(ch) % 60) for ch in text if ch.isalpha()] or [4]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--tiny", action="store_true", help="random tiny models and synthetic audio (no download)"
    )
    ap.add_argument("--hf-repo", default="kyutai/moshiko-pytorch-bf16")
    ap.add_argument("--user", type=Path, help="the user's audio (any rate; resampled to 24 kHz)")
    ap.add_argument("--forms-dir", type=Path, help="one recording per form: <form>.wav")
    ap.add_argument("--head", type=Path, help="TimingHead state dict (torch.save(head.state_dict()))")
    ap.add_argument("--head-hidden", type=int, default=64)
    ap.add_argument("--head-kind", default="gru", choices=["gru", "mlp"])
    ap.add_argument("--on", type=float, default=0.5, help="backchannel threshold (tune on dev)")
    ap.add_argument("--take-turn", type=float, default=0.5, help="take-turn threshold (tune on dev)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the synthetic user audio (--tiny)")
    ap.add_argument("--silence-codes", action="store_true", help="also force Mimi silence while suppressed")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("runs/examples/moshi_backchannel.wav"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    from moshi.models import loaders

    work = Path(tempfile.mkdtemp(prefix="moshi_loop_"))
    if args.tiny:
        torch.set_num_threads(1)
        mimi = loaders.get_mimi(None, device=args.device)  # random weights, Mimi's real architecture
        lm = loaders.get_moshi_lm(None, lm_kwargs=TINY_LM, device=args.device, dtype=torch.float32).eval()
        tokenize, lm_gen_config = toy_tokenize, {}
        synth_forms(work)
        forms_dir = work
        user = torch.from_numpy(synth_speech(args.seconds))[None, None]
    else:
        if args.user is None or args.forms_dir is None:
            ap.error("--user and --forms-dir are needed with real weights (or use --tiny)")
        info = loaders.CheckpointInfo.from_hf_repo(args.hf_repo)
        mimi = info.get_mimi(device=args.device)
        lm = info.get_moshi(device=args.device, dtype=torch.bfloat16)
        sp = info.get_text_tokenizer()
        tokenize, lm_gen_config = sp.encode, dict(info.lm_gen_config)
        forms_dir = args.forms_dir
        user = load_wav(args.user, SR)

    # the forms, encoded once (offline) with Mimi
    wavs = sorted(forms_dir.glob("*.wav"))
    if not wavs:
        raise SystemExit(f"{forms_dir}: no <form>.wav recordings")
    codes = {w.stem.replace("_", " "): form_codes(w, lambda x: mimi.encode(x.to(args.device))) for w in wavs}
    forms = build_forms(codes, tokenize)
    spoken = policy_forms(forms)  # the default forms we have recordings of
    silence = (
        mimi.encode(torch.zeros(1, 1, FRAME, device=args.device))[0, : lm.dep_q, 0].cpu()
        if args.silence_codes
        else None
    )

    head = TimingHead(lm.dim, hidden=args.head_hidden, kind=args.head_kind)
    if args.head is not None:
        head.load_state_dict(torch.load(args.head, map_location="cpu", weights_only=True))
    elif args.tiny:  # random head, nudged towards BACKCHANNEL so that the short demo says some
        with torch.no_grad():
            head.action.weight.mul_(12.0)  # a random head is nearly constant: spread its outputs
            head.action.bias.copy_(torch.tensor([0.0, 0.0, -4.0]))
    else:
        print("warning: no --head: a random head decides (the wiring works, the timing is meaningless)")
    # --tiny: the random LM, once given the floor, talks on and on (its text is never PAD, so it never
    # yields): the demo only backchannels and suppresses; TAKE_TURN and the release are in the tests.
    policy = (
        Policy(forms=spoken, on=0.85, off=0.65, take_turn=None)
        if args.tiny
        else Policy(forms=spoken, on=args.on, take_turn=args.take_turn)
    )
    listener = StreamingListener(None, head.eval(), policy, deadline_s=0.04)
    timeline = []
    gen = BackchannelLMGen(
        lm,
        listener,
        forms,
        silence_codes=silence,
        on_decision=lambda b, d: timeline.append((d, gen.control.floors[b].last_outcome)),
        **lm_gen_config,
    )

    n_frames = user.shape[-1] // FRAME
    out_pcm, texts = [], []
    ms = {"encode": [], "lm": [], "listener": [], "decode": [], "frame": []}  # per-frame wall times
    with torch.no_grad(), mimi.streaming(1), gen.streaming(1):
        for f in range(n_frames):
            chunk = user[:, :, f * FRAME : (f + 1) * FRAME].to(args.device)
            t0 = time.perf_counter()
            user_codes = mimi.encode(chunk)  # [1, 8, 1]
            t1 = time.perf_counter()
            tokens = gen.step(user_codes[:, : lm.n_q - lm.dep_q])
            t2 = time.perf_counter()
            if tokens is None:
                pcm = torch.zeros(FRAME)
            else:
                texts.append(int(tokens[0, 0, 0]))
                pcm = mimi.decode(tokens[:, 1:])[0, 0].float().cpu()
            t3 = time.perf_counter()
            out_pcm.append(pcm)
            listener_s = gen.control.last_call_s  # head + policy + floor, inside gen.step
            for key, s in (("encode", t1 - t0), ("lm", t2 - t1 - listener_s), ("listener", listener_s),
                           ("frame", t3 - t0)):
                ms[key].append(s * 1e3)
            if tokens is not None:
                ms["decode"].append((t3 - t2) * 1e3)

    med = {k: float(np.median(v)) if v else float("nan") for k, v in ms.items()}
    print(f"{n_frames} frames, median ms per 80 ms frame ({args.device}, {torch.get_num_threads()} torch "
          f"thread(s)): Mimi encode {med['encode']:.1f}, LM {med['lm']:.1f}, listener (head + policy + "
          f"floor) {med['listener']:.2f}, Mimi decode {med['decode']:.1f}; whole frame {med['frame']:.1f}")
    if args.tiny and med["frame"] > 80:
        print(f"  (over the 80 ms frame: --tiny runs the full-size Mimi, random weights, on a CPU; the listener "
              f"is {100 * med['listener'] / med['frame']:.1f}% of the frame)")
    report_loop(args.out, user, torch.cat(out_pcm).numpy(), timeline, gen.control.floors[0].stats, SR)


if __name__ == "__main__":
    main()
