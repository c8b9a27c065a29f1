"""Type baselines and user onset classification on hand-made rows with hand-computed figures."""
from __future__ import annotations

import numpy as np
import pytest

from backchannel.evaluation.run import type_section
from backchannel.evaluation.scoring import type_log_loss, type_report
from backchannel.evaluation.systems import TypeBaseline
from backchannel.evaluation.user_onsets import (
    decision_frame,
    heard,
    lexicon_scores,
    model_scores,
    onset_cases,
    onset_report,
    precision_at_recall,
    user_onsets,
)
from backchannel.frames import FRAME_S


def typed_row(text, bc_type):
    return {"n_frames": len(text), "text_speaker": np.array(text, dtype=object),
            "bc_type": np.array(bc_type, dtype=np.int8)}


# train: last floor word per frame go, go, left x4, right x4; typed frames: go->1, left->1,1,0, right->3,3,0
TRAIN = [typed_row(["go", "", "left", "", "", "", "right", "", "", ""], [-1, 1, -1, 1, 1, 0, -1, 3, 3, 0])]
# test: no word yet, then "right" (seen: -> 3), then "wow" (unseen: -> majority 1)
TEST = [typed_row(["", "right", "", "wow", "", ""], [0, 3, 3, 0, -1, 1])]


def test_majority_type_baseline():
    model = TypeBaseline("majority").fit(TRAIN)
    assert model.majority == 1 and np.allclose(model.prior, [2 / 7, 3 / 7, 0, 2 / 7, 0])
    rep = type_report(model.predict(TEST), TEST)
    assert rep["n_frames"] == 5 and rep["accuracy"] == pytest.approx(1 / 5)
    # only class 1 is predicted: P = 1/5, R = 1, F1 = 1/3; the other four classes score 0
    assert rep["macro_f1"] == pytest.approx((1 / 3) / 5)
    assert rep["majority_share"] == pytest.approx(2 / 5)  # test frames: 0, 3, 3, 0, 1
    assert rep["confusion"][0][1] == 2 and rep["confusion"][3][1] == 2 and np.sum(rep["confusion"]) == 5


def test_last_word_type_baseline():
    model = TypeBaseline("last_word").fit(TRAIN)
    assert model.table == {"go": 1, "left": 1, "right": 3}
    (pred,) = model.predict(TEST)
    assert list(pred.argmax(axis=1)) == [1, 3, 3, 1, 1, 1]  # no word and "wow" -> majority
    rep = type_report([pred], TEST)
    # true [0, 3, 3, 0, 1] vs predicted [1, 3, 3, 1, 1]: class 1 P 1/3 R 1 F1 1/2, class 3 F1 1
    assert rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["macro_f1"] == pytest.approx((0.5 + 1.0) / 5)
    assert rep["confusion"][0] == [0, 2, 0, 0, 0] and rep["confusion"][3] == [0, 0, 0, 2, 0]


def test_prior_type_baseline_is_seeded_and_follows_the_train_shares():
    long = [typed_row([""] * 20000, [0] * 20000)]
    model = TypeBaseline("prior", seed=3).fit(TRAIN)
    (a,), (b,) = model.predict(long), TypeBaseline("prior", seed=3).fit(TRAIN).predict(long)
    (c,) = TypeBaseline("prior", seed=4).fit(TRAIN).predict(long)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    shares = a.mean(axis=0)
    assert shares[2] == 0 and shares[4] == 0  # types absent from train are never drawn
    np.testing.assert_allclose(shares, [2 / 7, 3 / 7, 0, 2 / 7, 0], atol=0.015)
    # every true frame is type 0: accuracy = the drawn share of type 0
    assert type_report([a], long)["accuracy"] == pytest.approx(shares[0])


def test_type_baseline_errors():
    with pytest.raises(ValueError, match="unknown type baseline"):
        TypeBaseline("oracle")
    with pytest.raises(ValueError, match="no train frame has a backchannel type"):
        TypeBaseline("majority").fit([typed_row(["a"], [-1])])


