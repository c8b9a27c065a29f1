"""Benchmark: per-frame latency and memory of the streaming listener (timing backbone + head + policy).

    python benchmarks/streaming_latency.py [--backbone timing moshi mimi] [--frames 10000] [--warmup 500]
                                           [--threads 1] [--sessions 100] [--seconds 10]
                                           [--tiny-frames 2000] [--tiny-sessions 50]
                                           [--out benchmarks/results/streaming_latency.json]

1. One session, ``torch.set_num_threads(threads)``: ``StreamingListener.step`` on given per-frame
   features (voice activity, prosody, text) of a synthetic dialogue, timed per frame over ``frames``
   frames after ``warmup``: wall-time p50 / p90 / p99 / max in ms (what the host sees) and the
   thread's CPU time (the same minus preemption by other processes on a shared machine), and the
   wall time per stage (features, backbone step, head step, policy) from a second, stage-by-stage
   pass (the profile).
2. Memory per session: bytes of state (KV cache, head state) and the RSS growth per extra listener
   (100 listeners sharing one model, each stepped once).
3. With ``--sessions N``: N concurrent sessions in one process, (a) batched in one ``ListenerPool``
   step per tick and (b) as N separate listeners stepped one after the other: frames/s achieved
   vs ``N * 12.5`` needed; then the pool paced in real time for ``--seconds`` (a tick every 80 ms):
   tick time p50/p99 and ticks that overran the 80 ms frame.

4. With ``--backbone moshi`` / ``mimi``: the same single-session figures with the TINY random
   transformers configs (``MoshiBackbone.tiny()``: hidden 32, 2 layers, 3 codebooks, window 8;
   ``MimiBackbone.tiny()``: latent 16 per channel) over ``--tiny-frames`` frames: backbone ``step`` +
   ``StreamingListener.step_hidden`` (head + policy) per frame, as a host loop calls them. Moshi is fed
   one text token and the Mimi codes of both streams per frame (the codec's encoding is the host's, not
   timed); Mimi is fed 80 ms of stereo 24 kHz audio (its encoder is timed). Memory per session: bytes of
   state at steady size (caches full) and the RSS growth per extra session (``--tiny-sessions`` stepped
   past the cache window). Written under ``backbones.moshi`` / ``backbones.mimi``.

The results file is updated, not replaced: the timing backbone's figures stay at the top level
(``p50_ms``, ``p99_ms``, ``frames``, ...) and a run of only ``moshi``/``mimi`` keeps them from the last
timing run; each ``backbones`` entry carries its own machine load.

Weights are random (latency does not depend on them). Acceptance (issue 4): p99 <= 2 ms per frame on
one CPU thread; N = 100 sessions in real time on the 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from backchannel.plugin.features import StreamingFeatures
from backchannel.plugin.listener import ListenerPool, StreamingListener

from backchannel.backbones import TimingBackbone
from backchannel.frames import FRAME_HZ, FRAME_S
from backchannel.head import TimingHead
from backchannel.policy import Policy

WORDS = ["so", "then", "we", "go", "left", "around", "the", "lake", "okay", "yeah", "mhm", "right"]
NO_DEADLINE = 60.0  # s: measure, never silence


def synthetic_frames(n: int, seed: int = 0) -> list[dict]:
    """Per-frame features of a made-up dialogue: speaker stretches of 1-3 s, listener now and then,
    prosody where voiced, a word in ~30% of the speaker's frames."""
    rng = np.random.default_rng(seed)
    va_s = np.zeros(n, dtype=np.float32)
    t = 0
    while t < n:
        k = int(rng.integers(12, 38))
        va_s[t:t + k] = 1.0
        t += k + int(rng.integers(2, 12))
    va_l = ((rng.random(n) < 0.08) | ((va_s == 0) & (rng.random(n) < 0.3))).astype(np.float32)
    frames = []
    for t in range(n):
        pros = rng.normal(size=8).astype(np.float32)
        mask = np.array([va_l[t] > 0, True, True, True, va_s[t] > 0, True, True, True])
        frames.append({"va_listener": va_l[t], "va_speaker": va_s[t], "prosody": pros, "prosody_mask": mask,
                       "text_listener": "yeah" if va_l[t] and rng.random() < 0.2 else "",
                       "text_speaker": str(rng.choice(WORDS)) if va_s[t] and rng.random() < 0.3 else ""})
    return frames


