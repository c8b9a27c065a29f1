"""The command line end to end: prepare (real corpus, demo fallback, bad input), stats, inspect."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backchannel.cli import main


def test_prepare_maptask_real_official_split(tmp_path, corpora_root, capsys):
    assert main(["corpus", "prepare", "maptask", "--root", str(corpora_root), "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "maptask" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["dialogues"] == 32 and manifest["splits"]["train"]["dialogues"] == 80
    assert manifest["splits"]["dev"]["dialogues"] == 16
    from backchannel.corpora.dataset import load_prepared

    dsd, _ = load_prepared(tmp_path / "maptask")
    test_ids = set(dsd["test"]["dialogue"])
    assert len(test_ids) == 32 and all(i.startswith(("q7", "q8")) for i in test_ids)
    out = capsys.readouterr().out
    assert "by tag" in out and "by lexicon" in out  # gold-tag and lexicon counts side by side
    bc = manifest["backchannels"]["test"]
    assert bc["events"] == bc["tag"] > 0 and bc["candidates"]["lexicon"] > 0
    assert sum(bc["kinds"].values()) == bc["events"] and 0 < bc["kinds"]["isolated"] < bc["events"]
    assert "isolated" in out and "turn-init" in out and manifest["label_settings"]["bc_definition"] == "isolated"


def test_prepare_without_corpus_uses_demo_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BACKCHANNEL_CORPORA", raising=False)
    monkeypatch.setattr("backchannel.corpora.recipes.DEMO_DIR", tmp_path / "demo-src")
    assert main(["corpus", "prepare", "--out", str(tmp_path / "data")]) == 0
    err = capsys.readouterr().err
    assert "DEMO corpus" in err
    manifest = json.loads((tmp_path / "data" / "demo" / "manifest.json").read_text())
    assert manifest["corpus"] == "demo" and manifest["rows"] > 0
    # a second run refuses to clobber, --overwrite replaces
    assert main(["corpus", "prepare", "--out", str(tmp_path / "data")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["corpus", "prepare", "--out", str(tmp_path / "data"), "--overwrite"]) == 0


def test_prepare_label_options_reach_the_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BACKCHANNEL_CORPORA", raising=False)
    monkeypatch.setattr("backchannel.corpora.recipes.DEMO_DIR", tmp_path / "demo-src")
    assert main(["corpus", "prepare", "demo", "--out", str(tmp_path / "data"), "--bc-definition", "all",
                 "--non-isolated", "silent", "--isolation-before", "0.5", "--floor-within", "2", "--horizon",
                 "0.4", "--no-tags"]) == 0
    ls = json.loads((tmp_path / "data" / "demo" / "manifest.json").read_text())["label_settings"]
    assert (ls["bc_definition"], ls["non_isolated"], ls["isolation_before"], ls["isolation_after"],
            ls["floor_within"], ls["horizon"], ls["use_tags"]) == ("all", "silent", 0.5, 1.0, 2.0, 0.4, False)
    assert "bc_definition=all" in capsys.readouterr().out
    assert main(["corpus", "prepare", "demo", "--out", str(tmp_path / "x"), "--floor-within", "-1"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: label setting floor_within must be a finite number of seconds >= 0, got -1.0"
    assert not (tmp_path / "x").exists()


def _bad_maptask(tmp_path: Path, fixtures: Path) -> Path:
    root = tmp_path / "corpus" / "maptask"
    shutil.copytree(fixtures / "maptask", root)
    bad = sorted((root / "timed-units").glob("q7*.g.timed-units.xml"))[0]
    bad.write_text(bad.read_text()[:-40])  # truncated XML
    return root


def test_prepare_bad_input_names_file_and_skip_bad_lists_it(tmp_path, fixtures, capsys):
    root = _bad_maptask(tmp_path, fixtures)
    rc = main(["corpus", "prepare", "maptask", "--root", str(root.parent), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "timed-units.xml" in err and "q7" in err
    assert not (tmp_path / "out" / "maptask").exists()  # nothing half-written
    rc = main(["corpus", "prepare", "maptask", "--root", str(root.parent), "--out", str(tmp_path / "out"),
               "--skip-bad"])
    err = capsys.readouterr().err
    assert rc == 0 and "skipped 1 bad input" in err
    manifest = json.loads((tmp_path / "out" / "maptask" / "manifest.json").read_text())
    assert len(manifest["skipped"]) == 1 and "q7" in manifest["skipped"][0]["path"]


def test_stats_and_inspect_on_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BACKCHANNEL_CORPORA", raising=False)
    monkeypatch.setattr("backchannel.corpora.recipes.DEMO_DIR", tmp_path / "demo-src")
    assert main(["corpus", "stats", "demo", "--out", str(tmp_path / "stats")]) == 0
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert stats["backchannels"] > 0 and (tmp_path / "stats" / "stats.png").stat().st_size > 10_000
    assert 0 < stats["isolated"]["backchannels"] <= stats["backchannels"]
    assert stats["label_settings"]["floor_within"] == 1.5
    assert main(["corpus", "prepare", "demo", "--out", str(tmp_path / "data")]) == 0
    capsys.readouterr()
    png = tmp_path / "t.png"
    assert main(["corpus", "inspect", str(tmp_path / "data" / "demo"), "--dialogue", "q7ec1", "--plot",
                 str(png)]) == 0
    out = capsys.readouterr().out
    assert "q7ec1 listener" in out and png.stat().st_size > 10_000


def test_inspect_rejects_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(Exception, match=str(tmp_path.name)):
        main(["corpus", "inspect", str(tmp_path)])
