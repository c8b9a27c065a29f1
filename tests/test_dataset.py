"""Hugging Face dataset writer: schema, counts, determinism, atomic replace, clear errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backchannel.corpora.dataset import (
    FEATURES,
    SPLITS,
    LabelSettings,
    build_dataset,
    code_version,
    load_prepared,
    row_prosody,
)
from backchannel.corpora.errors import CorpusError
from test_mining import tagged, three_party, two_party  # hand-built dialogues


def corpus():
    """Three hand-built dialogues: two train, one test, none dev."""
    return [two_party().with_split("train"), tagged().with_split("train"), three_party().with_split("test")]


def build(out, **kw):
    return build_dataset(corpus(), out, corpus="hand", progress=False, **kw)


def test_rows_schema_and_manifest(tmp_path):
    out = tmp_path / "hand"
    dd = build(out, label_settings={"horizon": 0.5}, skipped=[("bad.xml", "bad.xml:3: no words"), "odd"])
    assert list(dd) == list(SPLITS)
    assert [dd[s].num_rows for s in SPLITS] == [4, 0, 3]  # (dialogue, listener) rows; empty dev kept
    for s in SPLITS:
        assert dd[s].features == FEATURES
    row = dd["train"].with_format("numpy")[1]  # hand2, listener B
    assert (row["dialogue"], row["listener"], row["floor"], row["split"], row["n_frames"]) == \
        ("hand2", "B", "A", "train", 163)
    assert row["prosody"].shape == (0, 8)  # no audio: stored empty ...
    prosody, mask = row_prosody(row)  # ... and expanded to n frames, all masked
    assert prosody.shape == (163, 8) and mask.dtype == bool and not mask.any() and not prosody.any()
    assert np.flatnonzero(row["action"] == 1).tolist() == list(range(23, 30)) + list(range(43, 50))
    assert row["bc_forms"].tolist() == ["mhm", "yeah"] and row["hold_pauses"].shape == (2, 2)
    assert dd["test"][2]["floor"] == "A+B"

    ds, manifest = load_prepared(out)
    assert ds["train"].num_rows == 4 and manifest["rows"] == 7 and manifest["corpus"] == "hand"
    train = manifest["splits"]["train"]
    assert (train["dialogues"], train["rows"], train["frames"]) == (2, 4, 2 * 163 + 2 * 200)
    # hand2: B's 2 lexicon BCs; tags: B's 3 tag BCs; tag/lexicon candidates side by side (see test_mining)
    # kinds: hand2's two and "okay" isolated, "mhm" turn-initial, "go on" other (see test_mining)
    assert manifest["backchannels"]["train"] == {
        "events": 5, "tag": 3, "lexicon": 2, "kinds": {"isolated": 3, "turn_initial": 1, "other": 1},
        "candidates": {"tag": 3, "lexicon": 5, "both": 2, "tag_only": 1, "lexicon_only": 3}}
    tags = dd["train"].with_format("numpy")[3]  # tags, listener B: the event lists keep every candidate
    assert tags["bc_kinds"].tolist() == ["isolated", "other", "turn_initial"]
    assert tags["bc_isolated"].tolist() == [True, False, False] and tags["bc_types"][1] == "echo"
    assert (tags["action"] == -1).sum() == 6  # the "other" candidate's frames are masked
    assert manifest["backchannels"]["dev"]["events"] == 0 and manifest["backchannels"]["test"]["events"] == 2
    # hand2: B shift+interruption, A shift; tags: B interrupts at 4.0 and 8.5 (A speaks 0-10), shifts at 11.0;
    # pauses: hand2 2 holds + 2 shifts; tags: B's 10-11 shift, A hears B pause 11.3-11.5 and 13-14 (holds)
    assert [train[k] for k in ("shifts", "interruptions", "hold_pauses", "shift_pauses")] == [3, 3, 4, 3]
    assert manifest["splits"]["dev"]["rows"] == 0 and manifest["splits"]["test"]["rows"] == 3
    assert manifest["label_settings"] == {"horizon": 0.5, "pause": 0.2, "max_words": 3, "max_duration": 1.0,
                                          "continue_gap": 0.5, "use_tags": True, "isolation_before": 1.0,
                                          "isolation_after": 1.0, "floor_within": 1.5,
                                          "bc_definition": "isolated", "non_isolated": "turn_or_mask"}
    assert LabelSettings.of(manifest["label_settings"]) == LabelSettings()  # round trip
    assert manifest["skipped"] == [{"path": "bad.xml", "error": "bad.xml:3: no words"}, "odd"]
    assert manifest["code"]["version"] and len(manifest["code"]["source_sha256"]) == 64
    assert manifest["source_root"] is None  # hand-built dialogues have no source file
    assert len(manifest["fingerprint"]) == 64


def test_deterministic(tmp_path):
    a, b = build(tmp_path / "a"), build(tmp_path / "b")
    ma, mb = (json.loads((tmp_path / x / "manifest.json").read_text()) for x in "ab")
    assert ma["fingerprint"] == mb["fingerprint"] and ma == mb
    for s in SPLITS:
        assert a[s].data.table.equals(b[s].data.table)
        assert (tmp_path / "a" / s / "data-00000-of-00001.arrow").read_bytes() == \
            (tmp_path / "b" / s / "data-00000-of-00001.arrow").read_bytes()
    # other settings, other content
    c = build(tmp_path / "c", label_settings=LabelSettings(horizon=0.3))
    mc = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert mc["fingerprint"] != ma["fingerprint"] and not c["train"].data.table.equals(a["train"].data.table)
    # bc_definition "all": the same events, labels as before isolation (no masked frame)
    e = build(tmp_path / "e", label_settings={"bc_definition": "all"})
    me = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert me["label_settings"]["bc_definition"] == "all" and me["fingerprint"] != ma["fingerprint"]
    assert e["train"]["bc_onsets"] == a["train"]["bc_onsets"] and e["train"]["bc_kinds"] == a["train"]["bc_kinds"]
    assert min(min(x) for x in e["train"]["action"]) == 0 and min(min(x) for x in a["train"]["action"]) == -1


def test_atomic_on_failure_and_overwrite(tmp_path):
    out = tmp_path / "hand"

    def failing():
        yield two_party().with_split("train")
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError, match="reader broke"):
        build_dataset(failing(), out, corpus="hand", progress=False)
    assert list(tmp_path.iterdir()) == []  # no out_dir, no temp dir

    build(out)
    before = json.loads((out / "manifest.json").read_text())
    with pytest.raises(FileExistsError, match="hand: already exists"):
        build(out)
    with pytest.raises(RuntimeError, match="reader broke"):
        build_dataset(failing(), out, corpus="hand", progress=False, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["hand"]  # the old build survives, untouched
    assert load_prepared(out)[1] == before

    dd = build_dataset([two_party().with_split("dev")], out, corpus="hand", progress=False, overwrite=True,
                       source="/data/hand")
    assert [dd[s].num_rows for s in SPLITS] == [0, 2, 0] and [p.name for p in tmp_path.iterdir()] == ["hand"]
    assert load_prepared(out)[1]["source_root"] == "/data/hand"


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="hand2 has split None"):
        build_dataset([two_party().with_split(None)], tmp_path / "x", corpus="hand", progress=False)
    with pytest.raises(ValueError, match="dialogue id hand2 appears twice"):
        build_dataset([two_party(), two_party()], tmp_path / "x", corpus="hand", progress=False)
    with pytest.raises(ValueError, match="unknown label settings"):
        build_dataset([two_party()], tmp_path / "x", corpus="hand", label_settings={"horizn": 1})
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a prepared dataset"):
        build_dataset([two_party()], tmp_path / "mine", corpus="hand", progress=False, overwrite=True)
    with pytest.raises(FileNotFoundError, match="mine: not a prepared dataset"):
        load_prepared(tmp_path / "mine")


def test_row_prosody_keeps_audio_rows_and_rejects_wrong_length():
    n = 3
    p = np.arange(24, dtype=np.float32).reshape(3, 8)
    m = np.ones((3, 8), bool)
    got_p, got_m = row_prosody({"n_frames": n, "prosody": p, "prosody_mask": m})
    np.testing.assert_array_equal(got_p, p)
    assert got_m.all()
    with pytest.raises(ValueError, match="prosody has 2 frames, expected 3"):
        row_prosody({"n_frames": n, "prosody": p[:2], "prosody_mask": m[:2], "dialogue": "d", "listener": "A"})


def test_bad_split_and_duplicate_are_corpus_errors_naming_the_source(tmp_path):
    d = replace(two_party(), source="/corpus/hand2.TextGrid", split=None)
    with pytest.raises(CorpusError, match=r"hand2\.TextGrid: dialogue hand2 has split None"):
        build_dataset([d], tmp_path / "x", corpus="hand", progress=False)
    d = d.with_split("train")
    with pytest.raises(CorpusError, match=r"hand2\.TextGrid: dialogue id hand2 appears twice"):
        build_dataset([d, d], tmp_path / "x", corpus="hand", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_nothing_to_write_is_refused(tmp_path):
    with pytest.raises(CorpusError, match=r"x: no dialogues to write \(2 inputs skipped as bad\)"):
        build_dataset([], tmp_path / "x", corpus="hand", progress=False, skipped=[("a", "bad"), ("b", "bad")])
    with pytest.raises(CorpusError, match="no listener rows to write"):
        build_dataset([three_party().with_split("test")], tmp_path / "x", corpus="hand", progress=False,
                      speakers="^nobody$")
    assert list(tmp_path.iterdir()) == []


def test_listener_filter_keeps_the_floor(tmp_path):
    dd = build_dataset([three_party().with_split("test")], tmp_path / "x", corpus="hand", progress=False,
                       exclude_speakers="^C$")
    assert dd["test"]["listener"] == ["A", "B"] and dd["test"]["floor"] == ["B+C", "A+C"]  # C still speaks
    manifest = load_prepared(tmp_path / "x")[1]
    assert manifest["listener_filter"] == {"speakers": None, "exclude_speakers": "^C$"}
    assert manifest["splits"]["test"]["rows"] == 2
    dd = build_dataset([three_party().with_split("test")], tmp_path / "y", corpus="hand", progress=False,
                       speakers="[AB]", exclude_speakers="A")
    assert dd["test"]["listener"] == ["B"]
    with pytest.raises(ValueError, match="bad --speakers regular expression"):
        build_dataset([three_party()], tmp_path / "z", corpus="hand", progress=False, speakers="(")


def test_listeners_with_little_speech_are_reported(tmp_path):
    build_dataset([three_party().with_split("test")], tmp_path / "x", corpus="hand", progress=False)
    low = {(r["dialogue"], r["listener"]): r for r in load_prepared(tmp_path / "x")[1]["low_speech_listeners"]}
    # every speaker of the 6.5 s hand dialogue says less than 10 s; B: 1.0-1.45 and 5.3-6.0 s = 1.15 s
    assert set(low) == {("three", "A"), ("three", "B"), ("three", "C")}
    assert low[("three", "B")]["speech_s"] == pytest.approx(1.15)
    assert low[("three", "B")]["share"] == pytest.approx(1.15 / 6.56)  # 82 frames of 80 ms
    assert low[("three", "B")]["split"] == "test"


def test_stale_temp_folders_are_removed_live_ones_kept(tmp_path):
    old = tmp_path / ".hand.abc123.tmp"  # an older release's mkdtemp name
    dead = tmp_path / f".hand.{2 ** 22 + 7}-x1.tmp"  # a pid above any pid_max: that run is gone
    live = tmp_path / f".hand.{os.getppid()}-x2.tmp"  # a running process's build
    other = tmp_path / ".other.abc.tmp"  # another corpus's
    for p in (old, dead, live, other):
        p.mkdir()
        (p / "part.arrow").write_bytes(b"x")
    past = time.time() - 60
    os.utime(old, (past, past))
    build(tmp_path / "hand")
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"hand", live.name, other.name}


def test_prepared_folder_follows_the_umask(tmp_path):
    mask = os.umask(0o022)
    try:
        build(tmp_path / "hand")
    finally:
        os.umask(mask)
    assert (tmp_path / "hand").stat().st_mode & 0o777 == 0o755


def _hash_files_by_hand(files: dict[str, Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, path in files.items():
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_code_version_hashes_the_installed_modules():
    from backchannel.corpora import dataset

    files = dataset.labelling_sources()
    assert list(files) == list(dataset.LABELLING_MODULES)
    for name, path in files.items():
        assert path.is_file() and path.name == name.rsplit(".", 1)[-1] + ".py"
        assert Path(sys.modules[name].__file__).resolve() == path.resolve()  # found via the module itself
    assert code_version()["source_sha256"] == _hash_files_by_hand(files)


def test_code_version_in_a_wheel_layout(tmp_path):
    """The package laid out as a wheel installs it (backchannel/corpora/..., no repository around it)."""
    repo = Path(__file__).resolve().parents[1]
    pkg = tmp_path / "site" / "backchannel"
    shutil.copytree(repo / "backchannel", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("corpora", "train", "plugin"):
        shutil.copytree(repo / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import json; from backchannel.corpora.dataset import code_version; import backchannel; "
            "print(json.dumps([backchannel.__file__, code_version()]))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    where, version = json.loads(out.stdout)
    assert where == str(pkg / "__init__.py")  # the copy was imported, not the checkout
    assert version["source_sha256"] == code_version()["source_sha256"] and version["git_commit"] is None
