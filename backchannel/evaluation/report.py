"""The evaluation report as markdown tables and PNG plots (from ``backchannel.evaluation.evaluate``'s dict).

Plots per corpus: onset timing relative to the end of the speaker's last speech (histograms, model vs
human), precision-recall curves of the BACKCHANNEL frame class (rules as points), and a timeline of one
test listener with true and predicted backchannel onsets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backchannel.corpora.events import ACTIONS
from backchannel.frames import FRAME_S
from backchannel.metrics import OFFSET_BINS

_PALETTE = ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
TRUE_COLOR = "tab:green"


_KNOWN = ("random", "pause_gate", "logistic", "head", "ward_tsukahara", "gbt")


def _colors(names) -> dict:
    """One colour per system name, the same in every plot (green is kept for the true events)."""
    names = list(dict.fromkeys(names))
    other = [n for n in names if n not in _KNOWN]
    return {n: _PALETTE[(_KNOWN.index(n) if n in _KNOWN else len(_KNOWN) + other.index(n)) % len(_PALETTE)]
            for n in names}


def cell(x, digits: int = 3) -> str:
    """A number for a table cell ("–" for missing/NaN)."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _variants(systems: dict, definition: str):
    """``(system, variant, figures)`` of every system that ran, in report order, for ``definition``."""
    for name, rep in systems.items():
        if rep.get("status") != "ok":
            continue
        for variant, v in rep["definitions"][definition]["variants"].items():
            yield name, variant, v


NOT_MATCHED = "NOT matched"  # a rate_matched variant whose dev rate lies outside the band (``dev.in_band`` False)


def _variant_name(variant: str, v: dict, long: bool = False) -> str:
    """The variant's name in a table: ``rate_matched`` says so when no dev setting met the rate band."""
    dev = v.get("dev") or {}
    if variant == "rate_matched" and dev.get("in_band") is False:
        return f"rate_matched ({NOT_MATCHED}: no dev setting in the band; nearest rate)" if long \
            else f"rate_matched ({NOT_MATCHED})"
    return variant


def event_table(section: dict, margins: list[str], definition: str) -> list[str]:
    """Backchannel event P/R at [-500,+500] and F1 at each margin, one line per system and variant."""
    main = "[-500,+500]" if "[-500,+500]" in margins else margins[0]
    header = ["system", "variant", f"P {main}", f"R {main}"] + [f"F1 {m}" for m in margins] + \
        ["rate /min", "human /min", "rate ratio"]
    rows = []
    for name, rep in section["systems"].items():
        if rep.get("status") != "ok":
            rows.append([name, rep.get("status")] + ["–"] * (len(header) - 2))
            continue
        for variant, v in rep["definitions"][definition]["variants"].items():
            ev, cad = v["events"], v["cadence"]
            f1s = [cell(ev[m]["f1"]) + (f" ± {cell(ev[m]['f1_std'])}" if "f1_std" in ev[m] else "") for m in margins]
            rows.append([name + (f" ({rep['rows']}/{rep['rows_total']} rows)" if "rows" in rep and
                                 rep["rows"] < rep["rows_total"] else ""), _variant_name(variant, v, long=True),
                         cell(ev[main]["precision"]), cell(ev[main]["recall"]), *f1s,
                         cell(cad["model"]["rate_per_minute"], 2), cell(cad["human"]["rate_per_minute"], 2),
                         cell(cad["rate_ratio"], 2)])
    return md_table(header, rows)


def policy_table(section: dict, definition: str) -> list[str]:
    """The tuned decision settings of each variant (what ``Policy.from_report`` loads)."""
    rows = []
    for name, variant, v in _variants(section["systems"], definition):
        p = v["policy"]
        dev = v.get("dev") or {}
        rows.append([name, _variant_name(variant, v), cell(p["on"]), p["smoothing"], cell(p["lead"], 2), cell(p["refractory"], 2),
                     cell(p["take_turn"]) if p.get("take_turn") is not None else "–", cell(dev.get("f1")),
                     cell(dev.get("rate"), 2), cell(dev.get("human_rate"), 2)])
    return md_table(["system", "variant", "on", "smoothing (frames)", "lead (s)", "refractory (s)", "take-turn level",
                   "dev F1", "dev rate /min", "dev human /min"], rows)


