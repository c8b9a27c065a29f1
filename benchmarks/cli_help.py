"""Start-up time of the command line (issue 13): ``backchannel --help`` and every sub-command's ``--help``.

Each command runs in a fresh process, ``--runs`` times; the figure is the best (least disturbed) wall
time, also given as a ratio to a bare interpreter start, ``python -c "import sys"``, measured the same
way. Prints a table and writes ``benchmarks/results/cli_help.json`` (with the machine, the date and the
load average before and after).

    python benchmarks/cli_help.py [--runs 7] [--out benchmarks/results/cli_help.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

COMMANDS = [[], ["corpus"], ["corpus", "prepare"], ["corpus", "stats"], ["corpus", "inspect"],
            ["corpus", "download"], ["train"], ["evaluate"], ["simulate"], ["rating"], ["rating", "serve"]]


def wall_times(cmd: list[str], runs: int) -> list[float]:
    """Wall time (s) of ``runs`` fresh runs of ``cmd``; it must exit 0."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh processes per command (default 7)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_help.json")
    args = ap.parse_args(argv)

    exe = shutil.which("backchannel")
    entry = [exe] if exe else [sys.executable, "-m", "backchannel.cli"]
    load_before = os.getloadavg()
    base = wall_times([sys.executable, "-c", "import sys"], args.runs)
    rows = []
    for command in COMMANDS:
        t = wall_times([*entry, *command, "--help"], args.runs)
        rows.append({"command": " ".join(["backchannel", *command, "--help"]), "best_s": min(t),
                     "median_s": statistics.median(t), "ratio_to_python": min(t) / min(base)})
    load_after = os.getloadavg()

    print(f"python -c 'import sys': best {min(base) * 1000:.0f} ms (median {statistics.median(base) * 1000:.0f} ms)")
    print(f"{'command':<42} {'best':>8} {'median':>8} {'x python':>9}")
    for r in rows:
        print(f"{r['command']:<42} {r['best_s'] * 1000:>6.0f}ms {r['median_s'] * 1000:>6.0f}ms "
              f"{r['ratio_to_python']:>8.1f}x")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
              "platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
              "entry": " ".join(entry), "runs": args.runs,
              "loadavg_before": load_before, "loadavg_after": load_after,
              "python_import_sys": {"best_s": min(base), "median_s": statistics.median(base)}, "commands": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