# ----------------------------------------------------------------------------------------------
# User onset classification
# ----------------------------------------------------------------------------------------------
def onset_row(isolated=None):
    """50 frames (4 s). The floor party speaks 0-2.0 s and 3.2-4.0 s. Listener onsets: a backchannel at
    1.0 s ("mhm" ending in frame 14), a shift at 2.1 s ("okay so then", frames 27-29: 0.1 s after the floor
    party stopped), an interruption at 3.5 s ("wait", frame 45); left out: a shift at 2.6 s (0.6 s after
    the floor party stopped) and a backchannel at 3.8 s (its 400 ms frame lies past the end). As prepared,
    the listener's streams leave its backchannels out; ``heard`` puts them back."""
    n = 50
    va_s = np.zeros(n)
    va_s[:25], va_s[40:] = 1, 1
    text = np.array([""] * n, dtype=object)
    text[27], text[28], text[29], text[45] = "okay", "so", "then", "wait"
    row = {"n_frames": n, "va_speaker": va_s, "va_listener": np.zeros(n, dtype=np.float32), "text_listener": text,
           "bc_onsets": np.array([1.0, 3.8]), "bc_offsets": np.array([1.15, 3.9]), "bc_forms": ["mhm", "yeah"],
           "shift_onsets": np.array([2.1, 2.6]), "interruption_onsets": np.array([3.5])}
    if isolated is not None:
        row["bc_isolated"] = np.array(isolated)
    return row


def test_decision_frames_and_cases():
    assert decision_frame(1.0, 0.08) == 13 and decision_frame(1.0, 0.4) == 17  # frame 13 ends at 1.12 s
    assert decision_frame(0.0, 0.16) == 1  # ends exactly at 0.16 s
    assert decision_frame(2.1, 0.16) == 28  # 2.26 s: frame 28 ends at 2.32 s
    cases = onset_cases([onset_row()], "all")
    assert list(cases.onset) == [1.0, 2.1, 3.5] and list(cases.label) == [1, 0, 0]
    assert cases.frames.tolist() == [[13, 14, 15, 17], [27, 28, 29, 31], [44, 45, 46, 48]]
    ends = (cases.frames + 1) * FRAME_S
    assert np.all(ends >= cases.onset[:, None] + np.array([0.08, 0.16, 0.24, 0.4]) - 1e-9)
    assert np.all(ends - FRAME_S < cases.onset[:, None] + np.array([0.08, 0.16, 0.24, 0.4]))
    # isolated definition: the non-isolated candidate (1.0 s) is left out, take-turns stay
    iso = onset_cases([onset_row([False, True])], "isolated")
    assert list(iso.onset) == [2.1, 3.5] and list(iso.label) == [0, 0]


def test_heard_rows_put_the_backchannels_back():
    (row,) = heard([onset_row()])
    assert row["text_listener"][14] == "mhm" and row["text_listener"][48] == "yeah"  # at their offsets' frames
    assert row["text_listener"][27] == "okay" and onset_row()["text_listener"][14] == ""
    va = row["va_listener"]  # 1.00-1.15 s over frames 12 (0.96-1.04), 13, 14 (1.12-1.20); 3.80-3.90 s
    np.testing.assert_allclose(va[[12, 13, 14, 47, 48]], [0.5, 1.0, 0.375, 0.5, 0.75], rtol=1e-6)
    assert va.sum() == pytest.approx(0.5 + 1.0 + 0.375 + 0.5 + 0.75)
    assert row["va_speaker"] is onset_row()["va_speaker"] or np.array_equal(row["va_speaker"], onset_row()["va_speaker"])