def frame_table(section: dict) -> list[str]:
    header = ["system"] + [f"F1 {a}" for a in ACTIONS] + ["macro-F1", "balanced acc."] + \
        [f"AUPRC {a}" for a in ACTIONS]
    rows = []
    for name, rep in section["systems"].items():
        fr = rep.get("frame")
        if not fr:
            continue
        if "macro_f1" in fr:
            rows.append([name, *map(cell, fr["f1"]), cell(fr["macro_f1"]), cell(fr["balanced_accuracy"]),
                         *map(cell, fr["auprc"])])
        else:  # a rule: its firing condition vs BACKCHANNEL frames only
            rows.append([name, "–", cell(fr["f1_backchannel"]), "–", "–", "–", "–", cell(fr["auprc_backchannel"]), "–"])
    return md_table(header, rows)


def turn_tables(section: dict, definition: str) -> list[str]:
    sh, tt = [], []
    for name, rep in section["systems"].items():
        if rep.get("status") != "ok":
            continue
        s = rep.get("shift_hold")
        if s:
            vap = s.get("vap_zero_shot", {})
            sh.append([name, cell(s["balanced_accuracy"]), cell(s["take_turn_level"]), cell(s["balanced_accuracy_shipped"]),
                       cell(s["shipped_take_turn_level"]), cell(s["roc_auc"]), cell(vap.get("roc_auc")), s["n_shift"],
                       s["n_hold"]])
        for variant, v in rep["definitions"][definition]["variants"].items():
            t = v.get("take_turn")
            if not t:
                continue
            ev = t["events"].get("[-500,+500]", next(iter(t["events"].values())))
            tt.append([name, _variant_name(variant, v), cell(v["policy"]["take_turn"]), v["policy"]["smoothing"], cell(ev["precision"]),
                       cell(ev["recall"]), cell(ev["f1"]), cell(t["rate_per_minute"], 2), cell(t["median_latency"]),
                       cell(t["coverage"]), cell(t["human_median_latency"]), cell(t["false_in_speech_per_minute"], 2)])
    out = []
    if tt:
        out += [("Take-turn as shipped: onsets = first frame of each run of the policy's TAKE_TURN decisions; "
                 "level tuned on dev for onset F1 against shift + interruption onsets; latency = onset − floor "
                 "party's speech end in shift pauses (s); false take-turns = unmatched onsets inside the floor "
                 "party's speech, per listener-minute."), ""]
        out += md_table(["system", "variant", "level", "smoothing", "P [-500,+500]", "R", "F1", "rate /min",
                       "median latency", "coverage", "human median gap", "false in speech /min"], tt)
    if sh:
        out += [("Shift vs hold in mutual silences (VAP window: 50–150 ms into the pause): predicted shift = the "
                 "policy decides TAKE_TURN in the window. Balanced accuracy with the take-turn level tuned on dev "
                 "for it, and with the shipped level; ROC AUC of the mean smoothed p(TAKE_TURN) in the window, and "
                 "of the backbone's VAP zero-shot p(shift)."), ""]
        out += md_table(["system", "balanced acc.", "level (dev)", "bal. acc. shipped", "shipped level", "ROC AUC",
                       "VAP zero-shot AUC", "shifts", "holds"], sh)
    return out


def type_table(section: dict) -> list[str]:
    """Backchannel type accuracy and macro-F1 of the type baselines and the systems that predict types."""
    types = (section.get("types") or {}).get("systems") or {
        n: r["types"] for n, r in section["systems"].items() if "types" in r}
    types = {n: t for n, t in types.items() if t.get("n_frames")}
    if not types:
        return []
    share = next(iter(types.values()))["majority_share"]
    best = (section.get("types") or {}).get("best_baseline")
    out = ["### Backchannel type (test frames labelled BACKCHANNEL with a known type)", "",
           (f"Baselines fitted on the train rows: `type_majority` (the most frequent type), `type_prior` (drawn "
            f"from the train type shares), `type_last_word` (the most frequent type after the floor party's last "
            f"word). Majority type share {cell(share)}; best baseline by macro-F1: {best or '–'}. Log loss (nats, "
            f"systems with type probabilities): the train type prior's is "
            f"{cell((section.get('types') or {}).get('prior_log_loss'))}; a system above it knows less about the "
            f"type than the prior does, whatever its argmax figures."), ""]
    return out + md_table(["system", "accuracy", "macro-F1", "log loss", "frames"],
                        [[n, cell(t["accuracy"]), cell(t["macro_f1"]), cell(t.get("log_loss")), t["n_frames"]]
                         for n, t in types.items()])


