"""Wall time of `backchannel train backbone|head` with EXACTLY a given config (the acceptance budget:
backbone pretraining <= 20 min, head training <= 3 min on the shared 2-core CPU).

    python benchmarks/train_speed.py backbone train/configs/backbone_timing.yaml
    python benchmarks/train_speed.py head train/configs/head_timing.yaml [LightningCLI overrides ...]

Runs the training in this process (the same code path as the CLI), then appends a record to
benchmarks/results/train_speed.json: config, overrides, wall seconds (total, and the head's feature
cache build separately), steps, frames seen, the checkpoint's metrics, and the machine load before and
after (1/5/15-minute load averages, and the other processes busy on the CPU: more than 10% of a core
over 1 s, with their names), since other jobs on shared cores slow a run down. A figure is only
comparable to another measured under the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """``{pid: (command name, utime + stime in clock ticks)}`` of every process (Linux ``/proc``)."""
    ticks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        ticks[int(stat.parent.name)] = (name, int(fields[11]) + int(fields[12]))  # utime, stime
    return ticks


def busy_processes(window_s: float = 1.0, min_share: float = 0.1) -> list[dict] | None:
    """Processes other than this one that used more than ``min_share`` of a core over ``window_s``
    seconds, busiest first (``None`` where there is no ``/proc``)."""
    if not Path("/proc/self/stat").exists():
        return None
    hz = os.sysconf("SC_CLK_TCK")
    first = _cpu_ticks()
    time.sleep(window_s)
    busy = []
    for pid, (name, t) in _cpu_ticks().items():
        if pid != os.getpid() and pid in first:
            share = (t - first[pid][1]) / hz / window_s
            if share > min_share:
                busy.append({"pid": pid, "name": name, "core_share": round(share, 2)})
    return sorted(busy, key=lambda b: -b["core_share"])


def machine_load() -> dict:
    """Load averages (1, 5, 15 min) and the other busy processes, now."""
    busy = busy_processes()
    return {"load_avg": [round(x, 2) for x in os.getloadavg()],
            "other_busy_processes": None if busy is None else len(busy), "busy": busy}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["backbone", "head"])
    p.add_argument("config")
    p.add_argument("--label", help="name of this record (default: the config's stem)")
    p.add_argument("--out", default=str(RESULTS))
    args, overrides = p.parse_known_args(argv)

    import torch
    from backchannel.train.cli import resolve_config, run

    load_before = machine_load()
    t0 = time.perf_counter()
    cli = run(args.kind, ["--config", resolve_config(args.config), *overrides])
    wall = time.perf_counter() - t0
    trainer, dm = cli.trainer, cli.datamodule
    record = {
        "label": args.label or Path(args.config).stem,
        "kind": args.kind,
        "config": str(args.config),
        "overrides": overrides,
        "wall_s": round(wall, 1),
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "batch_size": int(dm.hparams.batch_size),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        "best_checkpoint": trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None,
        "last_checkpoint": (str(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt")
                            if trainer.checkpoint_callback else None),
        "threads": torch.get_num_threads(),
        "load_avg_1min_before": load_before["load_avg"][0],
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "load_before": load_before,
        "load_after": machine_load(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if args.kind == "head":
        record["cache_build_s"] = round(getattr(dm, "cache_build_s", float("nan")), 1)
        record["train_s_excluding_cache_build"] = round(wall - getattr(dm, "cache_build_s", 0.0), 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(out.read_text()) if out.is_file() else []
    records.append(record)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
