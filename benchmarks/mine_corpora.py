"""Benchmark: read + mine + frame + write both real corpora (Map Task and MRDA) as `corpus prepare` does.

    python benchmarks/mine_corpora.py [--root ../shared/corpora] [--out benchmarks/results/mining.json]

Prints wall time per stage and in total, hours of conversation, and peak resident memory, and writes JSON.
Acceptance (issue 2): the whole job <= 60 s on the 2-core machine, peak memory < 4 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from backchannel.corpora.dataset import build_dataset
from backchannel.corpora.framing import frame_listener
from backchannel.corpora.mining import mine_dialogue
from backchannel.corpora.recipes import load_corpus


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("BACKCHANNEL_CORPORA", "../shared/corpora"))
    ap.add_argument("--out", default="benchmarks/results/mining.json")
    args = ap.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "corpora": {}}
    t_all = time.perf_counter()
    for name in ("maptask", "mrda"):
        t0 = time.perf_counter()
        dialogues = list(load_corpus(name, args.root))
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        events = [mine_dialogue(d) for d in dialogues]
        t_mine = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_rows = 0
        for d, ev in zip(dialogues, events):
            for s in d.speakers:
                frame_listener(d, s, ev)
                n_rows += 1
        t_frame = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            build_dataset(iter(dialogues), Path(tmp) / name, corpus=name, progress=False)
            t_build = time.perf_counter() - t0
        hours = sum(d.duration for d in dialogues) / 3600
        n_bc = sum(len(e.backchannels) for ev in events for e in ev.listeners.values())
        result["corpora"][name] = {
            "dialogues": len(dialogues), "listener_rows": n_rows, "hours": round(hours, 2), "backchannels": n_bc,
            "read_s": round(t_read, 2), "mine_s": round(t_mine, 2), "frame_s": round(t_frame, 2),
            "prepare_s": round(t_build, 2), "read_plus_prepare_s": round(t_read + t_build, 2)}
        print(f"{name:8s} {len(dialogues):4d} dialogues {hours:5.1f} h  read {t_read:5.2f} s  mine {t_mine:5.2f} s  "
              f"frame {t_frame:5.2f} s  mine+frame+write {t_build:5.2f} s  ({n_bc} backchannels)", flush=True)
        del dialogues, events
    c = result["corpora"]
    result["total_hours"] = round(sum(v["hours"] for v in c.values()), 2)
    result["read_mine_frame_s"] = round(sum(v["read_s"] + v["mine_s"] + v["frame_s"] for v in c.values()), 2)
    result["read_prepare_s"] = round(sum(v["read_plus_prepare_s"] for v in c.values()), 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["wall_s"] = round(time.perf_counter() - t_all, 2)
    print(f"both corpora ({result['total_hours']} h): read+mine+frame {result['read_mine_frame_s']} s; "
          f"read + full prepare (mine, frame, write datasets) {result['read_prepare_s']} s; "
          f"peak RSS {result['peak_rss_mb']:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
