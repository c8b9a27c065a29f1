"""How far can transcript-only cues go? Ceilings and pause-level probes for issue 3's quality targets.

The corpora on this machine carry words and times but no audio, so no prosody. This script measures,
on the official splits of a prepared corpus (``data/<corpus>``), three figures that bound what any
per-frame model fed with voice activity and words can reach:

1. ``oracle_pause``: an oracle that fires ``delay`` s after the end of every stretch of the speaker's
   speech that a true backchannel onset lies within 500 ms of (it knows which pauses to pick; it cannot
   place onsets inside the speaker's speech). Its event F1 at [-500,+500] is an upper bound for any
   system that speaks only at the speaker's pauses.
2. ``pause_probe``: a logistic regression (scikit-learn) on one example per end of the speaker's speech:
   the speaker's last three words and their bigram, the stretch's length, the gap before it, the
   listener's recent words and time since the listener last spoke. Trained on train, threshold tuned on
   dev (event F1), scored on test: a strong lexical+timing pause classifier, not a per-frame model.
3. ``shift_hold_probe``: the same kind of classifier on the mutual silences of the evaluation's
   shift/hold protocol (features at 150 ms into the pause): balanced accuracy at 0.5 and ROC AUC.

    python benchmarks/eval_ceiling.py maptask mrda [--data data] [--out benchmarks/results/eval_ceiling.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from backchannel import metrics as M
from backchannel.evaluate import load_rows
from datasets import load_from_disk
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

MARGIN = (-0.5, 0.5)
DELAY = 0.3  # s after the end of the speaker's speech where a pause-based system speaks
LOOKBACK = 40  # frames searched back for the speaker's last words (3.2 s)


def last_words(text, t: int, k: int = 3) -> list[str]:
    """The last ``k`` words visible at frame ``t`` (each word sits at its end frame)."""
    words: list[str] = []
    i = t
    while i >= 0 and len(words) < k and i > t - LOOKBACK:
        if text[i]:
            words = text[i].split() + words
        i -= 1
    return words[-k:]


def lexical(f: dict, words: list[str]) -> dict:
    for j, w in enumerate(reversed(words)):
        f[f"w{j}={w}"] = 1
    if len(words) >= 2:
        f[f"bigram={words[-2]}_{words[-1]}"] = 1
    return f


def pause_examples(row: dict, corpus: str) -> tuple[list[dict], np.ndarray]:
    """One feature dict per end of the speaker's speech (seconds in the second array)."""
    runs = M.speech_runs(row["va_speaker"])
    lis = M.speech_runs(row["va_listener"])
    lis_ends = np.asarray([e for _, e in lis])
    feats, ends, prev_end = [], [], -10.0
    for start, end in runs:
        t = min(int(end / M.FRAME_S), len(row["va_speaker"]) - 1)
        before = lis_ends[lis_ends <= end]
        recent = [w for x in row["text_listener"][max(0, t - 60):t + 1] if x for w in x.split()]
        f = {"duration": end - start, "gap_before": min(start - prev_end, 10.0),
             "since_listener": min(end - before[-1], 60.0) if len(before) else 60.0,
             "listener_words_5s": len(recent), "listener_role": row["listener"] if corpus == "maptask" else "-"}
        if recent:
            f[f"listener_last={recent[-1]}"] = 1
        feats.append(lexical(f, last_words(row["text_speaker"], t)))
        ends.append(end)
        prev_end = end
    return feats, np.asarray(ends)


def oracle_pause(rows: list[dict], delay: float = DELAY) -> dict:
    preds = []
    for r in rows:
        cand = np.asarray([e for _, e in M.speech_runs(r["va_speaker"])]) + delay
        preds.append(np.asarray([c for c in cand if np.any(np.abs(r["bc_onsets"] - c) <= MARGIN[1])]))
    s = M.event_scores(preds, [r["bc_onsets"] for r in rows], margins=[MARGIN])["[-500,+500]"]
    return {"delay_s": delay, "precision": s.precision, "recall": s.recall, "f1": s.f1}


def _onsets(rows, idx, p, threshold: float, refractory: float = 0.8) -> list[np.ndarray]:
    per_row = defaultdict(list)
    for (ri, end), pp in zip(idx, p):
        if pp >= threshold:
            per_row[ri].append(end + DELAY)
    out = []
    for ri in range(len(rows)):
        kept: list[float] = []
        for x in sorted(per_row[ri]):
            if not kept or x - kept[-1] >= refractory:
                kept.append(x)
        out.append(np.asarray(kept))
    return out


