"""``backchannel evaluate``: tuning on dev only through the one decision core, fake predictors with
hand-computed figures, output files."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from backchannel.corpora.dataset import resolve_prepared
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.framing import label_frames

from backchannel import metrics
from backchannel.baselines import WT_REFRACTORY, random_onsets, rule_onsets, ward_tsukahara
from backchannel.evaluation.cli import register
from backchannel.evaluation.data import sample_rows
from backchannel.evaluation.io import export_textgrid, read_onsets_jsonl
from backchannel.evaluation.run import EvalSettings, evaluate, evaluate_corpus, random_system, rule_system
from backchannel.evaluation.systems import Head, WardTsukahara
from backchannel.evaluation.tuning import PolicyGrid, tune_backchannel, tune_shift_hold
from backchannel.frames import FRAME_S, frame_end, num_frames, time_to_frame
from backchannel.policy import Policy

LEADS = tuple(round(0.08 * k, 2) for k in range(7))  # 0 .. 0.48 s
FAST = EvalSettings(grid=PolicyGrid(smoothing=(1, 3), lead=LEADS), seeds=(0, 1, 2))


def variants(section, system, definition="all"):
    return section["systems"][system]["definitions"][definition]["variants"]


def toy_row(dialogue, bc=(), shifts=(), holds=(), *, listener="f", split="test", seconds=60.0, corpus="toy"):
    """A listener row: the speaker talks except 0.4 s before to 0.1 s after each backchannel (seconds)."""
    n = num_frames(seconds)
    t = (np.arange(n) + 0.5) * FRAME_S
    va_s, va_l = np.ones(n, np.float32), np.zeros(n, np.float32)
    for o in bc:
        va_s[(t >= o - 0.4) & (t < o + 0.1)] = 0
        va_l[(t >= o) & (t < o + 0.3)] = 1
    action, _ = label_frames({1: list(bc), 2: list(shifts)}, n)
    return {"corpus": corpus, "dialogue": dialogue, "listener": listener, "floor": "g", "split": split,
            "n_frames": n, "va_speaker": va_s, "va_listener": va_l,
            "prosody": np.zeros((0, 8), np.float32), "prosody_mask": np.zeros((0, 8), bool),
            "text_speaker": np.array([""] * n, dtype=object), "text_listener": np.array([""] * n, dtype=object),
            "action": action, "bc_type": np.where(action == 1, 0, -1).astype(np.int8),
            "bc_onsets": np.asarray(bc, float), "bc_offsets": np.asarray(bc, float) + 0.3,
            "bc_forms": ["mhm"] * len(bc), "shift_onsets": np.asarray(shifts, float),
            "interruption_onsets": np.zeros(0),
            "shift_pauses": np.array([(s - 0.4, s) for s in shifts], float).reshape(-1, 2),
            "hold_pauses": np.array([(h, h + 0.5) for h in holds], float).reshape(-1, 2)}


class Perfect:
    """Probability 1 on exactly the frames labelled BACKCHANNEL / TAKE_TURN (the 500 ms before an onset)."""

    def predict_rows(self, rows):
        out = []
        for r in rows:
            a = np.asarray(r["action"]).astype(int)
            p = np.zeros((len(a), 3), np.float32)
            p[np.arange(len(a)), a] = 1
            out.append({"action_probs": p, "type_probs": np.full((len(a), 5), 0.2, np.float32), "vap_p_shift": None})
        return out

    def describe(self):
        return "perfect"


class Constant:
    def __init__(self, probs):
        self.probs = np.asarray(probs, np.float32)

    def predict_rows(self, rows):
        return [{"action_probs": np.tile(self.probs, (r["n_frames"], 1)),
                 "type_probs": np.full((r["n_frames"], 5), 0.2, np.float32), "vap_p_shift": None} for r in rows]


class SilenceDriven:
    """Uses voice activity only (never labels): p(bc) = speaker silence over the last 3 frames."""

    def predict_rows(self, rows):
        out = []
        for r in rows:
            s = Policy(smoothing=3).smooth(1.0 - np.asarray(r["va_speaker"], float))
            p = np.column_stack([1 - s, 0.7 * s, 0.3 * s])
            out.append({"action_probs": p, "type_probs": np.full((len(s), 5), 0.2), "vap_p_shift": s})
        return out


def spaced(start, k, gap=7.3):
    return [round(start + gap * i, 2) for i in range(k)]


# ----------------------------------------------------------------------------------------------
def test_tuning_finds_what_an_exhaustive_search_finds():
    """The pruned search over policy settings picks the setting (and F1, rate) an exhaustive search over the
    same grid picks, scoring fewer settings."""
    rng = np.random.default_rng(1)
    grid = PolicyGrid(smoothing=(1, 3), lead=LEADS)
    for noise, bump in ((0.3, 0.8), (0.6, 0.25)):
        probs, trues = [], []
        for _ in range(3):
            x = rng.random(1200) * noise
            on = np.sort(rng.uniform(2, 90, 15))
            for o in on:
                k = int(o / FRAME_S)
                x[k - rng.integers(2, 8) : k] += bump * rng.random()
            x = np.clip(x, 0, 1)
            probs.append(np.column_stack([1 - x, x, 0 * x]))
            trues.append(on)
        minutes = 3 * 1200 * FRAME_S / 60
        human = 45 / minutes
        for factor in (None, 1.25):
            fast = tune_backchannel(probs, trues, grid=grid, rate_factor=factor)
            table = []
            for w in grid.smoothing:
                for on in grid.on:
                    for lead in grid.lead:
                        pol = Policy(on=on, smoothing=w, lead=lead, take_turn=None)
                        onsets = [pol.run(p).backchannel_onsets for p in probs]
                        f1 = metrics.event_scores(onsets, trues, [(-0.5, 0.5)])["[-500,+500]"].f1
                        rate = sum(len(o) for o in onsets) / minutes
                        table.append((f1, -abs(math.log(rate / human)) if rate else -math.inf, pol))
            pool = [r for r in table if factor is None or -r[1] <= math.log(factor) + 1e-9] or table
            f1, _, best = max(pool, key=lambda r: r[:2])
            assert (fast.policy.on, fast.policy.smoothing, fast.policy.lead) == (best.on, best.smoothing, best.lead)
            assert fast.f1 == f1 and fast.in_band
            assert len(fast.table) < len(table)


def test_perfect_predictor_hits_every_onset_when_the_lead_allows():
    dev = [toy_row("d1", spaced(3.03, 7), split="dev"), toy_row("d2", spaced(5.51, 6), split="dev")]
    test = [toy_row("t1", spaced(4.27, 7)), toy_row("t2", spaced(2.95, 8))]
    sec, _ = evaluate_corpus("toy", dev, test, predictor=Perfect(), systems=["head"], settings=FAST, progress=False)
    for v in variants(sec, "head").values():
        assert v["events"]["[-500,+500]"] == {"tp": 15, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
        assert v["cadence"]["rate_ratio"] == pytest.approx(1.0)
    # the trigger fires 420-500 ms before each onset: [-200,+200] needs a lead of 0.30-0.62 s (whole frames:
    # 0.32 or 0.40 s in a grid that stops at 0.40)
    tight = EvalSettings(grid=PolicyGrid(smoothing=(1,), lead=LEADS[:6]), tune_margin=(-0.2, 0.2), seeds=(0,))
    sec, _ = evaluate_corpus("toy", dev, test, predictor=Perfect(), systems=["head"], settings=tight, progress=False)
    v = variants(sec, "head")["f1"]
    assert v["policy"]["lead"] in (0.32, 0.4)
    assert v["events"]["[-200,+200]"]["f1"] == 1.0 and v["events"]["[-500,+500]"]["f1"] == 1.0
    no_lead = EvalSettings(grid=PolicyGrid(smoothing=(1,), lead=(0.0,)), tune_margin=(-0.2, 0.2), seeds=(0,))
    sec, _ = evaluate_corpus("toy", dev, test, predictor=Perfect(), systems=["head"], settings=no_lead, progress=False)
    assert variants(sec, "head")["f1"]["events"]["[-200,+200]"]["f1"] == 0.0


def test_constant_predictor_fires_once_per_row():
    # every row has a true onset at 0.5 s; a constant 0.6 crosses any threshold <= 0.6 once, at the end
    # of frame 0 (0.08 s + lead <= 0.58 s): one hit per row, nothing else
    dev = [toy_row(f"d{i}", [0.5] + spaced(20.0, 2, 17.0), shifts=[12.0], split="dev") for i in range(2)]
    test = [toy_row(f"t{i}", [0.5] + spaced(20.0, 3, 11.0), shifts=[12.0], seconds=90.0) for i in range(3)]
    sec, _ = evaluate_corpus("toy", dev, test, predictor=Constant([0.2, 0.6, 0.2]), systems=["head"],
                             settings=FAST, progress=False)
    head = sec["systems"]["head"]
    n_true, rows, minutes = 12, 3, 3 * 90.0 / 60
    for v in head["definitions"]["all"]["variants"].values():
        assert v["policy"]["on"] <= 0.6
        ev = v["events"]["[-500,+500]"]
        assert (ev["tp"], ev["fp"], ev["fn"]) == (3, 0, 9)
        assert ev["f1"] == pytest.approx(2 * 3 / (3 + n_true))
        assert v["cadence"]["model"]["rate_per_minute"] == pytest.approx(rows / minutes)
        assert v["cadence"]["human"]["rate_per_minute"] == pytest.approx(n_true / minutes)
    frame = head["frame"]
    k, n = sum(int((r["action"] == 1).sum()) for r in test), sum(r["n_frames"] for r in test)
    assert frame["balanced_accuracy"] == pytest.approx(1 / 3)
    assert frame["f1"] == pytest.approx([0.0, 2 * k / (k + n), 0.0])


def test_rate_matched_says_when_no_dev_setting_lies_in_the_band():
    """A constant predictor fires once per row whatever its settings: dev rate 2 per 3 min vs a human 6 per 3 min
    (ratio 1/3, outside 1/1.25..1.25), so ``rate_matched`` takes the nearest rate and every table says so."""
    from backchannel.evaluation.report import cadence_table, event_table, policy_table, summary_lines

    dev = [toy_row(f"d{i}", [0.5] + spaced(20.0, 2, 17.0), shifts=[12.0], split="dev") for i in range(2)]
    test = [toy_row(f"t{i}", [0.5] + spaced(20.0, 3, 11.0), shifts=[12.0], seconds=90.0) for i in range(3)]
    sec, _ = evaluate_corpus("toy", dev, test, predictor=Constant([0.2, 0.6, 0.2]), systems=["head"],
                             settings=FAST, progress=False)
    v = variants(sec, "head")
    assert v["rate_matched"]["dev"]["in_band"] is False  # the JSON says it
    assert v["rate_matched"]["dev"]["rate"] == pytest.approx(2 / 2.0)  # 2 onsets in 2 minutes
    assert v["rate_matched"]["dev"]["human_rate"] == pytest.approx(6 / 2.0)
    assert v["f1"]["dev"]["in_band"] is True  # the F1 variant has no band
    tables = {"events": event_table(sec, ["[-500,+500]"], "all"), "policy": policy_table(sec, "all"),
              "cadence": cadence_table(sec, "all")}
    for name, lines in tables.items():
        row = [line for line in lines if line.startswith("| head | rate_matched")]
        assert len(row) == 1 and "NOT matched" in row[0], (name, lines)
        assert any(line.startswith("| head | f1 |") for line in lines), (name, lines)
    assert "no dev setting in the band" in "\n".join(tables["events"])
    summary = summary_lines({"corpora": {"toy": sec}})
    assert "head/rate_matched (NOT matched) F1" in summary[0] and "head/f1 F1" in summary[0], summary


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # test labels all SILENT
def test_tuning_uses_dev_labels_only():
    dev = [toy_row("d1", spaced(3.0, 7), shifts=[1.5, 40.0], holds=[10.0, 30.0], split="dev")]
    test = [toy_row("t1", spaced(4.0, 7), shifts=[2.2, 41.0], holds=[11.0, 33.0])]
    changed = [dict(test[0], bc_onsets=test[0]["bc_onsets"][::2] + 0.3, shift_pauses=test[0]["shift_pauses"][:1],
                    action=np.zeros_like(test[0]["action"]))]
    a, _ = evaluate_corpus("toy", dev, test, predictor=SilenceDriven(), systems=["head"], settings=FAST,
                           progress=False)
    b, _ = evaluate_corpus("toy", dev, changed, predictor=SilenceDriven(), systems=["head"], settings=FAST,
                           progress=False)
    ha, hb = a["systems"]["head"], b["systems"]["head"]
    va, vb = ha["definitions"]["all"]["variants"], hb["definitions"]["all"]["variants"]
    for variant in ("f1", "rate_matched"):
        assert va[variant]["policy"] == vb[variant]["policy"]  # take-turn level included
        assert va[variant]["dev"] == vb[variant]["dev"]
    assert va["f1"]["events"] != vb["f1"]["events"]
    assert va["f1"]["take_turn"] != vb["f1"]["take_turn"]
    for key in ("take_turn_level", "shipped_take_turn_level", "dev_balanced_accuracy"):
        assert ha["shift_hold"][key] == hb["shift_hold"][key]


def test_shift_hold_level_maximises_balanced_accuracy():
    """Pauses whose VAP window (50-150 ms in) holds p(TAKE_TURN) 0.1, 0.2, 0.3, 0.35 (holds) and 0.4, 0.6, 0.7
    (shifts): taking the turn at >= 0.4 gets every pause right."""
    n = 200
    p = np.zeros(n)
    holds, shifts = [], []
    for k, (score, label) in enumerate(zip([0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7], [0, 0, 0, 1, 0, 1, 1])):
        start = 1.0 + 2.0 * k  # window frame: the one ending in [start + 0.05, start + 0.15]
        p[metrics.pause_window_frames(start)] = score
        (shifts if label else holds).append((start, start + 0.5))
    row = {"hold_pauses": np.array(holds), "shift_pauses": np.array(shifts)}
    probs = np.column_stack([1 - p, 0 * p, p])
    grid = PolicyGrid(take_turn=(0.2, 0.3, 0.4, 0.5))
    policy, ba = tune_shift_hold(Policy(on=1.0), [probs], [row], grid=grid)
    assert policy.take_turn == 0.4 and ba == 1.0


def test_random_baseline_has_the_true_count_and_averages_seeds():
    rows = [toy_row("t1", spaced(3.0, 6)), toy_row("t2", spaced(2.0, 4))]
    rep, ext = random_system(rows, FAST)
    assert [len(o) for o in ext["onsets"]["true_count"]] == [6, 4]
    per_seed = []
    for seed in FAST.seeds:
        rng = np.random.default_rng(seed)
        # the random times, said at the end of the frame holding each (through the policy)
        run = [frame_end(np.array([time_to_frame(t) for t in random_onsets(len(r["bc_onsets"]),
                                                                             r["n_frames"] * FRAME_S, rng, 0.8)]))
               for r in rows]
        per_seed.append(metrics.event_scores(run, [r["bc_onsets"] for r in rows])["[-500,+500]"].f1)
    v = rep["definitions"]["all"]["variants"]["true_count"]
    ev = v["events"]["[-500,+500]"]
    assert ev["f1"] == pytest.approx(np.mean(per_seed)) and ev["f1_std"] == pytest.approx(np.std(per_seed))
    assert v["cadence"]["rate_ratio"] == pytest.approx(1.0)


def test_ward_tsukahara_only_on_rows_with_audio():
    rows = [toy_row("t1", spaced(3.0, 6)), toy_row("t2", spaced(2.0, 4))]
    rep, _ = rule_system(WardTsukahara(), rows, FAST)
    assert rep == {"status": "n/a: no audio"}
    n = rows[1]["n_frames"]
    prosody, mask = np.zeros((n, 8), np.float32), np.zeros((n, 8), bool)
    mask[:, 4:6] = True
    prosody[np.arange(n) % 50 < 3, 5] = 1  # the speaker's low-pitch flag, 3 frames every 4 s
    rows[1] = dict(rows[1], prosody=prosody, prosody_mask=mask)
    rep, ext = rule_system(WardTsukahara(), rows, FAST)
    assert len(ext["onsets"]["rule"][0]) == 0 and ext["rows"] == [1]
    expect = rule_onsets(ward_tsukahara(prosody, mask, rows[1]["va_speaker"], rows[1]["va_listener"],
                                        low_pitch_col=5), WT_REFRACTORY)
    assert len(expect) > 0 and np.array_equal(ext["onsets"]["rule"][1], expect)
    assert rep["status"] == "ok" and (rep["rows"], rep["rows_total"]) == (1, 2)
    ev = rep["definitions"]["all"]["variants"]["rule"]["events"]["[-500,+500]"]
    assert ev["tp"] + ev["fn"] == 4


def test_bad_inputs_get_clear_errors(tmp_path):
    rows = [toy_row("t1", spaced(3.0, 2))]

    class Short:
        def predict_rows(self, rows):
            return [{"action_probs": np.zeros((5, 3)), "type_probs": np.zeros((5, 5)), "vap_p_shift": None}]

    with pytest.raises(ValueError, match="toy/t1/f: predictor gave action_probs"):
        Head(Short()).predict(rows)
    with pytest.raises(ValueError, match="checkpoint runs/x.ckpt: toy/t1/f: predictor gave"):
        Head(Short(), source="runs/x.ckpt").predict(rows)

    class NaN:
        def predict_rows(self, rows):
            n = rows[0]["n_frames"]
            a = np.full((n, 3), 1 / 3)
            a[n // 2, 1] = np.nan
            return [{"action_probs": a, "type_probs": np.full((n, 5), 0.2), "vap_p_shift": None}]

    with pytest.raises(ValueError, match=r"checkpoint runs/x\.ckpt: toy/t1/f: action_probs must be finite"):
        Head(NaN(), source="runs/x.ckpt").predict(rows)
    with pytest.raises(ValueError, match="unknown systems"):
        evaluate_corpus("toy", rows, rows, systems=["oracle"], progress=False)
    with pytest.raises(CorpusError, match="not a prepared dataset"):
        resolve_prepared("nope", data_root=tmp_path)
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"corpus": "a", "dialogue": "b", "listener": "c", "onsets": []}\n{"corpus": 1}\n')
    with pytest.raises(CorpusError, match=r"x.jsonl.*2.*missing"):
        read_onsets_jsonl(bad)


def test_sample_rows_bounds_frames():
    assert sample_rows([10, 20, 30], 100) == [0, 1, 2]
    keep = sample_rows([10, 20, 30, 40], 55, seed=3)
    assert sum([10, 20, 30, 40][i] for i in keep) <= 55 and keep == sorted(keep) and keep


def test_textgrid_tiers_read_back(tmp_path):
    from praatio import textgrid

    row = toy_row("t1", [2.03, 6.51], seconds=10.0)
    row["text_speaker"][10] = "go south"
    row["bc_forms"] = ["mhm", "yeah"]
    path = export_textgrid(row, [1.92, 6.4, 12.0], tmp_path / "t1.TextGrid")
    tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    assert tg.tierNames == ("speaker speech", "listener speech", "true backchannels", "predicted backchannels")
    true = [(e.start, e.end, e.label) for e in tg.getTier("true backchannels").entries]
    assert [x[2] for x in true] == ["mhm", "yeah"]
    assert [x[:2] for x in true] == [pytest.approx((2.03, 2.33)), pytest.approx((6.51, 6.81))]
    assert [(p.time, p.label) for p in tg.getTier("predicted backchannels").entries] == [(1.92, "bc"), (6.4, "bc")]
    speaker = tg.getTier("speaker speech").entries
    # silent frames: centres in [onset - 0.4, onset + 0.1) s, i.e. frames 20-26 and 76-82
    assert [(round(e.start, 6), round(e.end, 6)) for e in speaker] == [(0.0, 1.6), (2.16, 6.08), (6.64, 10.0)]
    assert speaker[0].label == "go south" and speaker[1].label == "speech"
    listener = tg.getTier("listener speech").entries
    assert [(round(e.start, 2), round(e.end, 2)) for e in listener] == [(2.0, 2.32), (6.48, 6.8)]


# ----------------------------------------------------------------------------------------------
# End to end on the demo corpus
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    from backchannel.corpora.dataset import build_dataset
    from backchannel.corpora.demo import make_demo_corpus
    from backchannel.corpora.recipes import load_corpus

    root = tmp_path_factory.mktemp("demo")
    make_demo_corpus(root)
    # labels of every candidate: the scorer's gold here is bc_onsets, all candidates (the isolated
    # definition's gold is the bc_isolated subset)
    build_dataset(load_corpus("demo", root), root / "ds", corpus="demo", progress=False,
                  label_settings={"bc_definition": "all"})
    return root / "ds"


@pytest.fixture(scope="module")
def demo_report(demo_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    settings = EvalSettings(grid=PolicyGrid(smoothing=(1, 3)), seeds=(0, 1))
    return evaluate([demo_dataset], Perfect(), out, settings=settings, textgrid="q7ec1:f", progress=False), out


def test_demo_report_has_every_system_and_file(demo_report):
    report, out = demo_report
    sec = report["corpora"]["demo"]
    status = {k: v["status"] for k, v in sec["systems"].items()}
    assert status == {"random": "ok", "pause_gate": "ok", "ward_tsukahara": "n/a: no audio", "logistic": "ok",
                      "gbt": "ok", "head": "ok"}
    # the demo dataset is labelled with every candidate (bc_definition all): that definition is scored first (the
    # headline), and Perfect is perfect there
    assert sec["definitions"] == ["all", "isolated"]
    d = "all"
    assert sec["headline"] == "head" and sec["onsets_file"]["variant"] == "rate_matched"
    assert variants(sec, "head", d)["f1"]["events"]["[-500,+500]"]["f1"] == 1.0
    gate = variants(sec, "pause_gate", d)["rule"]["events"]["[-500,+500]"]["f1"]
    assert sec["ratios"][d]["head/f1_over_pause_gate"]["[-500,+500]"] == pytest.approx(1.0 / gate)
    assert "vap_zero_shot" not in sec["systems"]["logistic"]["shift_hold"]  # no backbone: no VAP figure
    assert 0 <= sec["systems"]["logistic"]["shift_hold"]["balanced_accuracy"] <= 1
    for name in ("report.json", "report.md", "demo-test-onsets.jsonl", "demo-q7ec1-f.TextGrid",
                 "demo-onset-offsets.png", "demo-pr-backchannel.png", "demo-timeline.png",
                 "demo-types.png", "onsets/demo-random.jsonl", "onsets/demo-pause_gate.jsonl",
                 "onsets/demo-logistic.jsonl", "onsets/demo-gbt.jsonl"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert name in report["files"]
    assert json.loads((out / "report.json").read_text())["corpora"]["demo"]["test"]["rows"] == 4
    md = (out / "report.md").read_text()
    for heading in ("### Backchannel events", "### Frame level", "### Turn-taking", "### Cadence",
                    "### Ratio of F1 to the pause gate's", "### Backchannel type", "### User onset classification",
                    "different data"):
        assert heading in md
    types = sec["types"]["systems"]
    assert set(types) == {"type_majority", "type_prior", "type_last_word", "head"}
    assert sec["types"]["best_baseline"] in types
    cm = np.asarray(types["type_majority"]["confusion"])  # one type predicted everywhere
    assert np.count_nonzero(cm.sum(axis=0)) == 1 and cm.sum() == types["type_majority"]["n_frames"] > 0
    assert "| type_last_word |" in md and "| lexicon | all |" in md
    lexicon = sec["user_onsets"]["lexicon"]["all"]
    assert set(lexicon) == {"80ms", "160ms", "240ms", "400ms"} and "head" not in sec["user_onsets"]
    assert "| system | variant | P [-500,+500] | R [-500,+500] | F1 [-200,+200]" in md
    assert "| ward_tsukahara | n/a: no audio |" in md
    assert report["reference"]["ruede2017_switchboard_f1"]["[-500,+500]"] == 0.339


def test_onsets_file_is_json_lines_that_rescore_to_the_report(demo_report, demo_dataset):
    report, out = demo_report
    from backchannel.corpora.dataset import load_prepared

    lines = (out / "demo-test-onsets.jsonl").read_text().splitlines()
    items = [json.loads(x) for x in lines]
    assert all(len(i["forms"]) == len(i["onsets"]) for i in items)
    items = [{k: i[k] for k in ("corpus", "dialogue", "listener", "onsets")} for i in items]
    dsd, _ = load_prepared(demo_dataset)
    test = dsd["test"]
    assert [(i["dialogue"], i["listener"]) for i in items] == list(zip(test["dialogue"], test["listener"]))
    assert all(set(i) == {"corpus", "dialogue", "listener", "onsets"} and i["corpus"] == "demo" for i in items)
    assert all(i["onsets"] == sorted(i["onsets"]) and all(isinstance(x, float) for x in i["onsets"]) for i in items)
    sec = report["corpora"]["demo"]
    assert sec["onsets_file"]["definition"] == "all"  # the file holds the onsets tuned for the dataset's labels
    scores = metrics.event_scores([i["onsets"] for i in items], test["bc_onsets"])
    reported = variants(sec, "head", "all")["rate_matched"]["events"]
    for label, s in scores.items():
        assert s.f1 == pytest.approx(reported[label]["f1"])
    assert [{k: i[k] for k in ("corpus", "dialogue", "listener", "onsets")}
            for i in read_onsets_jsonl(out / "demo-test-onsets.jsonl")] == items


def test_cli_register_and_run(demo_dataset, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", str(demo_dataset), "--out", str(tmp_path / "ev"),
                              "--systems", "random,pause_gate", "--seeds", "2"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["systems"] == ["random", "pause_gate"] and report["settings"]["seeds"] == [0, 1]
    assert report["corpora"]["demo"]["onsets_file"]["system"] == "pause_gate"
    sec = report["corpora"]["demo"]
    assert not math.isnan(variants(sec, "pause_gate", sec["definitions"][0])["rule"]["events"]["[-500,+500]"]["f1"])
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--systems", "random,oracle"])
    args = parser.parse_args(["evaluate", str(tmp_path / "missing"), "--out", str(tmp_path / "ev2")])
    assert args.func(args) == 2
    assert "not a prepared dataset" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Leave-one-corpus-out
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def second_demo(tmp_path_factory):
    from backchannel.corpora.dataset import build_dataset
    from backchannel.corpora.demo import make_demo_corpus
    from backchannel.corpora.recipes import load_corpus

    root = tmp_path_factory.mktemp("demo2")
    make_demo_corpus(root, seed=1)
    build_dataset(load_corpus("demo", root), root / "ds", corpus="other", progress=False,
                  label_settings={"bc_definition": "all"})
    return root / "ds"


class Trained(Perfect):
    """Perfect, with the training record a checkpoint carries."""

    def __init__(self, head, backbone):
        self.meta = {"manifests": {c: {} for c in head}, "backbone_manifests": {c: {} for c in backbone}}


def test_transfer_tunes_on_the_source_and_scores_the_target(demo_dataset, second_demo, tmp_path):
    from backchannel.corpora.dataset import load_prepared

    settings = EvalSettings(grid=PolicyGrid(smoothing=(1,)), seeds=(0,))
    report = evaluate([second_demo], Trained(["demo"], ["demo", "other"]), tmp_path, settings=settings,
                      systems=["pause_gate", "logistic", "head"], progress=False, train_on=demo_dataset, plots=False)
    assert list(report["corpora"]) == ["demo-to-other"] and report["train_on"]["corpus"] == "demo"
    sec = report["corpora"]["demo-to-other"]
    src, tgt = load_prepared(demo_dataset)[0], load_prepared(second_demo)[0]
    assert sec["dev"]["rows"] == len(src["dev"]) and sec["test"]["rows"] == len(tgt["test"])
    assert sec["dev"]["backchannels"]["all"]["count"] == sum(len(x) for x in src["dev"]["bc_onsets"])
    assert sec["test"]["backchannels"]["all"]["count"] == sum(len(x) for x in tgt["test"]["bc_onsets"])
    tr = sec["transfer"]
    assert tr["head_corpora"] == ["demo"] and "other's train split" in tr["note"]
    # the stated rate: the target's TRAIN split, per listener-minute
    train = tgt["train"]
    rate = sum(len(x) for x in train["bc_onsets"]) / (sum(train["n_frames"]) * FRAME_S / 60)
    assert tr["target_train_rates"]["all"] == pytest.approx(rate)
    head = variants(sec, "head", "all")
    assert head["calibrated_stated"]["target_rate"] == pytest.approx(rate)
    dev_rate = sum(len(x) for x in src["dev"]["bc_onsets"]) / (sum(src["dev"]["n_frames"]) * FRAME_S / 60)
    assert head["calibrated"]["target_rate"] == pytest.approx(dev_rate)
    # the f1 policy at the dev rate; its warm-up level is rule 9's on dev: a perfect predictor crosses every level
    # exactly as often as the human backchannels, none more often than the rate, so the lowest level
    assert head["calibrated"]["policy"] == head["f1"]["policy"] | {"target_rate": pytest.approx(dev_rate),
                                                                   "on": 0.02, "off": 0.02}
    assert head["f1"]["events"]["[-500,+500]"]["f1"] == 1.0  # Perfect on the target too
    assert (tmp_path / "onsets" / "demo-to-other-head.jsonl").is_file()
    assert "Leave-one-corpus-out" in (tmp_path / "report.md").read_text()


def test_transfer_refuses_a_head_trained_on_the_target(demo_dataset, second_demo, tmp_path):
    with pytest.raises(ValueError, match="trained on other labels"):
        evaluate([second_demo], Trained(["demo", "other"], []), tmp_path, systems=["head"], progress=False,
                 train_on=demo_dataset, plots=False)
    with pytest.raises(ValueError, match="the same corpus"):
        evaluate([demo_dataset], None, tmp_path, systems=["pause_gate"], progress=False, train_on=demo_dataset)


def test_transfer_cli_flags(demo_dataset, second_demo, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--test-on", str(second_demo), "--out", str(tmp_path / "a")])
    assert args.func(args) == 2 and "--test-on needs --train-on" in capsys.readouterr().err
    args = parser.parse_args(["evaluate", "--train-on", str(demo_dataset), "--test-on", str(second_demo),
                              "--systems", "pause_gate", "--seeds", "1", "--target-rate", "-1",
                              "--out", str(tmp_path / "b")])
    assert args.func(args) == 2 and "--target-rate must be > 0" in capsys.readouterr().err
    args = parser.parse_args(["evaluate", "--train-on", str(demo_dataset), "--test-on", str(second_demo),
                              "--systems", "pause_gate", "--seeds", "1", "--out", str(tmp_path / "c")])
    assert args.func(args) == 0
    assert list(json.loads((tmp_path / "c" / "report.json").read_text())["corpora"]) == ["demo-to-other"]
