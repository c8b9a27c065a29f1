"""Statistics of a rating study (Ruede et al. 2017): MOS with 95% CI per condition and scale, Welch
t-tests between conditions (Holm-corrected), Krippendorff's alpha (interval) per scale, and the
per-backchannel "bad moment" rate by onset relative to the speaker's pause; one plot.

Input is the admin's CSV export (one row per rater and clip, condition unblinded), or the same rows
built from the database and the study key (``export_rows``).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from backchannel.corpora.errors import CorpusError
from backchannel.evaluation.io import json_safe

from . import CONDITIONS, SCALES

CSV_FIELDS = ("rater", "clip", "condition", "corpus", "dialogue", "listener", "start", "end", "timing",
              "naturalness", "n_backchannels", "bad", "pause_rel", "updated")
# onset minus the start of the speaker's pause (s): negative = the speaker is still talking
PAUSE_BINS = ((-math.inf, -0.5), (-0.5, 0.0), (0.0, 0.2), (0.2, 0.5), (0.5, 1.0), (1.0, math.inf))


def bin_label(lo: float, hi: float) -> str:
    if lo == -math.inf:
        return f"< {hi:g} s"
    return f">= {lo:g} s" if hi == math.inf else f"{lo:g}..{hi:g} s"


BIN_LABELS = tuple(bin_label(*b) for b in PAUSE_BINS)


# ---------------------------------------------------------------- rows

def export_rows(db_rows: list[dict], study: dict) -> list[dict]:
    """Join the database's (rater, clip) rows with the study key: CSV_FIELDS dicts."""
    key = study["key"]
    out = []
    for r in db_rows:
        k = key.get(r["clip"])
        if k is None:
            continue
        out.append({"rater": r["rater"], "clip": r["clip"], "condition": k["condition"], "corpus": k["corpus"],
                    "dialogue": k["dialogue"], "listener": k["listener"], "start": k["start"], "end": k["end"],
                    "timing": r["timing"], "naturalness": r["naturalness"],
                    "n_backchannels": len(k["backchannels"]), "bad": sorted(r["bad"]),
                    "pause_rel": [b["pause_rel"] for b in k["backchannels"]], "updated": r["updated"]})
    return out


def write_csv(rows: list[dict]) -> str:
    """Rows as CSV text; list fields joined with ``;``, missing scores empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({f: (";".join("" if v is None else f"{v:g}" for v in r[f]) if isinstance(r[f], list)
                        else "" if r[f] is None else r[f]) for f in CSV_FIELDS})
    return buf.getvalue()


def read_ratings_csv(path: str | Path) -> list[dict]:
    """Read an exported ratings CSV; a bad row raises ``CorpusError`` naming the line and field."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"rater", "clip", "condition", "timing", "naturalness"} - set(reader.fieldnames or ())
        if missing:
            raise CorpusError(path, f"missing columns {sorted(missing)}", 1)
        rows = []
        for line, r in enumerate(reader, 2):
            try:
                row = dict(r)
                for s in SCALES:
                    row[s] = _score(r[s])
                row["bad"] = [int(x) for x in (r.get("bad") or "").split(";") if x != ""]
                row["pause_rel"] = [float(x) if x else math.nan for x in (r.get("pause_rel") or "").split(";")] \
                    if r.get("pause_rel") else []
                row["n_backchannels"] = int(r.get("n_backchannels") or len(row["pause_rel"]))
            except ValueError as err:
                raise CorpusError(path, str(err), line) from None
            rows.append(row)
    return rows


def _score(text: str | None) -> int | None:
    if text is None or text.strip() == "":
        return None
    v = int(float(text))
    if not 1 <= v <= 5 or v != float(text):
        raise ValueError(f"score {text!r} is not an integer 1-5")
    return v


# ---------------------------------------------------------------- statistics

def mos(values, confidence: float = 0.95) -> dict:
    """Mean opinion score with a t-based confidence interval (ratings treated as independent)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    n = len(x)
    if n == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "sd": math.nan, "n": 0}
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n": n}


def welch(a, b) -> dict:
    """Welch's unequal-variance t-test of two score lists: t, Welch-Satterthwaite df, two-sided p
    (Student's t distribution from scipy)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:  # both conditions constant: no test
        return {"t": math.nan, "df": math.nan, "p": math.nan}
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"t": float(t), "df": float(df), "p": float(2 * stats.t.sf(abs(t), df))}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    order = np.argsort(pvalues)
    m, adj, running = len(pvalues), [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj


def alpha_interval(rows: list[dict], scale: str) -> float:
    """Krippendorff's alpha, interval metric, raters x clips (missing ratings allowed)."""
    import krippendorff

    raters = sorted({r["rater"] for r in rows})
    clips = sorted({r["clip"] for r in rows})
    data = np.full((len(raters), len(clips)), np.nan)
    ri, ci = {r: i for i, r in enumerate(raters)}, {c: i for i, c in enumerate(clips)}
    for r in rows:
        if r[scale] is not None:
            data[ri[r["rater"]], ci[r["clip"]]] = r[scale]
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum()
    if pairable == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="interval"))