def pause_probe(splits: dict, corpus: str) -> dict:
    data = {}
    for name, rows in splits.items():
        X, y, idx = [], [], []
        for ri, r in enumerate(rows):
            f, ends = pause_examples(r, corpus)
            X += f
            y += [int(np.any(np.abs(r["bc_onsets"] - (e + DELAY)) <= MARGIN[1])) for e in ends]
            idx += [(ri, e) for e in ends]
        data[name] = (X, np.asarray(y), idx)
    vec = DictVectorizer()
    clf = LogisticRegression(C=0.3, max_iter=3000, class_weight="balanced")
    clf.fit(vec.fit_transform(data["train"][0]), data["train"][1])
    out = {}

    def score(name, threshold):
        X, y, idx = data[name]
        p = clf.predict_proba(vec.transform(X))[:, 1]
        pred = _onsets(splits[name], idx, p, threshold)
        s = M.event_scores(pred, [r["bc_onsets"] for r in splits[name]], margins=[MARGIN])["[-500,+500]"]
        minutes = sum(r["n_frames"] for r in splits[name]) * M.FRAME_S / 60
        return {"threshold": float(threshold), "precision": s.precision, "recall": s.recall, "f1": s.f1,
                "pause_ap": float(average_precision_score(y, p)), "examples": len(y),
                "positive_share": float(np.mean(y)), "rate_per_min": sum(map(len, pred)) / minutes,
                "human_rate_per_min": sum(len(r["bc_onsets"]) for r in splits[name]) / minutes}

    best = max((score("dev", th) for th in np.linspace(0.05, 0.95, 91)), key=lambda s: s["f1"])
    out["dev"], out["test"] = best, score("test", best["threshold"])
    return out


def shift_hold_probe(splits: dict, corpus: str) -> dict:
    data = {}
    for name, rows in splits.items():
        X, y = [], []
        for r in rows:
            for label, key in ((0, "hold_pauses"), (1, "shift_pauses")):
                for start, _ in r[key]:
                    t = min(int((start + 0.15) / M.FRAME_S), len(r["va_speaker"]) - 1)
                    words = last_words(r["text_speaker"], t, 3)
                    recent = [w for x in r["text_listener"][max(0, t - 60):t + 1] if x for w in x.split()]
                    run, k = 0, int(start / M.FRAME_S)
                    while 0 <= k < len(r["va_speaker"]) and r["va_speaker"][k] > 0:
                        run, k = run + 1, k - 1
                    f = {"speaker_run_frames": run, "n_words": len(words), "listener_words_5s": len(recent),
                         "listener_role": r["listener"] if corpus == "maptask" else "-"}
                    X.append(lexical(f, words))
                    y.append(label)
        data[name] = (X, np.asarray(y))
    vec = DictVectorizer()
    clf = LogisticRegression(C=0.3, max_iter=3000, class_weight="balanced")
    clf.fit(vec.fit_transform(data["train"][0]), data["train"][1])
    out = {}
    for name in ("dev", "test"):
        X, y = data[name]
        p = clf.predict_proba(vec.transform(X))[:, 1]
        out[name] = {"balanced_accuracy": float(balanced_accuracy_score(y, p >= 0.5)),
                     "roc_auc": float(roc_auc_score(y, p)), "shifts": int(y.sum()), "holds": int(len(y) - y.sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpora", nargs="+")
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="benchmarks/results/eval_ceiling.json")
    args = ap.parse_args()
    result = {"machine": f"{platform.machine()}, {platform.python_version()}", "margin": list(MARGIN),
              "delay_s": DELAY, "corpora": {}}
    for corpus in args.corpora:
        t0 = time.perf_counter()
        ds = load_from_disk(str(Path(args.data) / corpus))
        splits = {s: load_rows(ds[s], progress=False) for s in ("train", "dev", "test")}
        res = {"oracle_pause": {s: oracle_pause(splits[s]) for s in ("dev", "test")},
               "pause_probe": pause_probe(splits, corpus), "shift_hold_probe": shift_hold_probe(splits, corpus)}
        res["seconds"] = round(time.perf_counter() - t0, 1)
        result["corpora"][corpus] = res
        o, p, s = res["oracle_pause"]["test"], res["pause_probe"]["test"], res["shift_hold_probe"]["test"]
        print(f"{corpus} test: oracle pause F1 {o['f1']:.3f} (P {o['precision']:.3f}, R {o['recall']:.3f}); "
              f"pause probe F1 {p['f1']:.3f} (P {p['precision']:.3f}, R {p['recall']:.3f}, AP {p['pause_ap']:.3f}, "
              f"rate {p['rate_per_min']:.2f} vs human {p['human_rate_per_min']:.2f}/min); "
              f"shift/hold probe BA {s['balanced_accuracy']:.3f}, AUC {s['roc_auc']:.3f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
