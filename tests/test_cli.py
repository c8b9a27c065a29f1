"""The command line end to end: prepare (real corpus, demo fallback, bad input), stats, inspect."""
from __future__ import annotations

import json
import re
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
    assert "8/8" in err  # the progress bar has a total (8 demo dialogues)
    # a second run refuses to clobber, --overwrite replaces
    assert main(["corpus", "prepare", "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "overwrite=True" not in err
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
    n_s = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert re.search(r"timeline plot of q7ec1 listener \w+, 0-60 s of \d+ s, written to", out), out
    # a corpus name resolves data/<name>, as evaluate and simulate do; the window can move
    monkeypatch.chdir(tmp_path)
    assert main(["corpus", "inspect", "demo", "--dialogue", "q7ec1", "--plot", "t2.png", "--start", "30",
                 "--seconds", "20"]) == 0
    assert "30-50 s of" in capsys.readouterr().out and n_s
    # user mistakes: one line naming the dataset, exit 2
    for argv, problem in [(["demo", "--dialogue", "zz999"], "no row for dialogue 'zz999'"),
                          (["demo", "--dialogue", "q7ec1", "--listener", "x"], "listener 'x'"),
                          (["demo", "--plot", "t3.png", "--start", "99999"], "past the end"),
                          (["demo", "--plot", "t3.png", "--seconds", "0"], "--seconds must be > 0"),
                          (["maptask"], "data/maptask: not a prepared dataset")]:
        assert main(["corpus", "inspect", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and err.count("\n") == 1, err


def test_inspect_rejects_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    assert main(["corpus", "inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}: not a prepared dataset; run `backchannel corpus prepare CORPUS` first\n"
    (tmp_path / "manifest.json").write_text("{not json")
    (tmp_path / "dataset_dict.json").write_text("{}")
    assert main(["corpus", "inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}") and "Traceback" not in err and err.count("\n") == 1


# ---------------------------------------------------------------- your own corpus: STM + stereo WAV

def _stm_corpus(tmp_path, zed_chan, amy_chan, **labels):
    from test_audio import AMY, ZED, stm_file, two_speaker_wav

    (tmp_path / "stm").mkdir()
    (tmp_path / "wav").mkdir()
    stm_file(tmp_path / "stm" / "rec.stm", zed_chan, amy_chan, **labels)
    two_speaker_wav(tmp_path / "wav" / "rec.wav", AMY, ZED)
    return ["corpus", "prepare", "stm", "--root", str(tmp_path / "stm"), "--audio", str(tmp_path / "wav"),
            "--out", str(tmp_path / "out")]


def _row(out, listener):
    from backchannel.corpora.dataset import load_prepared

    dsd, _ = load_prepared(out)
    rows = [r for s in dsd for r in dsd[s].with_format("numpy") if r["listener"] == listener]
    assert len(rows) == 1
    return rows[0]


def test_prepare_stm_stereo_channel_from_the_transcript(tmp_path, capsys):
    assert main(_stm_corpus(tmp_path, "B", "A")) == 0  # zed, the first speaker in the file, is on channel 1
    err = capsys.readouterr().err
    assert "rec.wav: channel 0 = amy, channel 1 = zed (from the transcript's channel field)" in err
    zed = _row(tmp_path / "out" / "stm", "zed")
    assert zed["va_source"] == "audio"
    assert zed["va_listener"][8:24].min() == 1.0 and zed["va_listener"][31:42].max() == 0.0  # zed's own voice


def test_prepare_stm_guessed_mapping_refused_then_given(tmp_path, capsys):
    argv = _stm_corpus(tmp_path, "1", "1", zed="a_zed", amy="b_amy")  # sorted labels put a_zed on channel 0
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "rec.wav: the guessed channel mapping" in line and "looks swapped" in line
    assert line.endswith("--channel-map a_zed=1,b_amy=0")
    assert not (tmp_path / "out" / "stm").exists()
    assert main(argv + ["--channel-map", "a_zed=1,b_amy=0"]) == 0
    assert "rec.wav: channel 0 = b_amy, channel 1 = a_zed (given)" in capsys.readouterr().err
    assert _row(tmp_path / "out" / "stm", "a_zed")["va_listener"][8:24].min() == 1.0
    (tmp_path / "map.json").write_text(json.dumps({"rec": {"a_zed": 1, "b_amy": 0}}))
    assert main(argv + ["--channel-map", str(tmp_path / "map.json"), "--overwrite"]) == 0
    assert _row(tmp_path / "out" / "stm", "a_zed")["va_listener"][8:24].min() == 1.0


@pytest.mark.parametrize("bad", ["a_zed:1", "a_zed=one", "a_zed=-1", "nofile.json"])
def test_channel_map_syntax(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(_stm_corpus(tmp_path, "1", "1") + ["--channel-map", bad])
    assert exc.value.code == 2 and "argument --channel-map: " in capsys.readouterr().err


# ---------------------------------------------------------------- --skip-bad per recording

def test_skip_bad_keeps_the_good_recordings_of_one_stm(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    lines = [f"r{k} A a 0.0 2.0 so we go north\nr{k} B b 2.2 2.5 mhm\nr{k} A a 2.6 4.0 then east" for k in range(6)]
    lines[3] = lines[3].replace("2.2 2.5", "2.5 2.2")  # one bad line in recording r3
    (tmp_path / "c" / "all.stm").write_text("\n".join(lines) + "\n")
    argv = ["corpus", "prepare", "stm", "--root", str(tmp_path / "c"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2 and "all.stm:11: negative duration" in capsys.readouterr().err
    assert main(argv + ["--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad input" in err and "recording r3 skipped" in err
    manifest = json.loads((tmp_path / "out" / "stm" / "manifest.json").read_text())
    assert sum(s["dialogues"] for s in manifest["splits"].values()) == 5 and len(manifest["skipped"]) == 1


def test_skip_bad_with_nothing_left_fails(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "one.stm").write_text("r1 A a 0.0 2.0 so\nr1 B b 2.5 2.2 mhm\n")
    rc = main(["corpus", "prepare", "stm", "--root", str(tmp_path / "c"), "--out", str(tmp_path / "out"),
               "--skip-bad"])
    err = capsys.readouterr().err
    assert rc == 2 and "no dialogues to write (1 inputs skipped as bad)" in err and "one.stm:2" in err
    assert not (tmp_path / "out" / "stm").exists() and "Traceback" not in err


def test_mrda_meeting_without_a_split(tmp_path, fixtures, capsys):
    shutil.copytree(fixtures / "mrda", tmp_path / "corpus" / "mrda")
    shutil.copy(tmp_path / "corpus/mrda/database/Bxx001.dadb", tmp_path / "corpus/mrda/database/Zzz999.dadb")
    argv = ["corpus", "prepare", "mrda", "--root", str(tmp_path / "corpus"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Zzz999.dadb: meeting Zzz999 is in none of the split files" in err
    assert main(argv + ["--skip-bad"]) == 0
    assert "skipped 1 bad input" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "mrda" / "manifest.json").read_text())["rows"] == 3 + 2 + 2


# ---------------------------------------------------------------- pseudo-speakers

def test_speaker_filters_and_little_speech(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "talk.stm").write_text(
        "talk 1 lecturer 0.0 30.0 so today we talk about turn taking and backchannels in conversation\n"
        "talk 1 audience 12.0 12.8 <LAUGH>\n"
        "talk 1 student 31.0 43.0 could you say more about how listeners time their responses please\n"
        "talk 1 lecturer 44.0 60.0 yes of course the timing follows the speaker's pauses mostly\n")
    argv = ["corpus", "prepare", "stm", "--root", str(tmp_path / "c"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "little speech" in out and "talk/audience 0.8 s" in out
    assert main(argv + ["--overwrite", "--exclude-speakers", "^aud"]) == 0
    assert "talk/audience" not in capsys.readouterr().out
    from backchannel.corpora.dataset import load_prepared

    dsd, manifest = load_prepared(tmp_path / "out" / "stm")
    rows = [(r["listener"], r["floor"]) for s in dsd for r in dsd[s]]
    assert rows == [("lecturer", "audience+student"), ("student", "lecturer+audience")]
    assert manifest["listener_filter"]["exclude_speakers"] == "^aud"
    assert main(argv + ["--overwrite", "--speakers", "^stu"]) == 0
    dsd = load_prepared(tmp_path / "out" / "stm")[0]
    assert [r["listener"] for s in dsd for r in dsd[s]] == ["student"]


def test_timeline_says_its_window_and_its_legend_covers_no_data():
    import matplotlib.pyplot as plt
    import numpy as np
    from backchannel.corpora.inspect import timeline_figure

    n = 4000  # 320 s
    row = {"corpus": "hand", "dialogue": "d1", "listener": "f", "floor": "g", "n_frames": n,
           "va_speaker": np.ones(n), "va_listener": np.ones(n), "action": np.ones(n, dtype=np.int8),
           "bc_onsets": [12.0], "bc_forms": ["mhm"], "bc_types": ["continuer"], "shift_onsets": [30.0],
           "interruption_onsets": []}
    fig = timeline_figure(row, start=10, seconds=50)
    fig.canvas.draw()
    assert "10-60 s of 320 s" in fig._suptitle.get_text()
    renderer = fig.canvas.get_renderer()
    legends = fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(a.get_window_extent(renderer)) for a in fig.axes)
    assert fig.axes[-1].get_xlim() == (10, 60)
    plt.close(fig)
