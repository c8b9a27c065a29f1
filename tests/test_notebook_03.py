"""notebooks/03_plugin.ipynb: a dialogue replayed through the streaming listener, executed headlessly on a
short slice (the demo corpus, and the real Map Task where the corpora are available)."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
from test_notebooks import outputs_text, run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_plugin.ipynb"
FAST = {"BACKCHANNEL_NB_SECONDS": "20", "BACKCHANNEL_NB_CHECKPOINT": "none"}  # 20 s slice, random weights


def images(nb) -> int:
    return sum("image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def check_replay(text: str, seconds: int) -> None:
    assert "weights: random weights" in text and "untrained" in text
    frames = round(seconds / 0.08)
    m = re.search(r"streaming == offline: max \|p_live - p_offline\| = (\S+) over (\d+) frames", text)
    assert m and float(m.group(1)) < 1e-5 and int(m.group(2)) == frames
    m = re.search(r"(\d+) backchannels decided .* vs (\d+) real", text)
    assert m and int(m.group(1)) > 0  # threshold at the 95th percentile: the untrained model fires
    assert "speaker timing: corpus words" in text and "wrote " in text


def test_committed_notebook_is_executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert images(nb) == 1 and "streaming == offline" in outputs_text(nb)


def test_notebook_runs_on_the_demo_corpus(tmp_path, monkeypatch):
    monkeypatch.delenv("BACKCHANNEL_CORPORA", raising=False)
    nb = run_notebook("03_plugin.ipynb", tmp_path, {**FAST, "BACKCHANNEL_HOME": str(tmp_path / "home")})
    text = outputs_text(nb)
    assert "corpus: demo (synthetic demo" in text
    check_replay(text, 20)
    assert images(nb) == 1


def test_notebook_runs_on_real_maptask(tmp_path, corpora_root):
    nb = run_notebook("03_plugin.ipynb", tmp_path, {**FAST, "BACKCHANNEL_CORPORA": str(corpora_root)})
    text = outputs_text(nb)
    assert "corpus: maptask" in text and "q7ec1: listener" in text
    check_replay(text, 20)