def user_onset_table(section: dict) -> list[str]:
    """ROC AUC and precision at recall 0.95 of backchannel vs take-turn listener onsets, per delay."""
    sec = section.get("user_onsets") or {}
    rows, delays = [], []
    for name, by_def in sec.items():
        for definition, per_delay in by_def.items():
            delays = list(per_delay)
            first = next(iter(per_delay.values()))
            rows.append([name, definition] + [f"{cell(v['roc_auc'])} / {cell(v['precision_at_recall_0.95'])}"
                                              for v in per_delay.values()]
                        + [first["n_backchannel"], first["n_take_turn"]])
    if not rows:
        return []
    out = ["### User onset classification (backchannel vs taking the turn)", "",
           ("Listener speech onsets while the floor party holds the floor (it speaks at the onset or stopped at "
            "most 0.2 s before): backchannel candidates (label 1; under `isolated` only the isolated ones) vs "
            "take-turn onsets (0), decided from the frame whose end is the first at or after onset + delay. "
            "Cells: ROC AUC / precision at recall 0.95. `lexicon`: 1 when the listener's words visible by then "
            "pass the lexicon rule, 0.5 before any word, 0 otherwise."), ""]
    return out + md_table(["system", "definition"] + delays + ["backchannels", "take-turns"], rows)


def cadence_table(section: dict, definition: str) -> list[str]:
    rows = []
    for name, variant, v in _variants(section["systems"], definition):
        c = v["cadence"]
        m, h = c["model"], c["human"]
        rows.append([name, _variant_name(variant, v), cell(m["rate_per_minute"], 2), cell(h["rate_per_minute"], 2), cell(c["rate_ratio"], 2),
                     cell(m["median_offset"]), cell(h["median_offset"]), cell(c["offset_js_distance"]),
                     cell(m["share_in_overlap"]), cell(h["share_in_overlap"]), cell(m["median_inter_onset"], 2),
                     cell(h["median_inter_onset"], 2)])
    return md_table(["system", "variant", "rate /min", "human /min", "ratio", "median offset (s)", "human", "JS dist.",
                   "in overlap", "human", "median IBI (s)", "human"], rows)


def ratio_table(section: dict, margins: list[str], definition: str) -> list[str]:
    ratios = (section.get("ratios") or {}).get(definition)
    if not ratios:
        return ["(no pause-gate ratio: the pause gate or the tuned systems did not run)", ""]
    return md_table(["F1 ratio"] + margins, [[k.replace("_over_pause_gate", " / pause gate"),
                                            *[cell(v.get(m), 2) for m in margins]] for k, v in ratios.items()])


def summary_lines(report: dict) -> list[str]:
    """A few console lines: F1 at [-500,+500] and rate ratio per system, variant, definition and corpus."""
    out = []
    for corpus, sec in report["corpora"].items():
        for definition in sec["definitions"]:
            parts = []
            for name, rep in sec["systems"].items():
                if rep.get("status") != "ok":
                    parts.append(f"{name} {rep.get('status')}")
                    continue
                for variant, v in rep["definitions"][definition]["variants"].items():
                    ev = v["events"].get("[-500,+500]") or next(iter(v["events"].values()))
                    parts.append(f"{name}/{_variant_name(variant, v)} F1 {cell(ev['f1'])} (rate x{cell(v['cadence']['rate_ratio'], 2)})")
            out.append(f"{corpus} ({definition}): " + "; ".join(parts))
    return out


