"""`backchannel rating build|serve|raters|analyze` through argparse, as the top-level CLI wires them."""
from __future__ import annotations

import argparse
import json
import re
import sys

import pytest
from backchannel.corpora.errors import CorpusError

from backchannel.rating.commands import register


def run(argv) -> int:
    ap = argparse.ArgumentParser(prog="backchannel")
    register(ap.add_subparsers(dest="command"))
    args = ap.parse_args(argv)
    return args.func(args)


@pytest.fixture
def reader(tmp_path, monkeypatch):
    """A dialogue reader module ``demo_reader:read_dialogue(root, dialogue_id)`` on sys.path."""
    (tmp_path / "demo_reader.py").write_text(
        "from backchannel.rating.stimuli import demo_dialogue\n"
        "def read_dialogue(root, dialogue_id):\n"
        "    d = demo_dialogue(100.0, seed=int(dialogue_id[-1]))\n"
        "    d.id, d.corpus = dialogue_id, 'demo'\n"
        "    return d\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "demo_reader:read_dialogue"
    sys.modules.pop("demo_reader", None)


def test_build_serve_raters_analyze(tmp_path, reader, capsys, monkeypatch):
    onsets = tmp_path / "model.jsonl"
    onsets.write_text("".join(json.dumps({"corpus": "demo", "dialogue": f"d{i}", "listener": "B",
                                          "onsets": [5.0 + 7 * k for k in range(12)]}) + "\n" for i in (1, 2)))
    study = tmp_path / "study"
    assert run(["rating", "build", "--model-onsets", str(onsets), "--reader", reader, "--corpus-root", str(tmp_path),
                "--out", str(study), "--tts", "tone", "--per-dialogue", "1", "--seed", "3"]) == 0
    out = capsys.readouterr()
    assert "wrote 8 clips (2 windows x 4 conditions)" in out.out and "speech rendering: tone" in out.out
    assert "WARNING: no text-to-speech" in out.err
    key = json.loads((study / "study.json").read_text())["key"]
    assert {k["dialogue"] for k in key.values()} == {"d1", "d2"} and len(list((study / "clips").iterdir())) == 8

    db = tmp_path / "r.sqlite"
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: served.update(app=app, host=host, port=port))
    monkeypatch.setenv("BACKCHANNEL_RATING_ADMIN_TOKEN", "admin-token-from-the-environment")
    assert run(["rating", "serve", "--study", str(study / "study.json"), "--db", str(db), "--add-raters", "2"]) == 0
    out = capsys.readouterr().out
    links = re.findall(r"rater (r[0-9a-f]{8}): http://127\.0\.0\.1:8750/rate#(\S+)", out)
    assert len(links) == 2 and served["host"] == "127.0.0.1" and served["port"] == 8750
    assert "admin-token-from-the-environment" not in out  # the admin token is not echoed when it came from env
    store = served["app"].rating.store
    (r1, t1), (r2, t2) = links
    assert store.rater_for_token(t1)["id"] == r1
    for clip in key:
        store.save_rating(r1, clip, timing=4 if key[clip]["condition"] == "real" else 2, naturalness=3)
    store.save_rating(r2, next(iter(key)), timing=3, naturalness=3)

    assert run(["rating", "raters", "--db", str(db), "--revoke", r2]) == 0
    assert store.rater_for_token(t2) is None
    assert run(["rating", "raters", "--db", str(db), "--revoke", "rnope"]) == 1
    assert run(["rating", "raters", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert f"{r1}\t\t8 rated\tactive" in listing and f"{r2}\t\t1 rated\trevoked" in listing

    assert run(["rating", "analyze", "--db", str(db), "--study", str(study / "study.json"),
                "--out", str(tmp_path / "rep")]) == 0
    rep = json.loads((tmp_path / "rep" / "rating_report.json").read_text())
    assert rep["n_rows"] == 9 and rep["mos"]["timing"]["real"]["mean"] == pytest.approx((4 + 4 + 3) / 3)


def test_build_errors(tmp_path, reader, capsys):
    onsets = tmp_path / "model.jsonl"
    onsets.write_text('{"corpus": "nosuch", "dialogue": "d1", "listener": "B", "onsets": [1.0]}\n')
    with pytest.raises(CorpusError, match="nosuch: unknown corpus"):
        run(["rating", "build", "--model-onsets", str(onsets), "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit, match="no dialogue reader 'demo_reader:nope'"):
        run(["rating", "build", "--model-onsets", str(onsets), "--reader", "demo_reader:nope", "--out", "s"])
    assert run(["rating", "build", "--model-onsets", str(onsets), "--reader", reader, "--out", str(tmp_path / "s"),
                "--dialogues", "other"]) == 2
    assert "no (dialogue, listener) to use" in capsys.readouterr().err
    assert run(["rating", "analyze", "--db", str(tmp_path / "none.sqlite"), "--study", "x", "--out", "y"]) == 2


@pytest.mark.corpora
def test_build_from_real_maptask(corpora_root, tmp_path, capsys):
    """Map Task q7ec4 (transcript only): the follower as listener, speech rendered by espeak-ng (or tones)."""
    onsets = tmp_path / "model.jsonl"
    onsets.write_text(json.dumps({"corpus": "maptask", "dialogue": "q7ec4", "listener": "f",
                                  "onsets": [12.48 + 4.0 * k for k in range(60)]}) + "\n")
    assert run(["rating", "build", "--model-onsets", str(onsets), "--corpus-root", str(corpora_root),
                "--out", str(tmp_path / "s"), "--per-dialogue", "1"]) == 0
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert len(study["clips"]) == 4 and "speech rendering" in capsys.readouterr().out
    (k, *_) = study["key"].values()
    assert k["corpus"] == "maptask" and k["dialogue"] == "q7ec4" and 20 <= k["end"] - k["start"] <= 40
    real = next(v for v in study["key"].values() if v["condition"] == "real")
    assert len(real["backchannels"]) >= 2


def test_serve_answers_its_own_host_names_only(tmp_path, capsys, monkeypatch):
    from starlette.testclient import TestClient
    from test_rating_app import make_study

    study, _ = make_study(tmp_path / "study", n_windows=1)
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: served.update(app=app, host=host, port=port))
    assert run(["rating", "serve", "--study", str(study), "--db", str(tmp_path / "r.sqlite"), "--host", "0.0.0.0",
                "--base-url", "https://raters.example.org", "--allowed-host", "lab-pc.local"]) == 0
    with TestClient(served["app"]) as c:
        for host, status in (("raters.example.org", 200), ("lab-pc.local:8750", 200), ("127.0.0.1:8750", 200),
                             ("0.0.0.0:8750", 400), ("evil.example", 400), ("testserver", 400)):
            assert c.get("/rate", headers={"Host": host}).status_code == status, host
    assert run(["rating", "serve", "--study", str(study), "--db", str(tmp_path / "r.sqlite"), "--host", "0.0.0.0"]) == 0
    assert "remote raters' browsers are refused unless their Host is named with --allowed-host" in capsys.readouterr().err