def pct(x_s: list[float] | np.ndarray) -> dict:
    ms = np.asarray(x_s) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine() -> dict:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                   platform.processor())
    return {"cpu": cpu, "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


def single_session(backbone, head, policy, frames, warmup: int) -> dict:
    listener = StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE)
    for f in frames[:warmup]:
        listener.step(f)
    listener.reset()
    times, cpu = [], []
    clock, cpu_clock = time.perf_counter, time.thread_time
    for f in frames[warmup:]:
        t0, c0 = clock(), cpu_clock()
        listener.step(f)
        times.append(clock() - t0)
        cpu.append(cpu_clock() - c0)
    assert not listener.faults, listener.faults
    # wall time is what the host sees; this thread's CPU time excludes preemption by other processes
    return {"frames": len(times), **pct(times), "cpu_time": pct(cpu)}


def stage_profile(backbone, head, policy, frames) -> dict:
    """Per-stage times of the same pipeline, run by hand."""
    feats, pstate = StreamingFeatures(), policy.new_state()
    fstate = feats.init_state(1)[0]
    bstate, hstate = backbone.init_state(1), head.init_state(1)
    stages = {"features": [], "backbone": [], "head": [], "policy": []}
    clock = time.perf_counter
    for f in frames:
        t0 = clock()
        x = feats.step(fstate, f)
        t1 = clock()
        hidden, bstate = backbone.step(bstate, x)
        t2 = clock()
        out, hstate = head.step(hstate, hidden, x)
        pa, pb = out.action.softmax(-1).tolist(), out.bc_type.softmax(-1).tolist()
        t3 = clock()
        policy.decide(pstate, pa[0], pb[0])
        t4 = clock()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[name].append(dt)
    return {name: pct(v) for name, v in stages.items()}


def memory(backbone, head, policy, frames) -> dict:
    state = backbone.init_state(1)
    hstate = head.init_state(1)
    state_bytes = state.k.nbytes + state.v.nbytes + (hstate.nbytes if hstate is not None else 0)
    n = 100
    before = rss_bytes()
    listeners = [StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE) for _ in range(n)]
    for listener in listeners:
        listener.step(frames[0])
    after = rss_bytes()
    return {"state_bytes": int(state_bytes), "rss_per_session_bytes": (after - before) / n,
            "sessions_measured": n}


def many_sessions(backbone, head, policy, frames, n: int, seconds: float) -> dict:
    need = n * FRAME_HZ
    streams = [frames[i * 7 % len(frames):] + frames[:i * 7 % len(frames)] for i in range(n)]
    pool = ListenerPool(backbone, head, policy, n, deadline_s=NO_DEADLINE)
    for t in range(20):  # warm-up
        pool.step([s[t] for s in streams])
    pool.reset()
    ticks = 300
    t0 = time.perf_counter()
    for t in range(ticks):
        pool.step([s[t] for s in streams])
    batched_fps = n * ticks / (time.perf_counter() - t0)

    listeners = [StreamingListener(backbone, head, policy, deadline_s=NO_DEADLINE) for _ in range(n)]
    seq_ticks = 30
    t0 = time.perf_counter()
    for t in range(seq_ticks):
        for listener, s in zip(listeners, streams):
            listener.step(s[t])
    separate_fps = n * seq_ticks / (time.perf_counter() - t0)
    del listeners

    pool.reset()
    tick_times, late = [], 0
    n_ticks = round(seconds / FRAME_S)
    next_tick = time.perf_counter()
    for t in range(n_ticks):
        next_tick += FRAME_S
        start = time.perf_counter()
        pool.step([s[t % len(s)] for s in streams])
        end = time.perf_counter()
        tick_times.append(end - start)
        if end > next_tick:
            late += 1
        else:
            time.sleep(next_tick - end)
    return {
        "sessions": n, "needed_fps": need,
        "batched": {"fps": batched_fps, "realtime_factor": batched_fps / need, "ticks": ticks},
        "separate": {"fps": separate_fps, "realtime_factor": separate_fps / need, "ticks": seq_ticks},
        "paced": {"seconds": seconds, "ticks": n_ticks, "late_ticks": late, **{f"tick_{k}": v for k, v in
                                                                              pct(tick_times).items()}},
    }


