"""Hugging Face dataset writer: schema, counts, determinism, atomic replace, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backchannel.corpora.dataset import FEATURES, SPLITS, LabelSettings, build_dataset, load_prepared, row_prosody
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
    with pytest.raises(FileExistsError, match="overwrite=True"):
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