def test_lexicon_rule_on_visible_words():
    rows = [onset_row()]
    cases = onset_cases(rows, "all")
    assert lexicon_scores(cases, rows)[0].tolist() == [0.5, 0.5, 0.5, 0.5]  # unheard: the "mhm" is left out
    s = lexicon_scores(cases, heard(rows))
    # bc: "mhm" visible from 160 ms; shift: "okay" at 80 ms (lexical), then "okay so" (not); interruption: "wait"
    assert s.tolist() == [[0.5, 1, 1, 1], [1, 0, 0, 0], [0.5, 0, 0, 0]]
    rep = onset_report(cases, s)
    # 80 ms: positive 0.5 vs negatives 1 and 0.5 -> AUC (0 + 0.5) / 2; recall 1 needs every case: precision 1/3
    assert rep["80ms"]["roc_auc"] == pytest.approx(0.25)
    assert rep["80ms"]["precision_at_recall_0.95"] == pytest.approx(1 / 3)
    assert rep["160ms"]["roc_auc"] == 1.0 and rep["160ms"]["precision_at_recall_0.95"] == 1.0
    assert rep["400ms"]["n_backchannel"] == 1 and rep["400ms"]["n_take_turn"] == 2
    assert user_onsets(rows, ["all"])["all"] == rep


def test_model_scores_read_at_the_decision_frames():
    rows = [onset_row()]
    p = np.zeros(50)
    p[[13, 14, 15, 17]] = [0.6, 0.7, 0.8, 0.9]  # backchannel
    p[[27, 28, 29, 31]] = [0.7, 0.5, 0.3, 0.1]  # shift
    p[[44, 45, 46, 48]] = [0.2, 0.2, 0.9, 0.1]  # interruption
    cases = onset_cases(rows, "all")
    assert model_scores(cases, [p]).tolist() == [[0.6, 0.7, 0.8, 0.9], [0.7, 0.5, 0.3, 0.1], [0.2, 0.2, 0.9, 0.1]]
    rep = user_onsets(rows, ["all"], [p])["all"]
    auc = {k: v["roc_auc"] for k, v in rep.items()}
    prec = {k: v["precision_at_recall_0.95"] for k, v in rep.items()}
    assert auc == pytest.approx({"80ms": 0.5, "160ms": 1.0, "240ms": 0.5, "400ms": 1.0})
    assert prec == pytest.approx({"80ms": 0.5, "160ms": 1.0, "240ms": 0.5, "400ms": 1.0})


def test_precision_at_recall_by_hand():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.85, 0.65, 0.1])
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    # recall >= 0.95 needs all 4 positives: threshold 0.6 keeps 6 cases, 4 of them positive
    assert precision_at_recall(y, s) == pytest.approx(4 / 6)
    # 3 of 4 positives (recall 0.75) at threshold 0.7 keeps 0.9, 0.85, 0.8, 0.7: precision 3/4
    assert precision_at_recall(y, s, recall=0.75) == pytest.approx(3 / 4)


def test_type_section_lists_baselines_and_systems():
    head = {"types": type_report([np.eye(5)[[0, 3, 3, 0, 0, 1]]], TEST)}  # a head right on every frame
    sec = type_section(TRAIN, TEST, {"head": head, "pause_gate": {"status": "ok"}})
    assert list(sec["systems"]) == ["type_majority", "type_prior", "type_last_word", "head"]
    assert sec["systems"]["head"]["accuracy"] == 1.0
    assert sec["systems"]["type_last_word"]["macro_f1"] == pytest.approx(0.3)
    baselines = {k: v["macro_f1"] for k, v in sec["systems"].items() if k.startswith("type_")}
    assert sec["best_baseline"] == max(baselines, key=baselines.get)
    assert type_section([typed_row(["a"], [-1])], TEST, {}) == {}  # no typed train frame: no type section
    # the train prior [2/7, 3/7, 0, 2/7, 0] on the test types 0, 3, 3, 0, 1: -(4 ln 2/7 + ln 3/7) / 5
    assert sec["prior_log_loss"] == pytest.approx(-(4 * np.log(2 / 7) + np.log(3 / 7)) / 5)


def test_type_log_loss_by_hand():
    # typed frames 0 and 1 (frame 2 untyped); frame 1's probabilities are normalised first (sum 2 -> 0.25, 0.75)
    row = typed_row(["", "", ""], [0, 1, -1])
    probs = np.array([[0.5, 0.5, 0, 0, 0], [0.5, 1.5, 0, 0, 0], [1, 0, 0, 0, 0]])
    assert type_log_loss([probs], [row]) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
    assert np.isnan(type_log_loss([probs], [typed_row(["", "", ""], [-1, -1, -1])]))
