"""Leave-one-corpus-out ablations (issue 14): what each lever does to the head's cross-corpus event F1.

    python benchmarks/transfer_ablations.py --source maptask --target mrda \
        --checkpoint runs/head_timing_maptask/best.ckpt [--checkpoint NAME=PATH ...] [--max-test-rows 24]

Every condition runs the one evaluation path (``evaluation.run.evaluate_corpus``, the head and the pause gate:
policies tuned on the SOURCE dev split, scored on the TARGET test split, the same code as
``backchannel evaluate --train-on SOURCE --test-on TARGET``) on transformed rows:

- ``as_trained``: the rows as prepared (one line per ``--checkpoint``: e.g. a head trained without its own text
  embedding, or on one listener role);
- ``no_text``: the words of both parties removed from the source dev and the target test rows at test time (how
  much the head leans on the text stream; a probe of dependence, not a model without text: a head on the
  backbone pretrained without text, ``head_timing_<corpus>_notext.yaml``, is an ``as_trained`` line);
- ``per_session``: rate calibration restarted in every test row instead of carried across them (one deployment);
- ``role=<r>`` (Map Task as the target): only the target test rows whose listener has role ``r`` (``f`` follower,
  ``g`` giver; Map Task's listener ids are the roles): the listener-role asymmetry.

It first prints the timing statistics of the source dev and target test rows (``timing_statistics``: speech and
overlap shares, floor pauses per minute and their length, backchannels per pause).

``--max-test-rows`` keeps a seeded subset of the target's test rows (MRDA test rows span whole meetings; the
full split is ``backchannel evaluate``'s job) and says so in the JSON. Prints one line per condition (F1 at
[-500,+500] of the head's ``f1``, ``calibrated`` and ``calibrated_stated`` variants, and of the pause gate, with
rates per listener-minute) and writes ``benchmarks/results/transfer_ablations.json`` (appended, one record per
run: command, machine, figures).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "transfer_ablations.json"
MAIN = "[-500,+500]"


def blank_text(rows: list[dict]) -> list[dict]:
    """The rows with no words from either party (every frame's text empty)."""
    out = []
    for r in rows:
        r = dict(r)
        for k in ("text_listener", "text_speaker"):
            if k in r:
                r[k] = np.array([""] * len(r[k]), dtype=object)
        out.append(r)
    return out


class Memo:
    """A predictor whose outputs are kept per (dialogue, listener, words present): the conditions that score
    the same rows share one prediction."""

    def __init__(self, predictor):
        self.predictor, self.meta, self.cache = predictor, getattr(predictor, "meta", None), {}

    def predict_rows(self, rows):
        key = [(str(r["dialogue"]), str(r["listener"]), any(bool(t) for t in r.get("text_speaker", ()))) for r in rows]
        todo = [r for r, k in zip(rows, key) if k not in self.cache]
        if todo:
            for r, out in zip(todo, self.predictor.predict_rows(todo)):
                self.cache[(str(r["dialogue"]), str(r["listener"]),
                            any(bool(t) for t in r.get("text_speaker", ())))] = out
        return [self.cache[k] for k in key]

    def describe(self):
        return self.predictor.describe()


def figures(section: dict) -> dict:
    """F1 at [-500,+500], precision, recall and rates of the head's variants and the pause gate."""
    out = {}
    for name, rep in section["systems"].items():
        if rep.get("status") != "ok":
            out[name] = {"status": rep.get("status")}
            continue
        d = rep["definitions"]["isolated"]["variants"]
        out[name] = {v: {"f1": x["events"][MAIN]["f1"], "precision": x["events"][MAIN]["precision"],
                         "recall": x["events"][MAIN]["recall"], "rate": x["cadence"]["model"]["rate_per_minute"],
                         "human_rate": x["cadence"]["human"]["rate_per_minute"],
                         **({"target_rate": x["target_rate"]} if "target_rate" in x else {})}
                     for v, x in d.items()}
    return out


def timing_statistics(rows: list[dict]) -> dict:
    """What differs between corpora in timing (from the frames' voice activity, 80 ms frames): the floor's and
    the listener's speech share, the overlap share, speaker pauses (>= 200 ms silences of the floor) per
    listener-minute and their median length, and isolated backchannels per speaker pause."""
    from backchannel.evaluation.data import gold_onsets
    from backchannel.frames import FRAME_S

    frames = pauses = bcs = 0
    floor = listener = both = 0.0
    lengths = []
    for r in rows:
        s, lst = np.asarray(r["va_speaker"]) > 0.5, np.asarray(r["va_listener"]) > 0.5
        frames += len(s)
        floor, listener, both = floor + s.sum(), listener + lst.sum(), both + (s & lst).sum()
        edges = np.flatnonzero(np.diff(np.concatenate([[1], s.astype(int), [1]])))
        starts, ends = edges[::2], edges[1::2]  # silent runs of the floor, [start, end) frames
        inner = ((ends - starts) * FRAME_S)[(starts > 0) & (ends < len(s))]  # not before its first or after its last word
        lengths += inner[inner >= 0.2].tolist()
        pauses += int((inner >= 0.2).sum())
        bcs += len(gold_onsets(r, "isolated"))
    minutes = frames * FRAME_S / 60
    return {"listener_minutes": minutes, "floor_speech_share": floor / frames, "listener_speech_share": listener / frames,
            "overlap_share": both / frames, "floor_pauses_per_minute": pauses / minutes,
            "median_floor_pause_s": float(np.median(lengths)) if lengths else float("nan"),
            "isolated_backchannels_per_minute": bcs / minutes, "isolated_backchannels_per_pause": bcs / max(pauses, 1)}


def main(argv=None) -> int:
    from backchannel.corpora.dataset import load_prepared, resolve_prepared
    from backchannel.train.predict import load_predictor

    from backchannel.evaluation.data import load_rows
    from backchannel.evaluation.run import EvalSettings, evaluate_corpus, split_rates

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]PATH",
                    help="head checkpoint(s) trained on the source; NAME labels its as_trained line")
    ap.add_argument("--max-test-rows", type=int, default=None, help="seeded subset of the target test rows")
    ap.add_argument("--conditions", default="as_trained,per_session,no_text,roles",
                    help="comma-separated subset of as_trained,per_session,no_text,roles (default all; none: only "
                         "the timing statistics)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    conditions = set(args.conditions.split(","))
    src_dsd, _ = load_prepared(resolve_prepared(args.source, args.data))
    tgt_dsd, _ = load_prepared(resolve_prepared(args.target, args.data))
    dev = load_rows(src_dsd["dev"], f"{args.source}: dev rows", False)
    n_test = len(tgt_dsd["test"])
    keep = list(range(n_test))
    if args.max_test_rows and args.max_test_rows < n_test:
        keep = sorted(np.random.default_rng(0).permutation(n_test)[: args.max_test_rows].tolist())
    test = load_rows(tgt_dsd["test"], f"{args.target}: test rows", False, keep)
    stated = split_rates(tgt_dsd["train"])
    timing = {"source_dev": timing_statistics(dev), "target_test": timing_statistics(test)}
    for where, t in timing.items():
        print(f"timing {where:11s} " + " ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    settings = EvalSettings(stated_rates=stated)
    runs = []

    def one(label, ckpt_name, predictor, dev_rows, test_rows, run_settings=settings):
        t0 = time.perf_counter()
        sec, _ = evaluate_corpus(f"{args.source}-to-{args.target}", dev_rows, test_rows, predictor=predictor,
                                 systems=["pause_gate", "head"], settings=run_settings, progress=False,
                                 definition="isolated")
        rec = {"condition": label, "checkpoint": ckpt_name, "test_rows": len(test_rows),
               "figures": figures(sec), "seconds": time.perf_counter() - t0}
        head, gate = rec["figures"]["head"], rec["figures"]["pause_gate"]["rule"]
        print(f"{label:14s} {ckpt_name:12s} rows {len(test_rows):3d} | gate F1 {gate['f1']:.3f} | "
              + " | ".join(f"{v} F1 {x['f1']:.3f} rate {x['rate']:.2f}" for v, x in head.items()
                           if v in ("f1", "calibrated", "calibrated_stated"))
              + f" | human {gate['human_rate']:.2f}/min ({rec['seconds']:.0f} s)", flush=True)
        runs.append(rec)

    for spec in args.checkpoint:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).parent.name
        predictor = Memo(load_predictor(path, threads=args.threads))
        if "as_trained" in conditions:
            one("as_trained", name, predictor, dev, test)
        if "per_session" in conditions:
            one("per_session", name, predictor, dev, test, replace(settings, calibration_carry=False))
        if "no_text" in conditions:
            one("no_text", name, predictor, blank_text(dev), blank_text(test))
        if "roles" in conditions and args.target == "maptask":
            for role in ("f", "g"):
                one(f"role={role}", name, predictor, dev, [r for r in test if str(r["listener"]) == role])
    record = {"command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
              "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
              "source": args.source, "target": args.target, "test_rows": len(keep), "test_rows_total": n_test,
              "test_row_subset": keep if len(keep) < n_test else None, "stated_rates": stated, "timing": timing,
              "runs": runs,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.is_file() else []
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(old + [record], indent=1) + "\n")
    tmp.replace(out)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
