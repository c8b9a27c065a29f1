"""Execute the tutorials headlessly on a small slice; a failing cell fails the test."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, tmp_path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs_text(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_01_corpus_notebook(tmp_path, corpora_root):
    nb = run_notebook("01_corpus.ipynb", tmp_path,
                      {"BACKCHANNEL_NB_DIALOGUES": "2", "BACKCHANNEL_CORPORA": str(corpora_root),
                       "BACKCHANNEL_HOME": str(tmp_path / "home")})
    text = outputs_text(nb)
    assert "corpus: maptask" in text and "2 test dialogues" in text
    assert "backchannels per listener-minute" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 2  # timeline + statistics


def test_01_corpus_notebook_runs_on_demo_without_corpora(tmp_path, monkeypatch):
    monkeypatch.delenv("BACKCHANNEL_CORPORA", raising=False)
    nb = run_notebook("01_corpus.ipynb", tmp_path, {"BACKCHANNEL_NB_DIALOGUES": "1",
                                                    "BACKCHANNEL_HOME": str(tmp_path / "home")})
    assert "corpus: demo (synthetic demo" in outputs_text(nb)