def tensor_bytes(obj, storage: bool = False, seen: set | None = None, depth: int = 0) -> int:
    """Bytes of the tensors reachable from ``obj`` (dataclasses, transformers caches, lists...): their own
    sizes, or with ``storage`` the distinct storages they keep alive (a small view of a big activation
    keeps all of it)."""
    seen = set() if seen is None else seen
    if depth > 8 or id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        if not storage:
            return obj.nbytes
        key = ("storage", obj.untyped_storage().data_ptr())
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
        items = vars(obj).values()
    else:
        return 0
    return sum(tensor_bytes(x, storage, seen, depth + 1) for x in items)


def tiny_backbone(name: str):
    """``(backbone, step(state, t) -> (hidden, state), what its inputs are)`` for a tiny random model."""
    if name == "moshi":
        from backchannel.backbones import MoshiBackbone

        bb = MoshiBackbone.tiny()
        cfg = bb.model.config
        rng = np.random.default_rng(0)
        n = 4096
        text = torch.from_numpy(np.where(rng.random(n) < 0.3, rng.integers(4, cfg.vocab_size, n), 3)).long()
        codes = torch.from_numpy(rng.integers(0, cfg.audio_vocab_size, (n, 2, bb.num_codebooks))).long()

        def step(state, t):  # fresh tensors, as a host makes them
            return bb.step(state, text[t % n][None].clone(), codes[t % n][None].clone())

        what = (f"one text token + {bb.num_codebooks} Mimi codes per stream per frame (codec not timed); "
                f"hidden {bb.hidden_size}, {cfg.num_hidden_layers} layers, window {cfg.sliding_window}")
        return bb, step, what
    if name == "mimi":
        from backchannel.backbones import MimiBackbone
        from backchannel.backbones.mimi import SAMPLES_PER_FRAME

        bb = MimiBackbone.tiny()
        rng = np.random.default_rng(0)
        va = np.stack([f["va_speaker"] for f in synthetic_frames(256)])
        n = len(va)
        audio = torch.from_numpy((rng.normal(size=(n, 2, SAMPLES_PER_FRAME))
                                  * np.where(va, 0.1, 0.003)[:, None, None]).astype(np.float32))

        def step(state, t):  # fresh tensors, as a host makes them
            return bb.step(state, audio[t % n][None].clone())

        what = (f"80 ms of stereo 24 kHz audio per frame (encoder timed); latent {bb.latent_dim} per "
                f"channel, hidden {bb.hidden_size}")
        return bb, step, what
    raise ValueError(f"unknown backbone {name!r}")


