"""Moshi on transformers (``MoshiForConditionalGeneration``, stepped one 80 ms frame at a time with its
KV cache) with the backchannel listener acting inside the loop.

Each step feeds the user's newest Mimi codes; :class:`BackchannelMoshiHF` runs the temporal
transformer, the timing head on its last hidden state, then samples (or forces) the text token and,
through the depth transformer, Moshi's audio codes. Writes a stereo WAV (user left, Moshi right).

Real weights (bf16 ~15 GB, a GPU)::

    python examples/moshi_transformers.py --user user.wav --forms-dir forms/ --head head.pt --out out.wav

``kmhf/hf-moshiko`` (``--repo``) gives the model, its Mimi (``model.audio_encoder``) and its text
tokenizer (``AutoTokenizer``); ``forms/`` one trimmed recording per form (``mhm.wav`` ...); ``head.pt`` a
``TimingHead`` state dict over the 4096-d hidden states. The user's audio is encoded here in one pass;
a live host encodes each 80 ms frame with Mimi's streaming encoder (see ``MimiBackbone.step``).

``--tiny``: ``MoshiBackbone.tiny()``'s random model (with its tiny Mimi), synthetic audio and a random
head; runs on a CPU in seconds, downloads nothing (the output is noise: only the wiring is real).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from backchannel.plugin.duplex import build_forms, form_codes, load_wav, policy_forms, report_loop
from backchannel.plugin.listener import StreamingListener
from backchannel.plugin.moshi_hf import BackchannelMoshiHF, mimi_encoder

from backchannel.backbones.moshi import MoshiBackbone
from backchannel.head import TimingHead
from backchannel.policy import Policy

SR, FRAME = 24_000, 1920


def synth_audio(folder: Path, seconds: float) -> torch.Tensor:
    """Hummed stand-ins for recorded forms (written to ``folder``) and speech-like user audio
    (voiced stretches of 1-2.5 s with pauses) ``[1, 1, samples]``."""
    rng = np.random.default_rng(0)
    n = int(0.4 * SR)
    env = np.sin(np.pi * np.arange(n) / n)
    soundfile.write(folder / "mhm.wav", 0.2 * env * np.sin(2 * np.pi * 140 * np.arange(n) / SR), SR)
    soundfile.write(
        folder / "yeah.wav", 0.2 * env * np.sin(2 * np.pi * np.cumsum(np.linspace(220, 160, n)) / SR), SR
    )
    user = np.zeros(int(seconds * SR), dtype=np.float32)
    t = 0
    while t < len(user):
        m = min(int(rng.uniform(1.0, 2.5) * SR), len(user) - t)
        user[t : t + m] = 0.2 * np.sign(np.sin(2 * np.pi * np.cumsum(np.linspace(180, 110, m)) / SR))
        t += m + int(rng.uniform(0.3, 0.9) * SR)
    return torch.from_numpy(user)[None, None]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="random tiny model and synthetic audio (no download)")
    ap.add_argument("--repo", default="kmhf/hf-moshiko")
    ap.add_argument("--user", type=Path)
    ap.add_argument("--forms-dir", type=Path)
    ap.add_argument("--head", type=Path, help="TimingHead state dict")
    ap.add_argument("--head-hidden", type=int, default=64)
    ap.add_argument("--head-kind", default="gru", choices=["gru", "mlp"])
    ap.add_argument("--on", type=float, default=0.5)
    ap.add_argument("--take-turn", type=float, default=0.5)
    ap.add_argument("--seconds", type=float, default=8.0, help="synthetic user audio (--tiny)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("runs/examples/moshi_hf_backchannel.wav"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    if args.tiny:
        torch.set_num_threads(1)
        model = MoshiBackbone.tiny().model.to(args.device)
        forms_dir = Path(tempfile.mkdtemp(prefix="moshi_hf_"))
        user = synth_audio(forms_dir, args.seconds)
        vocab = model.config.vocab_size
        tokenize = lambda s: [4 + ord(ch) % (vocab - 4) for ch in s if ch.isalpha()] or [4]
    else:
        if args.user is None or args.forms_dir is None:
            ap.error("--user and --forms-dir are needed with real weights (or use --tiny)")
        from transformers import AutoTokenizer, MoshiForConditionalGeneration

        model = MoshiForConditionalGeneration.from_pretrained(args.repo, dtype=torch.bfloat16).to(args.device)
        tok = AutoTokenizer.from_pretrained(args.repo)
        tokenize = lambda s: tok.encode(s, add_special_tokens=False)
        forms_dir, user = args.forms_dir, load_wav(args.user, SR)

    K = model.config.num_codebooks
    encode = mimi_encoder(model.audio_encoder, K)
    wavs = sorted(forms_dir.glob("*.wav"))
    if not wavs:
        raise SystemExit(f"{forms_dir}: no <form>.wav recordings")
    forms = build_forms({w.stem.replace("_", " "): form_codes(w, encode) for w in wavs}, tokenize)
    spoken = policy_forms(forms)  # the default forms we have recordings of

    head = TimingHead(model.config.hidden_size, hidden=args.head_hidden, kind=args.head_kind)
    if args.head is not None:
        head.load_state_dict(torch.load(args.head, map_location="cpu", weights_only=True))
    elif args.tiny:  # a random head is nearly constant: spread its outputs so the demo decides something
        with torch.no_grad():
            head.action.weight.mul_(12.0)
    else:
        print("warning: no --head: a random head decides (the wiring works, the timing is meaningless)")
    listener = StreamingListener(
        None, head.eval(), Policy(forms=spoken, on=args.on, take_turn=args.take_turn), deadline_s=0.04
    )
    timeline = []
    # --tiny: the random LM talks on and on once it has the floor; let it yield at its first PAD text
    loop = BackchannelMoshiHF(
        model,
        listener,
        forms,
        on_decision=lambda b, d: timeline.append((d, loop.control.floors[b].last_outcome)),
        yield_after=1 if args.tiny else 25,
    )

    with torch.no_grad():
        user_codes = encode(user)  # [1, K, n_frames]
    outs, lm_ms, listener_ms = [], [], []
    for f in range(user_codes.shape[-1]):
        t0 = time.perf_counter()
        out = loop.step(user_codes[:, :, f : f + 1])
        listener_ms.append(loop.control.last_call_s * 1e3)  # head + policy + floor, inside the step
        lm_ms.append((time.perf_counter() - t0) * 1e3 - listener_ms[-1])
        if out is not None:
            outs.append(out)
    own = torch.cat(outs, dim=-1)  # [1, 1 + K, n_frames - max_delay]: text, Moshi's audio codes
    with torch.no_grad():
        moshi = model.audio_encoder.decode(own[:, 1:]).audio_values[0, 0].float().cpu().numpy()
    moshi = np.concatenate([np.zeros(FRAME * loop.max_delay, dtype=np.float32), moshi])
    print(f"{len(lm_ms)} frames, median ms per step ({args.device}, {torch.get_num_threads()} torch thread(s)): "
          f"LM + depth {np.median(lm_ms):.1f}, listener (head + policy + floor) {np.median(listener_ms):.2f}; "
          "Mimi runs offline here (the whole user audio at once)")
    report_loop(args.out, user, moshi, timeline, loop.control.floors[0].stats, SR)


if __name__ == "__main__":
    main()
