"""Rating statistics on a synthetic table with hand-computed means, CI, Welch t, alpha and bad-moment rates."""
from __future__ import annotations

import argparse
import json
import math

import pytest
from backchannel.corpora.errors import CorpusError

from backchannel.rating.analysis import (
    BIN_LABELS,
    alpha_interval,
    analyze,
    holm,
    mos,
    read_ratings_csv,
    welch,
    write_csv,
)
from backchannel.rating.commands import register

pytest.importorskip("krippendorff")

# 3 raters x 4 clips; c1, c2 real; c3, c4 random.  scores: (timing, naturalness)
SCORES = {"r1": {"c1": (5, 4), "c2": (4, 4), "c3": (2, 2), "c4": (1, 2)},
          "r2": {"c1": (4, 4), "c2": (4, 3), "c3": (2, 3), "c4": (2, 2)},
          "r3": {"c1": (5, 5), "c2": (3, 4), "c3": (1, 2), "c4": (2, 2)}}
CLIPS = {"c1": ("real", [0.1, -0.7]), "c2": ("real", [0.15]), "c3": ("random", [0.3, 1.5]), "c4": ("random", [-0.2])}
MARKS = {("r1", "c3"): [0, 1], ("r2", "c3"): [1], ("r3", "c1"): [1], ("r3", "c4"): [0]}


def table() -> list[dict]:
    rows = []
    for rater, clips in SCORES.items():
        for clip, (timing, nat) in clips.items():
            cond, rel = CLIPS[clip]
            rows.append({"rater": rater, "clip": clip, "condition": cond, "corpus": "maptask", "dialogue": "q7ec1",
                         "listener": "f", "start": 0.0, "end": 30.0, "timing": timing, "naturalness": nat,
                         "n_backchannels": len(rel), "bad": MARKS.get((rater, clip), []), "pause_rel": rel,
                         "updated": 0.0})
    return rows


def test_mos_and_ci_hand_computed():
    # real timing: 5 4 4 4 5 3 -> mean 25/6, var 17/30, half-width t(.975, 5) * sqrt(17/30 / 6)
    m = mos([5, 4, 4, 4, 5, 3])
    half = 2.5705818366147395 * math.sqrt(17 / 180)
    assert m["mean"] == pytest.approx(25 / 6) and m["n"] == 6
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((25 / 6 - half, 25 / 6 + half))
    m3 = mos([3, 4, 5])  # sd 1, t(.975, 2) = 4.302653
    assert m3["ci_high"] - 4 == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(mos([4])["ci_low"]) and mos([])["n"] == 0


def test_welch_hand_computed():
    # real 25/6 (var 17/30) vs random 10/6 (var 4/15), n = 6 each: se^2 = 25/180
    w = welch([5, 4, 4, 4, 5, 3], [2, 1, 2, 2, 1, 2])
    assert w["t"] == pytest.approx(2.5 / math.sqrt(25 / 180))
    assert w["df"] == pytest.approx(625 * 5 / 353)
    assert 0 < w["p"] < 0.001
    from scipy import stats

    ref = stats.ttest_ind([5, 4, 4, 4, 5, 3], [2, 1, 2, 2, 1, 2], equal_var=False)
    assert (w["t"], w["p"]) == pytest.approx((ref.statistic, ref.pvalue))
    assert math.isnan(welch([3, 3], [3, 3])["p"])
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_krippendorff_alpha_hand_computed():
    # two raters, 3 clips: (1,1) (2,2) (3,4); Do = 2/6, De = 82/30 -> alpha = 1 - 10/82 = 36/41.
    # a third rater's lone value on a fourth clip is not pairable and changes nothing.
    rows = [{"rater": r, "clip": c, "timing": v} for r, c, v in
            [("a", "c1", 1), ("a", "c2", 2), ("a", "c3", 3), ("b", "c1", 1), ("b", "c2", 2), ("b", "c3", 4),
             ("c", "c4", 5)]]
    assert alpha_interval(rows, "timing") == pytest.approx(36 / 41)
    # the synthetic table: Do = 8/12, De = 550/132 -> alpha = 1 - 88/550 = 0.84
    assert alpha_interval(table(), "timing") == pytest.approx(0.84)
    assert math.isnan(alpha_interval([{"rater": "a", "clip": "c1", "timing": 3}], "timing"))


def test_analyze_reproduces_the_synthetic_table(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(write_csv(table()))
    rows = read_ratings_csv(path)
    assert rows[0]["bad"] == [] and rows[2]["bad"] == [0, 1] and rows[0]["pause_rel"] == [0.1, -0.7]
    rep = analyze(rows)
    assert rep["conditions"] == ["real", "random"] and rep["n_raters"] == 3 and rep["n_rows"] == 12
    assert rep["mos"]["timing"]["real"]["mean"] == pytest.approx(25 / 6)
    assert rep["mos"]["timing"]["random"]["mean"] == pytest.approx(10 / 6)
    assert rep["mos"]["naturalness"]["real"]["mean"] == pytest.approx(4.0)
    assert rep["mos"]["naturalness"]["random"]["mean"] == pytest.approx(13 / 6)
    (t,) = rep["welch"]["timing"]
    assert (t["a"], t["b"]) == ("real", "random") and t["t"] == pytest.approx(6.708203932)
    assert rep["alpha"]["timing"] == pytest.approx(0.84)
    rates = {(b["condition"], b["bin"]): (b["n_backchannels"], b["rate"]) for b in rep["bad_moments"]}
    lt, neg, near, mid, _, late = BIN_LABELS
    assert rates["real", near] == (2, 0.0)  # c1 bc0 (0.1 s), c2 bc0 (0.15 s): never marked
    assert rates["real", lt] == (1, pytest.approx(1 / 3))  # c1 bc1 (-0.7 s): r3
    assert rates["random", mid] == (1, pytest.approx(1 / 3))  # c3 bc0 (0.3 s): r1
    assert rates["random", late] == (1, pytest.approx(2 / 3))  # c3 bc1 (1.5 s): r1, r2
    assert rates["random", neg] == (1, pytest.approx(1 / 3))  # c4 bc0 (-0.2 s): r3
    assert rates["real", late][0] == 0 and math.isnan(rates["real", late][1])


def test_partial_rows_and_bad_csv(tmp_path):
    rows = table()
    rows[0]["naturalness"] = None
    rows.append(dict(rows[1], rater="r4", timing=None, naturalness=None, bad=[0]))  # marks only: not "heard"
    path = tmp_path / "r.csv"
    path.write_text(write_csv(rows))
    rep = analyze(read_ratings_csv(path))
    assert rep["mos"]["timing"]["real"]["n"] == 6 and rep["mos"]["naturalness"]["real"]["n"] == 5
    path.write_text(path.read_text().replace("\nr2,c1,real,maptask,q7ec1,f,0.0,30.0,4,", "\nr2,c1,real,maptask,q7ec1,f,0.0,30.0,7,"))
    with pytest.raises(CorpusError, match=r"r.csv:6: score '7' is not an integer 1-5"):
        read_ratings_csv(path)


def test_analyze_command_writes_report_and_plot(tmp_path, capsys):
    (tmp_path / "ratings.csv").write_text(write_csv(table()))
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    args = ap.parse_args(["rating", "analyze", "--csv", str(tmp_path / "ratings.csv"), "--out", str(tmp_path / "rep")])
    assert args.func(args) == 0
    rep = json.loads((tmp_path / "rep" / "rating_report.json").read_text())
    assert rep["alpha"]["timing"] == pytest.approx(0.84)
    png = (tmp_path / "rep" / "rating_report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "| real | 4.17 [" in capsys.readouterr().out