def tiny_session(name: str, policy, frames: int, warmup: int, sessions: int) -> dict:
    """Per-frame latency of backbone step + head + policy, and memory per session (see module docstring)."""
    at_start = machine()
    backbone, step, what = tiny_backbone(name)
    head = TimingHead(backbone.hidden_size).eval()
    listener = StreamingListener(None, head, policy, deadline_s=NO_DEADLINE)
    state = backbone.init_state(1)
    for t in range(warmup):
        hidden, state = step(state, t)
        listener.step_hidden(hidden)
    listener.reset()
    state = backbone.init_state(1)
    total, bb_times, cpu = [], [], []
    clock, cpu_clock = time.perf_counter, time.thread_time
    for t in range(frames):
        t0, c0 = clock(), cpu_clock()
        hidden, state = step(state, t)
        t1 = clock()
        listener.step_hidden(hidden)
        total.append(clock() - t0)
        bb_times.append(t1 - t0)
        cpu.append(cpu_clock() - c0)
    assert not listener.faults, listener.faults
    head_policy = [a - b for a, b in zip(total, bb_times)]
    state_bytes = tensor_bytes(state) + tensor_bytes(listener.head_state)
    retained = tensor_bytes(state, storage=True) + tensor_bytes(listener.head_state, storage=True)

    fill = 2 * 8 + 2  # frames: past the tiny caches' windows (Moshi 8, Mimi 6)
    before = rss_bytes()
    held = []
    for _ in range(sessions):
        s = backbone.init_state(1)
        lst = StreamingListener(None, head, policy, deadline_s=NO_DEADLINE)
        for t in range(fill):
            h, s = step(s, t)
            lst.step_hidden(h)
        held.append((s, lst))
    rss = (rss_bytes() - before) / sessions
    return {"backbone": name, "config": "tiny, random weights", "inputs": what, "machine": at_start,
            "frames": frames, "warmup": warmup, **pct(total), "cpu_time": pct(cpu),
            "stages": {"backbone": pct(bb_times), "head+policy": pct(head_policy)},
            "memory": {"state_bytes": int(state_bytes), "retained_bytes": int(retained),
                       "rss_per_session_bytes": rss,
                       "sessions_measured": sessions, "frames_per_session": fill},
            "loadavg_at_end": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=0, help="also run N concurrent sessions (e.g. 100)")
    ap.add_argument("--seconds", type=float, default=10.0, help="paced real-time run of the sessions (s)")
    ap.add_argument("--backbone", nargs="+", choices=("timing", "moshi", "mimi"), default=["timing"],
                    help="which backbones to measure (moshi/mimi: tiny random configs)")
    ap.add_argument("--tiny-frames", type=int, default=2000, help="frames timed per tiny backbone")
    ap.add_argument("--tiny-sessions", type=int, default=50,
                    help="sessions for the tiny backbones' RSS figure")
    ap.add_argument("--out", default="benchmarks/results/streaming_latency.json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    policy = Policy(on=0.5, smoothing=3, cadence=12.0)
    if "timing" in args.backbone:
        result = timing_backbone(args, policy)
        result["backbones"] = previous.get("backbones", {})
    else:
        result = previous
    for name in ("moshi", "mimi"):
        if name in args.backbone:
            torch.manual_seed(0)
            print(f"{name} (tiny, random weights): {args.tiny_frames} frames after 100 warm-up, "
                  f"{args.threads} thread(s)")
            r = tiny_session(name, policy, args.tiny_frames, 100, args.tiny_sessions)
            r["threads"] = args.threads
            result.setdefault("backbones", {})[name] = r
            st, mem = r["stages"], r["memory"]
            print(f"  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  max {r['max_ms']:.2f} ms "
                  f"(backbone p50 {st['backbone']['p50_ms']:.3f} ms, "
                  f"head+policy p50 {st['head+policy']['p50_ms']:.3f} ms)")
            print(f"  state {mem['state_bytes'] / 2**10:.1f} KiB per session "
                  f"({mem['retained_bytes'] / 2**10:.1f} KiB of storage kept alive), "
                  f"RSS +{mem['rss_per_session_bytes'] / 2**10:.0f} "
                  f"KiB per extra session; load average {r['machine']['loadavg_at_start']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def timing_backbone(args, policy) -> dict:
    """Sections 1-3 of the module docstring for the timing backbone; the results' top-level keys."""
    backbone = TimingBackbone().eval()
    head = TimingHead(backbone.hidden_size).eval()
    frames = synthetic_frames(args.frames + args.warmup)
    result = {"machine": machine(), "threads": args.threads, "warmup": args.warmup,
              "config": {"backbone": asdict(backbone.config),
                         "head": {"kind": head.kind, "hidden": head.hidden},
                         "policy": {k: v for k, v in asdict(policy).items() if k != "forms"}}}

    print(f"single session: {args.frames} frames after {args.warmup} warm-up, {args.threads} thread(s)")
    result.update(single_session(backbone, head, policy, frames, args.warmup))
    cpu = result["cpu_time"]
    print(f"  p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  max {result['max_ms']:.2f} ms "
          f"(thread CPU time: p50 {cpu['p50_ms']:.3f} ms  p99 {cpu['p99_ms']:.3f} ms)")
    result["stages"] = stage_profile(backbone, head, policy, frames[: min(len(frames), 3000)])
    for name, s in result["stages"].items():
        print(f"  {name:9s} p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms")
    result["memory"] = memory(backbone, head, policy, frames)
    print(f"  state {result['memory']['state_bytes'] / 2**20:.2f} MiB per session, "
          f"RSS +{result['memory']['rss_per_session_bytes'] / 2**20:.2f} MiB per extra session")
    if args.sessions:
        s = result["concurrent"] = many_sessions(backbone, head, policy, frames, args.sessions, args.seconds)
        b, sep = s["batched"], s["separate"]
        print(f"{args.sessions} sessions (need {s['needed_fps']:.0f} frames/s): batched {b['fps']:.0f} "
              f"frames/s (x{b['realtime_factor']:.1f}), separate {sep['fps']:.0f} frames/s "
              f"(x{sep['realtime_factor']:.2f}); paced {s['paced']['ticks']} ticks: "
              f"tick p99 {s['paced']['tick_p99_ms']:.1f} ms, {s['paced']['late_ticks']} late")
    return result


if __name__ == "__main__":
    main()
