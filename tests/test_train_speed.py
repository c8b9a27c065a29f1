"""benchmarks/train_speed.py records the machine load: a process spinning on a core is counted as busy."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_busy_processes_counts_a_spinning_process_and_not_a_sleeping_one():
    ts = load_script()
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 20: pass"])
    sleep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    try:
        busy = ts.busy_processes(window_s=1.0, min_share=0.1)
        pids = {b["pid"]: b for b in busy}
        assert spin.pid in pids and sleep.pid not in pids
        assert 0.1 < pids[spin.pid]["core_share"] <= 1.05 and pids[spin.pid]["name"].startswith("python")
        load = ts.machine_load()
        assert len(load["load_avg"]) == 3 and load["other_busy_processes"] == len(load["busy"]) >= 1
    finally:
        spin.kill()
        sleep.kill()
        spin.wait()
        sleep.wait()