def bad_moment_rates(rows: list[dict]) -> list[dict]:
    """Per condition and pause bin: the mean over backchannels of the share of raters who heard the
    clip (gave a score) and marked that backchannel a bad moment."""
    heard: dict[tuple, list[int]] = {}  # (condition, clip, bc) -> [marks, raters]
    pause_rel: dict[tuple, float] = {}
    for r in rows:
        if r["timing"] is None and r["naturalness"] is None:
            continue
        bad = set(r["bad"])
        for i in range(r["n_backchannels"]):
            k = (r["condition"], r["clip"], i)
            h = heard.setdefault(k, [0, 0])
            h[0] += i in bad
            h[1] += 1
            rel = r["pause_rel"][i] if i < len(r["pause_rel"]) else None
            pause_rel[k] = math.nan if rel is None else rel
    out = []
    conds = [c for c in CONDITIONS if any(k[0] == c for k in heard)]
    conds += sorted({k[0] for k in heard} - set(conds))
    for cond in conds:
        for (lo, hi), label in zip(PAUSE_BINS, BIN_LABELS):
            per_bc = [m / n for k, (m, n) in heard.items() if k[0] == cond and lo <= pause_rel[k] < hi]
            out.append({"condition": cond, "bin": label, "n_backchannels": len(per_bc),
                        "rate": float(np.mean(per_bc)) if per_bc else math.nan})
    return out


def analyze(rows: list[dict]) -> dict:
    """The whole report: MOS, Welch tests, alpha, bad-moment rates (a JSON-ready dict)."""
    conds = [c for c in CONDITIONS if any(r["condition"] == c for r in rows)]
    conds += sorted({r["condition"] for r in rows} - set(conds))
    report = {"n_raters": len({r["rater"] for r in rows}), "n_clips": len({r["clip"] for r in rows}),
              "n_rows": len(rows), "conditions": conds, "mos": {}, "welch": {}, "alpha": {}}
    for s in SCALES:
        by = {c: [r[s] for r in rows if r["condition"] == c and r[s] is not None] for c in conds}
        report["mos"][s] = {c: mos(v) for c, v in by.items()}
        tests = [dict(a=a, b=b, **welch(by[a], by[b])) for a, b in itertools.combinations(conds, 2)
                 if len(by[a]) > 1 and len(by[b]) > 1]
        for t, p in zip(tests, holm([t["p"] for t in tests])):
            t["p_holm"] = p
        report["welch"][s] = tests
        report["alpha"][s] = alpha_interval(rows, s)
    report["bad_moments"] = bad_moment_rates(rows)
    return report


# ---------------------------------------------------------------- output

def markdown(report: dict) -> str:
    lines = [f"{report['n_raters']} raters, {report['n_clips']} clips, {report['n_rows']} rated clips.", "",
             "| condition | " + " | ".join(f"{s} MOS [95% CI] (n)" for s in SCALES) + " |",
             "|---|" + "---|" * len(SCALES)]
    for c in report["conditions"]:
        cells = [f"{m['mean']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}] ({m['n']})"
                 for m in (report["mos"][s][c] for s in SCALES)]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "Krippendorff's alpha (interval): "
              + ", ".join(f"{s} {report['alpha'][s]:.3f}" for s in SCALES), "",
              "| scale | a | b | t | df | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for s in SCALES:
        for t in report["welch"][s]:
            lines.append(f"| {s} | {t['a']} | {t['b']} | {t['t']:.2f} | {t['df']:.1f} | {t['p']:.3g} "
                         f"| {t['p_holm']:.3g} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str | Path) -> Path:
    """MOS with 95% CI per condition and scale, and bad-moment rate by pause bin, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = report["conditions"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(SCALES)
    for j, s in enumerate(SCALES):
        m = [report["mos"][s][c] for c in conds]
        mean = np.array([x["mean"] for x in m])
        err = np.nan_to_num(np.array([[x["mean"] - x["ci_low"] for x in m], [x["ci_high"] - x["mean"] for x in m]]))
        ax1.bar(np.arange(len(conds)) + (j - (len(SCALES) - 1) / 2) * width, mean, width, yerr=err,
                capsize=3, label=s)
    ax1.set_xticks(range(len(conds)), conds)
    ax1.set_ylim(1, 5)
    ax1.set_ylabel("MOS (1-5), 95% CI")
    ax1.set_title("Mean opinion score per condition", fontsize=10)
    ax1.legend(loc="best")
    for c in conds:
        rates = [b["rate"] for b in report["bad_moments"] if b["condition"] == c]
        ax2.plot(range(len(BIN_LABELS)), rates, marker="o", label=c)
    ax2.set_xticks(range(len(BIN_LABELS)), BIN_LABELS, rotation=30, ha="right")
    ax2.set_xlabel("backchannel onset relative to the speaker's pause")
    ax2.set_ylabel("bad-moment rate")
    ax2.set_title("Share of raters marking a backchannel bad, by its timing\n(no point: no backchannel in that bin)", fontsize=10)
    ax2.legend(loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """``rating_report.json``, ``rating_report.md`` and ``rating_report.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "rating_report.json", "md": out / "rating_report.md", "png": out / "rating_report.png"}
    paths["json"].write_text(json.dumps(json_safe(report), indent=1))
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths
