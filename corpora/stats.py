"""Corpus statistics report: backchannel cadence, forms and types, timing, turn-transition gaps.

``corpus_stats(dialogues, events)`` reduces dialogues and their mined events
(``backchannel.corpora.mining.mine_dialogue``) to a JSON-able dict; ``write_stats_report`` writes it
as ``stats.json`` plus ``stats.png`` (six panels); ``compare_to_human_reference`` sets the main
figures beside the human reference in the corpora README. All times are seconds unless a key says
``_ms``; rates are per listener-minute.

Listener-minute: each speaker of a dialogue is, in turn, the listener for the whole dialogue, so a
dialogue of ``D`` seconds with ``S`` speakers contributes ``S * D / 60`` listener-minutes (two-party:
twice its length). This is the "participant-minute" of the Switchboard reference figure.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from backchannel.lexicon import BC_TYPES, ECHO

from .dialogue import Dialogue
from .events import BC_KINDS, LabelSettings

LISTENER_MINUTE = ("each speaker counts as a listener for the whole dialogue: a dialogue of D seconds "
                   "with S speakers gives S*D/60 listener-minutes")
GAP_EDGES_S = np.round(np.linspace(-2.0, 2.0, 81), 6)  # 50 ms bins, -2 s .. +2 s
ONSET_EDGES_S = np.round(np.linspace(0.0, 3.0, 31), 6)  # 100 ms bins, 0 .. 3 s
IBI_EDGES_S = np.round(np.linspace(0.0, 60.0, 61), 6)  # 1 s bins, 0 .. 60 s
TOP_FORMS = 20
MAX_LISTENER_IDS = 8  # report rates per listener id (g / f) only when ids repeat like roles

# Corpora README, "Human reference figures" (Switchboard; Stivers et al. 2009 for gaps).
HUMAN_REFERENCE = {
    "backchannels_per_minute": 2.0,
    "common_forms": ("uhhuh", "yeah", "right", "oh", "okay"),
    "common_forms_share": 2 / 3,
    "gap_mode_s": 0.2,
}


def corpus_stats(dialogues: Iterable[Dialogue], events: Iterable | None = None,
                 settings: LabelSettings | dict | None = None) -> dict:
    """Statistics of ``dialogues`` and their mined ``events`` (one ``DialogueEvents`` per dialogue, same
    order). Without ``events`` each dialogue is mined with ``mine_dialogue(d, settings)``.

    ``events`` only needs ``.dialogue`` (the id) and ``.listeners``: listener id -> an object with
    ``backchannels`` (``BackchannelEvent``) and ``turns`` (``TurnEvent``) lists. "backchannels" are
    all mined candidates; ``isolated`` holds the same figures for the isolated ones (``kinds``).
    """
    from .mining import mine_dialogue, turn_transition_gaps

    events = iter(events) if events is not None else None
    bcs, gaps, rates, ibis = [], [], [], []
    per_id: dict[str, list[float]] = {}  # listener id -> [backchannels, minutes]
    splits: dict[str, Counter] = {}
    turns = Counter()
    n_dialogues = duration = minutes = 0.0
    criteria: Counter = Counter()  # candidate verdicts: corpus tag vs lexicon rule, side by side
    for d in dialogues:
        ev = mine_dialogue(d, settings) if events is None else next(events, None)
        if ev is None:
            raise ValueError(f"no events for dialogue {d.id} (events run out before dialogues)")
        if getattr(ev, "dialogue", d.id) != d.id:
            raise ValueError(f"events of {ev.dialogue!r} given for dialogue {d.id!r}: lists out of order")
        n_dialogues += 1
        duration += d.duration
        split = splits.setdefault(d.split or "none", Counter())
        split["dialogues"] += 1
        gaps.extend(turn_transition_gaps(d, ev))
        for listener in d.speakers:
            le = ev.listeners.get(listener)
            listener_bcs = sorted(le.backchannels if le else [], key=lambda b: b.onset)
            listener_turns = le.turns if le else []
            criteria.update(getattr(le, "source_counts", None) or {})
            m = d.duration / 60.0
            minutes += m
            rates.append(len(listener_bcs) / m if m > 0 else math.nan)
            per_id.setdefault(listener, [0, 0.0])
            per_id[listener][0] += len(listener_bcs)
            per_id[listener][1] += m
            bcs.extend(listener_bcs)
            ibis.extend(np.diff([b.onset for b in listener_bcs]).tolist())
            kinds = Counter(t.kind for t in listener_turns)
            turns.update(kinds)
            split.update({"listener_minutes": m, "backchannels": len(listener_bcs),
                          "isolated": sum(b.kind == "isolated" for b in listener_bcs),
                          "shifts": kinds["shift"], "interruptions": kinds["interruption"]})
    if events is not None and next(events, None) is not None:
        raise ValueError("more events than dialogues")

    n = len(bcs)
    sources = Counter(b.source for b in bcs)
    bc_kinds = Counter(b.kind for b in bcs)
    isolated = [b for b in bcs if b.kind == "isolated"]
    since = np.array([b.since_speaker_end for b in bcs], dtype=float)
    in_pause = np.array([b.since_speaker_end for b in bcs if not b.in_overlap], dtype=float)
    stats = {
        "n_dialogues": int(n_dialogues),
        "hours": duration / 3600.0,
        "listener_minutes": minutes,
        "listener_minute_definition": LISTENER_MINUTE,
        "backchannels": n,
        "turns": {"shift": turns["shift"], "interruption": turns["interruption"]},
        "rate": {
            "per_listener_minute": _div(n, minutes),
            "per_listener": {"mean": _nanstat(np.nanmean, rates), "median": _nanstat(np.nanmedian, rates),
                             "n_listeners": len(rates)},
            "per_listener_values": [_num(r) for r in rates],
            "by_listener_id": ({k: {"backchannels": c, "listener_minutes": mm, "per_minute": _div(c, mm)}
                                for k, (c, mm) in sorted(per_id.items())}
                               if len(per_id) <= MAX_LISTENER_IDS else None),
        },
        "sources": {s: {"count": sources[s], "share": _div(sources[s], n)} for s in ("tag", "lexicon")},
        # short, non-floor-claiming listener utterances accepted by each criterion (mining.count_backchannel_sources)
        "criteria": {k: int(criteria[k]) for k in ("tag", "lexicon", "both", "tag_only", "lexicon_only")},
        **_forms_and_types(bcs),
        "kinds": {k: {"count": bc_kinds[k], "share": _div(bc_kinds[k], n)} for k in BC_KINDS},
        "isolated": {"backchannels": len(isolated), "share_of_candidates": _div(len(isolated), n),
                     "per_listener_minute": _div(len(isolated), minutes),
                     "overlap_share": _div(sum(b.in_overlap for b in isolated), len(isolated)),
                     **_forms_and_types(isolated)},
        "overlap_share": _div(sum(b.in_overlap for b in bcs), n),
        "onset_since_speaker_end": {
            **_histogram(since[~np.isnan(since)], ONSET_EDGES_S),
            "median_s": _nanstat(np.nanmedian, since),
            "median_in_pause_s": _nanstat(np.nanmedian, in_pause),
            "n_floor_not_yet_spoken": int(np.isnan(since).sum()),
            "note": "onset minus the end of the floor party's last speech; 0 when in overlap",
        },
        "turn_transition_gaps": {**_histogram(np.asarray(gaps, dtype=float), GAP_EDGES_S),
                                 **_mode(gaps, GAP_EDGES_S),
                                 "median_s": _nanstat(np.nanmedian, gaps)},
        "inter_backchannel_intervals": {**_histogram(np.asarray(ibis, dtype=float), IBI_EDGES_S),
                                        **_quartiles(ibis)},
        "splits": {s: {"dialogues": c["dialogues"], "listener_minutes": c["listener_minutes"],
                       "backchannels": c["backchannels"], "per_listener_minute": _div(c["backchannels"],
                                                                                     c["listener_minutes"]),
                       "isolated": c["isolated"], "isolated_share": _div(c["isolated"], c["backchannels"]),
                       "shifts": c["shifts"], "interruptions": c["interruptions"]}
                   for s, c in sorted(splits.items())},
    }
    return stats


def _forms_and_types(bcs: list) -> dict:
    """``forms`` (distinct, top ``TOP_FORMS``, top-5 and reference-forms shares), ``types`` (count and
    share of each of ``BC_TYPES``) and ``echo`` (tagged repeats with no type) of backchannels ``bcs``."""
    n = len(bcs)
    forms = Counter(b.form for b in bcs)
    types = Counter(b.bc_type for b in bcs)
    top = forms.most_common()
    return {
        "forms": {
            "distinct": len(forms),
            "top": [{"form": f, "count": c, "share": _div(c, n)} for f, c in top[:TOP_FORMS]],
            "top5_share": _div(sum(c for _, c in top[:5]), n),
            "reference_forms_share": _div(sum(forms[f] for f in HUMAN_REFERENCE["common_forms"]), n),
        },
        "types": {t: {"count": types[t], "share": _div(types[t], n)} for t in BC_TYPES},
        "echo": {"count": types[ECHO], "share": _div(types[ECHO], n)},
    }


def _div(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def _num(x) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _nanstat(fn, values) -> float | None:
    arr = np.asarray(values, dtype=float)
    return _num(fn(arr)) if np.isfinite(arr).any() else None


def _histogram(values: np.ndarray, edges: np.ndarray) -> dict:
    """Counts in ``[edges[i], edges[i+1])`` (last bin closed), plus how many fall outside."""
    counts, _ = np.histogram(values, bins=edges)
    return {"n": len(values), "bin_edges_s": [float(e) for e in edges], "counts": counts.tolist(),
            "below": int((values < edges[0]).sum()), "above": int((values > edges[-1]).sum())}


def _mode(values, edges: np.ndarray) -> dict:
    """The most populated bin (the first one on ties) as ``[lo, hi)`` and its centre, in seconds."""
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=edges)
    if counts.sum() == 0:
        return {"mode_bin_s": None, "mode_s": None}
    k = int(np.argmax(counts))
    lo, hi = float(edges[k]), float(edges[k + 1])
    return {"mode_bin_s": [lo, hi], "mode_s": (lo + hi) / 2}


def _quartiles(values) -> dict:
    if not len(values):
        return {"median_s": None, "q25_s": None, "q75_s": None, "iqr_s": None}
    q25, med, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"median_s": float(med), "q25_s": float(q25), "q75_s": float(q75), "iqr_s": float(q75 - q25)}


def compare_to_human_reference(stats: dict) -> list[str]:
    """One line per figure: this corpus beside the corpora README's human reference (context, not a test)."""
    ref = HUMAN_REFERENCE
    lines = []
    rate = stats["rate"]["per_listener_minute"]
    if rate is not None:
        per_min = ref["backchannels_per_minute"]
        lines.append(f"backchannels per listener-minute: {rate:.2f} (human reference ~{per_min:.0f} per "
                     f"participant-minute, Switchboard; {rate / per_min:.1f}x)")
    n = stats["backchannels"]
    if n:
        forms = stats["forms"]
        top5 = ", ".join(f["form"] for f in forms["top"][:5])
        lines.append(f"share of {'/'.join(ref['common_forms'])}: {forms['reference_forms_share']:.0%} "
                     f"(reference about {ref['common_forms_share']:.0%}); this corpus's own top 5 forms: "
                     f"{forms['top5_share']:.0%} ({top5})")
        lines.append(f"backchannels in overlap: {stats['overlap_share']:.0%}; median onset after the floor "
                     f"party's speech end: {_ms(stats['onset_since_speaker_end']['median_s'])}")
    gaps = stats["turn_transition_gaps"]
    if gaps["mode_s"] is not None:
        lo, hi = gaps["mode_bin_s"]
        lines.append(f"turn-transition gap mode: {lo * 1000:.0f}..{hi * 1000:.0f} ms, median "
                     f"{_ms(gaps['median_s'])} over {gaps['n']} transitions (reference: mode ~"
                     f"{ref['gap_mode_s'] * 1000:.0f} ms, Stivers et al. 2009)")
    iso = stats.get("isolated") or {}
    if n and iso.get("share_of_candidates") is not None:
        top3 = ", ".join(f["form"] for f in iso["forms"]["top"][:3])
        lines.append(f"isolated backchannels (Ruede et al. 2017): {iso['backchannels']} of {n} candidates "
                     f"({iso['share_of_candidates']:.0%}), {iso['per_listener_minute']:.2f} per listener-minute; "
                     f"top forms {top3}")
    crit = stats.get("criteria") or {}
    if crit.get("tag") or crit.get("lexicon"):
        lines.append(f"candidates accepted by the corpus tag: {crit['tag']}, by the lexicon rule: {crit['lexicon']} "
                     f"(both {crit['both']}, tag only {crit['tag_only']}, lexicon only {crit['lexicon_only']})")
    return lines


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def write_stats_report(stats: dict, out_dir: str | Path) -> list[Path]:
    """Write ``stats.json`` and ``stats.png`` (2x3 panels) into ``out_dir``; return the paths."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "stats.json"
    json_path.write_text(json.dumps(stats, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    fig = stats_figure(stats)
    png_path = out / "stats.png"
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [json_path, png_path]


def stats_figure(stats: dict):
    """The 2x3-panel matplotlib figure of ``stats`` (16 x 9 inches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
    title = stats.get("corpus", "corpus")
    fig.suptitle(f"{title}: {stats['n_dialogues']} dialogues, {stats['hours']:.1f} h, "
                 f"{stats['backchannels']} backchannels", fontsize=14)

    top = stats["forms"]["top"][:15]
    a = ax[0, 0]
    a.barh([f["form"] for f in top][::-1], [f["count"] for f in top][::-1], color="tab:blue")
    a.set(title="Backchannel forms (top 15)", xlabel="count", ylabel="form")

    a = ax[0, 1]
    a.bar(list(BC_TYPES), [stats["types"][t]["count"] for t in BC_TYPES], color="tab:green")
    echoes = (stats.get("echo") or {}).get("count") or 0
    if echoes:  # tagged repeats ("south"): backchannels with no type, so the bars add up to the total
        a.bar([f"{ECHO}\n(no type)"], [echoes], color="0.6")
    a.set(title="Backchannel semantic types", xlabel="type", ylabel="count")
    a.tick_params(axis="x", rotation=25)
    for label in a.get_xticklabels():
        label.set(ha="right", rotation_mode="anchor")

    _hist_panel(ax[0, 2], stats["onset_since_speaker_end"], scale=1000,
                title=f"Onset after the floor party's speech end\n(in overlap: {_pct(stats['overlap_share'])}, "
                      "counted at 0 ms)",
                xlabel="onset - floor speech end (ms)", median=stats["onset_since_speaker_end"]["median_s"])

    g = stats["turn_transition_gaps"]
    _hist_panel(ax[1, 0], g, scale=1000, title="Turn-transition gaps (50 ms bins)",
                xlabel="gap (ms; < 0 = overlap)", median=g["median_s"])
    if g["mode_s"] is not None:
        mode_ms = g["mode_s"] * 1000
        ax[1, 0].axvline(mode_ms, color="tab:red", ls=":", label=f"mode {mode_ms:.0f} ms")
        ax[1, 0].legend()

    ibi = stats["inter_backchannel_intervals"]
    _hist_panel(ax[1, 1], ibi, scale=1, title="Inter-backchannel intervals (same listener)",
                xlabel="interval (s)", median=ibi["median_s"], unit="s")

    a = ax[1, 2]
    rates = [r for r in stats["rate"]["per_listener_values"] if r is not None]
    a.hist(rates, bins=20, color="tab:purple")
    overall = stats["rate"]["per_listener_minute"]
    if overall is not None:
        a.axvline(overall, color="k", ls="--", label=f"overall {overall:.2f}/min")
    a.axvline(HUMAN_REFERENCE["backchannels_per_minute"], color="tab:red", ls=":", label="human ref. ~2/min")
    a.set(title="Backchannel rate per listener", xlabel="backchannels per listener-minute",
          ylabel="listeners (dialogue x speaker)")
    a.legend()
    return fig


def _hist_panel(a, hist: dict, *, scale: float, title: str, xlabel: str, median: float | None,
                unit: str = "ms") -> None:
    """One histogram panel; values outside the bins are not drawn, and the x label says how many."""
    edges = np.asarray(hist["bin_edges_s"]) * scale
    a.stairs(hist["counts"], edges, fill=True, color="tab:orange")
    if median is not None:
        a.axvline(median * scale, color="k", ls="--", label=f"median {median * scale:.0f} {unit}")
        a.legend()
    out = [f"{hist['below']} below {edges[0]:.0f}"] * bool(hist["below"]) + \
        [f"{hist['above']} above {edges[-1]:.0f} {unit}"] * bool(hist["above"])
    if out:
        xlabel += f"\n(not shown: {', '.join(out)})"
    a.set(title=title, xlabel=xlabel, ylabel="count")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"
