"""notebooks/02_train_and_evaluate.ipynb: slice a prepared dataset, VAP-pretrain the backbone, train the head,
evaluate against every baseline. Executed headlessly on one demo dialogue per split (about 30 s)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from backchannel.corpora.dataset import load_prepared
from backchannel.train.modules import load_checkpoint
from backchannel.train.predict import load_predictor
from test_notebooks import outputs_text, run_notebook

from backchannel.evaluation.report import summary_lines

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_train_and_evaluate.ipynb"
FAST = {"BACKCHANNEL_NB_DATA": "demo", "BACKCHANNEL_NB_DIALOGUES": "1", "BACKCHANNEL_NB_STEPS": "4",
        "BACKCHANNEL_NB_EPOCHS": "1"}
PLOTS = ("onset-offsets.png", "pr-backchannel.png", "timeline.png")


def outputs(nb, kind: str) -> list:
    """Outputs of the code cells carrying a ``kind`` (MIME type) of data."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {})]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb02")
    nb = run_notebook("02_train_and_evaluate.ipynb", tmp, {**FAST, "BACKCHANNEL_HOME": str(tmp / "home"),
                                                           "BACKCHANNEL_NB_OUT": str(tmp / "out")})
    return nb, outputs_text(nb), tmp / "out"


def test_committed_notebook_is_executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    text = outputs_text(nb)
    assert re.search(r"corpus: (maptask|demo)", text) and "evaluated in" in text
    assert len(outputs(nb, "image/png")) == len(PLOTS)
    assert "| head | rate_matched |" in outputs(nb, "text/markdown")[0]["data"]["text/markdown"]


def test_slice_keeps_the_shortest_dialogue_of_each_split(demo_run):
    _, text, out = demo_run
    assert "corpus: demo (synthetic demo" in text
    full, full_manifest = load_prepared(out / "demo")
    part, manifest = load_prepared(out / "demo-slice")
    for split in ("train", "dev", "test"):
        frames = {}
        for d, n in zip(full[split]["dialogue"], full[split]["n_frames"]):
            frames[d] = frames.get(d, 0) + n
        shortest = min(frames, key=frames.get)
        assert set(part[split]["dialogue"]) == {shortest}
        assert len(part[split]) == 2 and sum(part[split]["n_frames"]) == frames[shortest]  # both listeners
        assert f"slice {split:<5} {shortest}: 2 rows, {frames[shortest]} frames" in text
    assert manifest["rows"] == 6 and manifest["sliced_from"] == str(out / "demo")
    assert manifest["fingerprint"] != full_manifest["fingerprint"]
    for split, fp in manifest["split_fingerprints"].items():
        assert fp != full_manifest["split_fingerprints"][split]


def test_backbone_and_head_are_trained_on_the_slice(demo_run):
    _, text, out = demo_run
    _, manifest = load_prepared(out / "demo-slice")
    meta = load_checkpoint(out / "backbone" / "checkpoints" / "last.ckpt", kind="backbone")["backchannel"]
    assert meta["global_step"] == 4 and meta["manifests"]["demo"]["fingerprint"] == manifest["fingerprint"]
    assert "backbone: 4 steps in" in text
    m = re.search(r"checkpoint records the data it saw: \{'demo': '(\w+)'\} == slice fingerprint (\w+)", text)
    assert m and m.group(1) == m.group(2) == manifest["fingerprint"][:12]
    assert re.search(r"head: 1 epochs \(20 steps\)", text)  # --data.batches_per_epoch 20
    info = load_predictor(out / "head" / "checkpoints" / "best.ckpt").describe()
    assert info["corpora"]["demo"]["fingerprint"] == manifest["fingerprint"]
    assert {k: info["head_config"][k] for k in ("input_dim", "hidden", "kind")} == \
        {"input_dim": 16, "hidden": 32, "kind": "gru"}  # tiny_backbone d_model 16
    assert f"dev backchannel event F1 {info['metrics']['dev/bc_event_f1']:.3f}" in text


def test_evaluation_report_and_plots(demo_run):
    nb, text, out = demo_run
    report = json.loads((out / "eval" / "report.json").read_text())
    sec = report["corpora"]["demo"]
    assert {k: v["status"] for k, v in sec["systems"].items()} == {
        "random": "ok", "pause_gate": "ok", "ward_tsukahara": "n/a: no audio", "logistic": "ok", "gbt": "ok", "head": "ok"}
    assert sec["test"]["rows"] == 2 and sec["headline"] == "head"
    d = sec["definitions"][0]
    assert "evaluated in" in text and f"{sec['test']['backchannels'][d]['count']} true backchannels ({d}" in text
    for line in summary_lines(report):  # the notebook shows the figures of the report it wrote
        assert line in text
    table = outputs(nb, "text/markdown")[0]["data"]["text/markdown"]
    assert "| system | variant | P [-500,+500]" in table and "| ward_tsukahara | n/a: no audio |" in table
    assert "**Frame level**" in table and "**Cadence**" in table
    assert len(outputs(nb, "image/png")) == len(PLOTS)
    for name in PLOTS:
        assert f"demo-{name}" in text and (out / "eval" / f"demo-{name}").stat().st_size > 0
    assert "docs/eval/report.md" in text
