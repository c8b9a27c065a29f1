"""Wall time of `backchannel train backbone|head` with EXACTLY a given config (the acceptance budget:
backbone pretraining <= 20 min, head training <= 3 min on the shared 2-core CPU).

    python benchmarks/train_speed.py backbone train/configs/backbone_timing.yaml
    python benchmarks/train_speed.py head train/configs/head_timing.yaml [LightningCLI overrides ...]

Runs the training in this process (the same code path as the CLI), then appends a record to
benchmarks/results/train_speed.json: config, overrides, wall seconds (total, and the head's feature
cache build separately), steps, frames seen, the checkpoint's metrics, and the machine load (1-minute
load average before and after; other engineers share the CPU).
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["backbone", "head"])
    p.add_argument("config")
    p.add_argument("--label", help="name of this record (default: the config's stem)")
    p.add_argument("--out", default=str(RESULTS))
    args, overrides = p.parse_known_args(argv)

    import torch
    from backchannel.train.cli import resolve_config, run

    load_before = os.getloadavg()[0]
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
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
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