def markdown(report: dict, plots: dict | None = None) -> str:
    """The whole report as markdown (``plots``: corpus -> list of PNG file names to link)."""
    s = report["settings"]
    from backchannel.metrics import margin_label

    margins = [margin_label(tuple(m)) for m in s["margins"]]
    g = s["grid"]
    lines = ["# Backchannel evaluation", "",
             (f"Created {report['created']}; code {report['code'].get('git_commit') or '?'} "
              f"(backchannel {report['code'].get('version')}); checkpoint: {report.get('checkpoint') or 'none'}."), "",
             ("All figures on the official TEST splits. Every system's onsets come from the one decision core "
              "(`Policy.run`, what the plugin runs); every policy setting is tuned on DEV only (event F1 at "
              f"{margin_label(tuple(s['tune_margin']))}; variant `rate_matched`: dev rate within "
              f"{1 / s['rate_factor']:.2f}–{s['rate_factor']:.2f} of the human dev rate; where no dev setting lies in "
              f"that band the nearest rate is taken and the tables say `{NOT_MATCHED}`; variant `calibrated`: the "
              "`f1` policy with online rate calibration, no labels (policy rule 9, carried across the test rows as "
              "one deployment), to the human dev rate or `--target-rate`; `calibrated_stated`: to a rate stated for "
              "the test domain). Grid: trigger levels "
              f"{min(g['on'])}–{max(g['on'])}, smoothing {g['smoothing']} frames, leads {g['lead']} s, refractory "
              f"{g['refractory']} s. Random baseline: mean ± std over seeds {s['seeds']}. Rates are backchannels "
              "per listener-minute. Definitions: `isolated` backchannels (listener silent ≥ 1 s before and after, "
              "floor party speaking within 1.5 s before; the default target) and `all` mined candidates."), ""]
    for corpus, sec in report["corpora"].items():
        t, d = sec["test"], sec["dev"]
        counts = ", ".join(f"{k}: {v['count']} ({cell(v['rate_per_minute'], 2)}/min)" for k, v in t["backchannels"].items())
        lines += [f"## {corpus}", "",
                  (f"Test: {t['rows']} listener rows in {t['dialogues']} dialogues, {t['listener_minutes']:.1f} "
                   f"listener-minutes; backchannels {counts}; {t['shift_pauses']} shift and {t['hold_pauses']} hold "
                   f"pauses. Dev: {d['rows']} rows."), ""]
        tr = sec.get("transfer")
        if tr:
            rates = ", ".join(f"{k} {cell(v, 2)}/min" for k, v in (tr.get("target_train_rates") or {}).items())
            lines += [(f"**Leave-one-corpus-out**: trained systems fitted on {tr['train_on']} train rows, every policy "
                       f"tuned on {tr['train_on']} dev; scored on {tr['test_on']} test, nothing tuned on "
                       f"{tr['test_on']}. Dev above is {tr['train_on']}'s."
                       + (f" Head trained on: {', '.join(tr['head_corpora'])}." if tr.get("head_corpora") else "")
                       + (f" Note: {tr['note']}." if tr.get("note") else "")
                       + (f" `calibrated_stated` calibrates to {tr['test_on']}'s train-split human rate ({rates}), "
                          "the number a deployer states for their domain; `calibrated` to the source dev rate."
                          if rates else "")), ""]
        if sec.get("onsets_file"):
            o = sec["onsets_file"]
            lines += [(f"Headline onsets: `{o['path']}` ({o['system']}, {o['definition']} definition, variant "
                      f"{o['variant']})."), ""]
        for definition in sec["definitions"]:
            lines += [f"### Backchannel events — {definition} definition", ""] + event_table(sec, margins, definition)
            lines += [f"#### Ratio of F1 to the pause gate's ({definition})", ""] + ratio_table(sec, margins, definition)
        main = sec["definitions"][0]
        lines += [f"### Tuned policies ({main} definition; `Policy.from_report` loads these)", ""]
        lines += policy_table(sec, main)
        lines += ["### Frame level (argmax; rules: firing condition vs BACKCHANNEL frames)", ""] + frame_table(sec)
        lines += type_table(sec) + user_onset_table(sec)
        lines += ["### Turn-taking", ""] + (turn_tables(sec, main) or ["(no system predicts take-turns)", ""])
        lines += [f"### Cadence ({main} definition; model vs human on the same listeners)", "",
                  ("Offsets: onset minus the end of the speaker's last speech (s; negative = in overlap); JS "
                   "distance of their histograms (0.1 s bins, −1..2 s, outside values counted in the outer bins); "
                   "IBI: interval between backchannels."), ""]
        lines += cadence_table(sec, main)
        lines += ["### Time (s)", ""] + md_table(["stage", "seconds"], [[k, cell(v, 1)] for k, v in sec["seconds"].items()])
        for png in (plots or {}).get(corpus, []):
            lines += [f"![{png}]({png})", ""]
    ref = report["reference"]
    lines += ["## Published reference points (different data: context, not a like-for-like comparison)", ""]
    lines += md_table(["source", "figure", "value"], [
        *[["Ruede et al. 2017, Switchboard", f"event F1 {m}", cell(v)] for m, v in ref["ruede2017_switchboard_f1"].items()],
        ["Ruede et al. 2017, Switchboard", "random with true count, F1", cell(ref["ruede2017_random_true_count_f1"])],
        *[["VAP 2022, Switchboard", f"{k.replace('_', ' ')} (weighted F1)", cell(v)]
          for k, v in ref["vap2022_switchboard_weighted_f1"].items()],
        *[["Ruede et al. 2017, raters", f"timing MOS, {k}", cell(v, 2)] for k, v in ref["ruede2017_timing_mos"].items()]])
    lines += [f"Total time {report.get('seconds_total') or float('nan'):.1f} s.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_offsets(human, systems: dict, path, title: str = "") -> Path:
    """Histograms (density, 0.1 s bins) of onset minus speaker's speech end: human filled, systems as lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4))
    h = np.asarray(human, float)
    ax.hist(np.clip(h[~np.isnan(h)], OFFSET_BINS[0], OFFSET_BINS[-1]), bins=OFFSET_BINS, density=True,
            color="0.75", label=f"human (n={int(np.sum(~np.isnan(h)))})")
    color = _colors(k.split(" (")[0] for k in systems)
    for name, x in systems.items():
        x = np.asarray(x, float)
        x = x[~np.isnan(x)]
        if len(x):
            ax.hist(np.clip(x, OFFSET_BINS[0], OFFSET_BINS[-1]), bins=OFFSET_BINS, density=True, histtype="step",
                    lw=1.5, label=f"{name} (n={len(x)})", color=color[name.split(" (")[0]])
    ax.axvline(0, color="k", lw=0.8)
    lo, hi = OFFSET_BINS[0], OFFSET_BINS[-1]
    ax.set_xticks(np.arange(lo, hi + 1e-9, 0.5))
    ax.set_xticklabels([f"≤{x:g}" if x == lo else f"≥{x:g}" if x == hi else f"{x:g}"
                        for x in np.arange(lo, hi + 1e-9, 0.5)])
    ax.set_xlabel("backchannel onset − end of speaker's last speech (s); < 0: in overlap\n"
                  f"the outer bins (≤{lo:g}, ≥{hi:g}) hold everything beyond them")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the data
    return _save(fig, path)


def plot_pr(curves: dict, points: dict, path, title: str = "") -> Path:
    """Precision-recall curves of the BACKCHANNEL frame class; rules (0/1 scores) as single points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    color = _colors(list(points) + list(curves))
    for name, (prec, rec, ap) in curves.items():
        ax.plot(rec, prec, label=f"{name} (AP {cell(ap)})", color=color[name])
    for name, (p, r) in points.items():
        ax.plot([r], [p], "o", label=f"{name} (rule)", color=color[name])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_timeline(row: dict, probs: dict, onsets: dict, path, start: float | None = None,
                  seconds: float = 60.0) -> Path:
    """One listener over ``seconds`` s (default: the window with the most true backchannels): voice
    activity of both parties, backchannel probabilities, true (green) and predicted onsets per system."""
    plt = _plt()
    true = np.asarray(row["bc_onsets"], float)
    if start is None:
        counts = [np.sum((true >= t) & (true < t + seconds)) for t in true] if len(true) else [0]
        start = float(max(0.0, true[int(np.argmax(counts))] - 2.0)) if len(true) else 0.0
    f0, f1 = int(start / FRAME_S), int((start + seconds) / FRAME_S)
    t = np.arange(int(row["n_frames"]))[f0:f1] * FRAME_S
    n_sys = len(onsets)
    color = _colors(list(onsets) + list(probs))
    fig, axes = plt.subplots(3 + (1 if probs else 0), 1, figsize=(14, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [1.2, 1.2] + ([1.5] if probs else []) + [0.4 + 0.3 * n_sys]})
    axes[0].fill_between(t, 0, np.asarray(row["va_speaker"])[f0:f1], step="post", color="tab:blue", alpha=0.6)
    axes[0].set_ylabel("speaker")
    axes[1].fill_between(t, 0, np.asarray(row["va_listener"])[f0:f1], step="post", color="tab:orange", alpha=0.6)
    axes[1].set_ylabel("listener\n(backchannels\nleft out)")
    for ax in axes[:2]:
        ax.set_ylim(0, 1.1)
        for x in true[(true >= start) & (true < start + seconds)]:
            ax.axvline(x, color=TRUE_COLOR, lw=1)
    if probs:
        for name, p in probs.items():
            axes[2].plot(t + FRAME_S, np.asarray(p)[f0:f1], lw=1, label=name, color=color[name])  # at frame ends
        axes[2].set_ylabel("p(backchannel)")
        axes[2].set_ylim(0, 1)
        axes[2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)  # beside the data
    ev = axes[-1]
    lanes = ["true"] + list(onsets)
    for k, name in enumerate(lanes):
        x = true if name == "true" else np.asarray(onsets[name], float)
        x = x[(x >= start) & (x < start + seconds)]
        ev.plot(x, np.full(len(x), k), "|", ms=12, mew=2, color=TRUE_COLOR if name == "true" else color[name])
    ev.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ev.set_ylim(-0.5, len(lanes) - 0.5)
    ev.set_xlabel("time (s)")
    total = int(row["n_frames"]) * FRAME_S
    fig.suptitle(f"{row.get('corpus', '')} {row.get('dialogue', '')}: listener {row.get('listener', '')}, "
                 f"{start:.0f}–{min(start + seconds, total):.0f} s of {total:.0f} s (green: true backchannel onsets)",
                 fontsize=10)
    return _save(fig, path)


def plot_types(types: dict, path, title: str = "") -> Path:
    """Confusion matrices of backchannel types, one panel per system (``types``: name -> its
    ``scoring.type_report``, ``confusion[true][predicted]`` counts): colour = share of the true type's
    frames, text = frame counts."""
    from backchannel.lexicon import BC_TYPES

    plt = _plt()
    fig, axes = plt.subplots(1, len(types), figsize=(max(5.2 * len(types), 7.0), 4.8), squeeze=False)
    for ax, (name, rep) in zip(axes[0], types.items()):
        cm = np.asarray(rep["confusion"], dtype=float)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(BC_TYPES)), BC_TYPES, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(BC_TYPES)), BC_TYPES, fontsize=8)
        ax.set_title(f"{name}: accuracy {cell(rep['accuracy'])}, macro-F1 {cell(rep['macro_f1'])}", fontsize=9)
        ax.set_xlabel("predicted type")
        ax.set_ylabel("true type")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def write_report(report: dict, out_dir, plot_data: dict | None = None) -> list[str]:
    """Write the plots (when ``plot_data``: corpus -> data from ``evaluate``) and ``report.md``; returns
    the file names written (relative to ``out_dir``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, list[str]] = {}
    for corpus, d in (plot_data or {}).items():
        names = []
        if d["offsets"]:
            names.append(plot_offsets(d["human_offsets"], d["offsets"], out_dir / f"{corpus}-onset-offsets.png",
                                      f"{corpus} test ({d['definition']} backchannels): onset timing, model vs "
                                      "human").name)
        if d["pr_curves"] or d["pr_points"]:
            names.append(plot_pr(d["pr_curves"], d["pr_points"], out_dir / f"{corpus}-pr-backchannel.png",
                                 f"{corpus} test: BACKCHANNEL frames").name)
        if d.get("timeline"):
            tl = d["timeline"]
            names.append(plot_timeline(tl["row"], tl["probs"], tl["onsets"], out_dir / f"{corpus}-timeline.png").name)
        if d.get("types"):
            names.append(plot_types(d["types"], out_dir / f"{corpus}-types.png",
                                    f"{corpus} test: backchannel types on BACKCHANNEL frames").name)
        plots[corpus] = names
    (out_dir / "report.md").write_text(markdown(report, plots))
    return [n for names in plots.values() for n in names] + ["report.md"]
