"""``backchannel evaluate``: every system on the test splits, policies tuned on dev (see the package docstring)."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve

from backchannel import metrics
from backchannel.corpora.events import BACKCHANNEL

from . import scoring, user_onsets
from .cli import SYSTEMS
from .data import (
    backchannel_counts,
    definitions,
    gold_onsets,
    load_rows,
    sample_rows,
    split_summary,
    turn_onsets,
)
from .io import export_textgrid, json_safe, write_onsets_jsonl
from .systems import (
    TYPE_BASELINES,
    GradientBoosting,
    Head,
    Logistic,
    Outputs,
    PauseGate,
    RandomCount,
    System,
    TypeBaseline,
    WardTsukahara,
)
from .tuning import PolicyGrid, tune_backchannel, tune_shift_hold, tune_take_turn

HEADLINE_ORDER = ("head", "gbt", "logistic", "pause_gate", "ward_tsukahara", "random")
VARIANTS = ("f1", "rate_matched")

#: Published figures on OTHER data (docs/design.md): context, not a like-for-like comparison.
REFERENCE = {
    "note": "different data (Switchboard); context, not a like-for-like comparison",
    "ruede2017_switchboard_f1": {"[-200,+200]": 0.237, "[-100,+500]": 0.301, "[-500,+500]": 0.339,
                                 "[0,+1000]": 0.388},
    "ruede2017_random_true_count_f1": 0.071,
    "vap2022_switchboard_weighted_f1": {"backchannel_prediction": 0.723, "shift_hold": 0.899},
    "ruede2017_timing_mos": {"random": 2.33, "model": 3.48, "real": 4.20},
}


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation options. Times in seconds.

    ``tune_margin``: the margin whose dev F1 is maximised; ``grid``: the policy settings tried;
    ``rate_factor``: the ``rate_matched`` variant keeps dev rates within ``[human / f, human * f]``;
    ``seeds``: random-baseline seeds; ``logistic_train_frames``: train frames featurised (whole rows,
    drawn at random up to this total); ``logistic_fit_frames``: frames the regression is fitted on;
    ``gbt_fit_frames``, ``gbt_class_weight``: the gradient-boosting baseline's (same train rows);
    ``onsets_variant``: which tuned variant goes into the onsets files; ``calibrate``: also score the
    ``calibrated`` variant, the ``f1`` policy with online rate calibration (``Policy.target_rate``) at
    ``target_rate`` backchannels per listener-minute (None: the dev split's human rate of each definition);
    ``stated_rates``: ``{definition: rate}``, a ``calibrated_stated`` variant at a rate stated for the test
    domain (``evaluate(train_on=)`` states the target corpus's train-split rate); ``calibration_carry``: the
    calibration carried across the test rows as one deployment (False: a fresh one per row, the ablation).
    """

    margins: tuple = metrics.MARGINS
    tune_margin: tuple = (-0.5, 0.5)
    grid: PolicyGrid = field(default_factory=PolicyGrid)
    rate_factor: float = 1.25
    seeds: tuple = (0, 1, 2, 3, 4)
    logistic_train_frames: int = 1_500_000
    logistic_fit_frames: int = 300_000
    gbt_fit_frames: int = 1_000_000
    gbt_class_weight: str | None = None
    onsets_variant: str = "rate_matched"
    batch_rows: int = 8
    calibrate: bool = True
    target_rate: float | None = None
    stated_rates: dict | None = None
    calibration_carry: bool = True


def make_systems(names: Sequence[str], predictor=None, settings: EvalSettings | None = None,
                 checkpoint: str | None = None) -> dict[str, System | None]:
    """The requested systems by name (``random`` is built per definition and seed; the head is None
    without a predictor)."""
    settings = settings or EvalSettings()
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    made = {"pause_gate": PauseGate, "ward_tsukahara": WardTsukahara,
            "logistic": lambda: Logistic(settings.logistic_fit_frames),
            "gbt": lambda: GradientBoosting(settings.gbt_fit_frames, class_weight=settings.gbt_class_weight),
            "head": lambda: Head(predictor, settings.batch_rows, checkpoint) if predictor is not None else None,
            "random": lambda: None}
    return {n: made[n]() for n in SYSTEMS if n in names}


# ----------------------------------------------------------------------------------------------
# One system
# ----------------------------------------------------------------------------------------------
def _variant_figures(policy, runs, gold, rows, settings: EvalSettings, with_take_turn: bool,
                     definition: str = "isolated") -> tuple[dict, list]:
    onsets = [r.backchannel_onsets for r in runs]
    out = {"policy": policy.to_dict(), "events": scoring.event_report(onsets, gold, settings.margins),
           "cadence": scoring.cadence(onsets, gold, rows)}
    if with_take_turn:
        out["take_turn"] = scoring.take_turn_report(runs, rows, settings.margins, definition)
    return out, onsets


def tuned_system(system: System, dev: list[Outputs], test: list[Outputs], dev_rows, test_rows,
                 settings: EvalSettings, progress: bool = True, defs: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Figures of a tunable system: frame level, then per backchannel definition and variant the tuned
    policy, its test events, cadence and take-turn figures; shift/hold; types. ``(report, extras)``."""
    rep = {"status": "ok", "frame": scoring.frame_report([o.probs for o in test], test_rows), "definitions": {}}
    extras = {"onsets": {}, "forms": {}, "bc_probs": [o.probs[:, BACKCHANNEL] for o in test]}
    dev_p, test_p = [o.probs for o in dev], [o.probs for o in test]
    headline_runs = None
    defs = list(defs or definitions(dev_rows + test_rows))
    for definition in defs:
        dev_gold = [gold_onsets(r, definition) for r in dev_rows]
        gold = [gold_onsets(r, definition) for r in test_rows]
        variants = {}
        for variant in VARIANTS:
            if progress:
                print(f"  {system.name}: tuning ({definition}, {variant}) on dev", file=sys.stderr, flush=True)
            factor = settings.rate_factor if variant == "rate_matched" else None
            tuned = tune_backchannel(dev_p, dev_gold, grid=settings.grid, margin=settings.tune_margin,
                                     rate_factor=factor)
            policy, dev_fig = tuned.policy, tuned.dev()
            if system.take_turn:
                turns = [turn_onsets(r, definition) for r in dev_rows]
                policy, dev_fig["take_turn_f1"] = tune_take_turn(policy, dev_p, turns, grid=settings.grid,
                                                                 margin=settings.tune_margin)
            runs = [policy.run(o.probs, o.types) for o in test]
            fig, onsets = _variant_figures(policy, runs, gold, test_rows, settings, system.take_turn, definition)
            variants[variant] = {"dev": dev_fig} | fig
            if variant == "f1":
                variants |= _calibrated(policy, dev_p, backchannel_counts(dev_rows)[definition]["rate_per_minute"],
                                        test, gold, test_rows, settings, definition)
            if definition == defs[0] and variant == _variant(settings):
                extras["onsets"][variant] = onsets
                extras["forms"][variant] = [[r.said[f][1] for f in r.backchannel_frames] for r in runs]
                extras["take_turn_onsets"] = [r.take_turn_onsets for r in runs]
                extras["variant"], headline_runs, extras["policy"] = variant, runs, policy
        rep["definitions"][definition] = {"variants": variants}
    y = np.concatenate([r["action"] for r in test_rows]) == BACKCHANNEL
    if y.any():
        prec, rec, _ = precision_recall_curve(y, np.nan_to_num(np.concatenate(test_p)[:, BACKCHANNEL]))
        step = max(1, len(prec) // 400)
        extras["pr_curve"] = (prec[::step], rec[::step], rep["frame"]["auprc"][BACKCHANNEL])
    if system.take_turn:
        policy = extras["policy"]
        ba_policy, dev_ba = tune_shift_hold(policy, dev_p, dev_rows, grid=settings.grid)
        rep["shift_hold"] = {
            "balanced_accuracy": scoring.shift_hold_accuracy([ba_policy.run(p) for p in test_p], test_rows),
            "take_turn_level": ba_policy.take_turn, "dev_balanced_accuracy": dev_ba,
            "balanced_accuracy_shipped": scoring.shift_hold_accuracy(headline_runs, test_rows),
            "shipped_take_turn_level": policy.take_turn, "variant": extras["variant"],
            **scoring.shift_hold_auc([r.p_take_turn for r in headline_runs], test_rows)}
        if all(o.p_shift is not None for o in test):
            rep["shift_hold"]["vap_zero_shot"] = scoring.shift_hold_auc([o.p_shift for o in test], test_rows)
    if all(o.types is not None for o in test):
        rep["types"] = scoring.type_report([o.types for o in test], test_rows)
        rep["types"]["log_loss"] = scoring.type_log_loss([o.types for o in test], test_rows)
    if all(o.onset is not None for o in test):
        heard = system.predict(user_onsets.heard(test_rows))  # the onset output on the user's speech heard
        rep["user_onsets"] = user_onsets.user_onsets(test_rows, definitions(test_rows), [o.onset for o in heard])
    return rep, extras


def _calibrated(policy, dev_p, dev_rate: float, test: list[Outputs], gold, test_rows, settings: EvalSettings,
                definition: str) -> dict:
    """The ``calibrated`` (and ``calibrated_stated``) variants: ``policy`` with online rate calibration at the
    target rate (``Policy.calibrated``: warm-up level from the dev probabilities, no labels), run as one
    deployment: the calibration carried across the test rows in dataset order. Each with its ``target_rate``
    (backchannels per listener-minute)."""
    if not settings.calibrate:
        return {}
    targets = {}
    rate = settings.target_rate if settings.target_rate is not None else dev_rate
    if rate > 0:  # (a dev split without backchannels has no rate to calibrate to)
        targets["calibrated"] = (rate, "stated (--target-rate)" if settings.target_rate is not None
                                 else "the dev split's human rate")
    stated = (settings.stated_rates or {}).get(definition)
    if stated:
        targets["calibrated_stated"] = (stated, "stated for the test domain")
    out = {}
    for name, (rate, source) in targets.items():
        cal = policy.calibrated(rate, dev_p)
        carried = cal.new_calibration()
        runs = [cal.run(o.probs, o.types, calibration=carried if settings.calibration_carry else None) for o in test]
        fig, _ = _variant_figures(cal, runs, gold, test_rows, settings, False, definition)
        levels = np.concatenate([r.threshold for r in runs]) if runs else np.zeros(0)
        out[name] = {"dev": {}, "target_rate": float(rate), "target_source": source,
                     "level": {"median": float(np.median(levels)) if len(levels) else math.nan,
                               "p10": float(np.percentile(levels, 10)) if len(levels) else math.nan,
                               "p90": float(np.percentile(levels, 90)) if len(levels) else math.nan}} | fig
    return out


def rule_system(system: System, test_rows, settings: EvalSettings, defs: Sequence[str] | None = None
                ) -> tuple[dict, dict]:
    """Figures of a rule with its fixed policy, on the test rows it applies to."""
    keep = [i for i, r in enumerate(test_rows) if system.applies(r)]
    if not keep:
        return {"status": "n/a: no audio"}, {}
    rows = [test_rows[i] for i in keep]
    test = system.predict(rows)
    runs = [system.policy.run(o.probs) for o in test]
    rep = {"status": "ok", "rows": len(rows), "rows_total": len(test_rows),
           "frame": scoring.rule_frame_report([o.probs for o in test], rows), "definitions": {}}
    if len(rows) < len(test_rows):
        rep["note"] = f"only the {len(rows)} of {len(test_rows)} test rows with the speaker's audio"
    onsets = [r.backchannel_onsets for r in runs]
    for definition in defs or definitions(test_rows):
        fig, _ = _variant_figures(system.policy, runs, [gold_onsets(r, definition) for r in rows], rows, settings,
                                  False)
        rep["definitions"][definition] = {"variants": {"rule": fig}}
    full = [np.zeros(0)] * len(test_rows)
    for i, o in zip(keep, onsets):
        full[i] = o
    return rep, {"onsets": {"rule": full}, "variant": "rule", "rows": keep,
                 "bc_probs": _spread(keep, [o.probs[:, BACKCHANNEL] for o in test], test_rows)}


def _spread(keep, values, rows):
    out = [np.zeros(int(r["n_frames"])) for r in rows]
    for i, v in zip(keep, values):
        out[i] = v
    return out


def random_system(test_rows, settings: EvalSettings, defs: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Per definition, the true count of each row at random times, one run per seed; event figures
    averaged over seeds (``f1_std`` their spread)."""
    rep = {"status": "ok", "seeds": list(settings.seeds), "definitions": {}}
    extras = {}
    for definition in defs or definitions(test_rows):
        gold = [gold_onsets(r, definition) for r in test_rows]
        runs = []
        for seed in settings.seeds:
            system = RandomCount(lambda r, d=definition: len(gold_onsets(r, d)), seed, settings.grid.refractory)
            runs.append([system.policy.run(o.probs).backchannel_onsets for o in system.predict(test_rows)])
        per_seed = [scoring.event_report(run, gold, settings.margins) for run in runs]
        events = {}
        for label in per_seed[0]:
            d = {k: float(np.mean([s[label][k] for s in per_seed])) for k in per_seed[0][label]}
            d["f1_std"] = float(np.std([s[label]["f1"] for s in per_seed]))
            events[label] = d
        rep["definitions"][definition] = {"variants": {"true_count": {
            "policy": system.policy.to_dict(), "events": events, "cadence": scoring.cadence(runs[0], gold, test_rows)}}}
        if not extras:
            extras = {"onsets": {"true_count": runs[0]}, "variant": "true_count"}
    return rep, extras


def _variant(settings: EvalSettings) -> str:
    return settings.onsets_variant if settings.onsets_variant in VARIANTS else VARIANTS[0]


# ----------------------------------------------------------------------------------------------
# One corpus, all corpora
# ----------------------------------------------------------------------------------------------
def evaluate_corpus(corpus: str, dev_rows: list[dict], test_rows: list[dict], *, train_rows=None,
                    predictor=None, systems: Sequence[str] = SYSTEMS, settings: EvalSettings | None = None,
                    progress: bool = True, checkpoint: str | None = None,
                    definition: str | None = None) -> tuple[dict, dict]:
    """Every requested system on one corpus: ``(report section, extras)``.

    ``train_rows``: for systems that train (``logistic``: "n/a: no train rows" without them);
    ``predictor``: for ``head`` ("n/a: no checkpoint" without it). Policies are tuned on ``dev_rows``
    only; ``test_rows`` are scored. ``extras[system]`` holds test onsets and plot data. ``definition``: the
    backchannel definition the rows' frame labels follow (scored first: the headline; default ``isolated``).
    """
    settings = settings or EvalSettings()
    built = make_systems(systems, predictor, settings, checkpoint)
    if not test_rows or not dev_rows:
        raise ValueError(f"{corpus}: needs dev and test rows, got {len(dev_rows)} dev and {len(test_rows)} test")
    section = {"dev": split_summary(dev_rows), "test": split_summary(test_rows),
               "definitions": definitions(dev_rows + test_rows, definition or "isolated"), "systems": {},
               "seconds": {}}
    defs = section["definitions"]
    extras = {}

    def say(msg):
        if progress:
            print(f"[{corpus}] {msg}", file=sys.stderr, flush=True)

    for name, system in built.items():
        t0 = time.perf_counter()
        say(f"{name} ...")
        if name == "random":
            rep, ext = random_system(test_rows, settings, defs)
        elif name == "head" and system is None:
            rep, ext = {"status": "n/a: no checkpoint"}, {}
        elif not system.tunable:
            rep, ext = rule_system(system, test_rows, settings, defs)
        elif system.needs_train and not train_rows:
            rep, ext = {"status": "n/a: no train rows"}, {}
        else:
            system.fit(train_rows or [], progress)
            dev = system.predict(dev_rows, progress)
            test = system.predict(test_rows, progress)
            rep, ext = tuned_system(system, dev, test, dev_rows, test_rows, settings, progress, defs)
            rep["system"] = system.describe()
        section["systems"][name] = rep
        section["seconds"][name] = time.perf_counter() - t0
        if rep.get("status") == "ok":
            keep = ext.get("rows", range(len(test_rows)))
            ext["offsets"] = scoring.offsets([ext["onsets"][ext["variant"]][i] for i in keep],
                                             [test_rows[i] for i in keep])
            extras[name] = ext
        say(f"{name}: {rep.get('status')} ({section['seconds'][name]:.1f} s)")
    section["ratios"] = _ratios(section["systems"])
    section["user_onsets"] = {"lexicon": user_onsets.user_onsets(test_rows, definitions(test_rows))} | {
        n: r["user_onsets"] for n, r in section["systems"].items() if "user_onsets" in r}
    if train_rows:
        section["types"] = type_section(train_rows, test_rows, section["systems"], (settings.seeds or (0,))[0])
    section["headline"] = next((s for s in HEADLINE_ORDER if s in extras), None)
    return section, extras


def type_section(train_rows, test_rows, systems: dict, seed: int = 0) -> dict:
    """Backchannel type figures (``scoring.type_report``) of the type baselines fitted on ``train_rows``
    and of every system that predicts types; ``best_baseline``: the baseline with the highest macro-F1.
    Empty when no train frame has a type."""
    if not any(np.any(np.asarray(r["bc_type"]) >= 0) for r in train_rows):
        return {}
    out = {f"type_{k}": scoring.type_report(TypeBaseline(k, seed).fit(train_rows).predict(test_rows), test_rows)
           for k in TYPE_BASELINES}
    best = max(out, key=lambda k: out[k].get("macro_f1", -1.0))
    out |= {n: r["types"] for n, r in systems.items() if "types" in r}
    prior = TypeBaseline("prior").fit(train_rows).prior
    prior_loss = scoring.type_log_loss([np.tile(prior, (int(r["n_frames"]), 1)) for r in test_rows], test_rows)
    return {"systems": out, "best_baseline": best, "prior_log_loss": prior_loss}


def _ratios(systems: dict) -> dict:
    """Per definition, event F1 of each tuned system's variants over the pause gate's, per margin."""
    gate = systems.get("pause_gate", {})
    if gate.get("status") != "ok":
        return {}
    out = {}
    for definition, entry in gate["definitions"].items():
        base = entry["variants"]["rule"]["events"]
        for name, rep in systems.items():
            if rep.get("status") != "ok" or name in ("pause_gate", "random", "ward_tsukahara"):
                continue
            for variant, v in rep["definitions"][definition]["variants"].items():
                out.setdefault(definition, {})[f"{name}/{variant}_over_pause_gate"] = {
                    label: (v["events"][label]["f1"] / base[label]["f1"]) if base[label]["f1"] > 0 else math.nan
                    for label in base}
    return out


def _pick_timeline_row(rows, key) -> int | None:
    """The row ``key`` = (dialogue, listener) if given (None if absent), else the row with most backchannels."""
    if key is not None:
        return next((i for i, r in enumerate(rows) if (str(r["dialogue"]), str(r["listener"])) == key), None)
    return int(np.argmax([len(r["bc_onsets"]) for r in rows])) if rows else None


def _plot_data(corpus, test_rows, extras, section, idx) -> dict:
    definition = section["definitions"][0]
    gold = [gold_onsets(r, definition) for r in test_rows]
    data = {"corpus": corpus, "definition": definition, "human_offsets": scoring.offsets(gold, test_rows),
            "offsets": {}, "pr_curves": {}, "pr_points": {}, "timeline": None, "types": {}}
    types = section.get("types")
    if types:
        shown = [n for n in types["systems"] if not n.startswith("type_")] + [types["best_baseline"]]
        data["types"] = {n: types["systems"][n] for n in shown if "confusion" in types["systems"][n]}
    for name, ext in extras.items():
        data["offsets"][f"{name} ({ext['variant']})"] = ext["offsets"]
        if "pr_curve" in ext:
            data["pr_curves"][name] = ext["pr_curve"]
        frame = section["systems"][name].get("frame", {})
        if "f1_backchannel" in frame:
            data["pr_points"][name] = (frame["precision_backchannel"], frame["recall_backchannel"])
    if idx is not None:
        row = test_rows[idx]
        data["timeline"] = {
            "row": {k: row[k] for k in ("corpus", "dialogue", "listener", "n_frames", "va_speaker", "va_listener")
                    if k in row} | {"bc_onsets": gold[idx]},
            "probs": {n: e["bc_probs"][idx] for n, e in extras.items() if "bc_probs" in e},
            "onsets": {n: e["onsets"][e["variant"]][idx] for n, e in extras.items()
                       if idx in list(e.get("rows", range(len(test_rows))))}}
    return data


def _parse_row_key(key) -> tuple[str, str] | None:
    if key is None:
        return None
    if isinstance(key, str):
        if ":" not in key:
            raise ValueError(f"--textgrid wants DIALOGUE:LISTENER, got {key!r}")
        d, lst = key.split(":", 1)
        return d, lst
    return tuple(key)


def _load_predictor(checkpoint):
    if checkpoint is None or hasattr(checkpoint, "predict_rows"):
        return checkpoint
    from backchannel.train.predict import load_predictor

    return load_predictor(checkpoint)


def _train_rows(dsd, corpus: str, settings: EvalSettings, progress: bool) -> list[dict] | None:
    """A seeded sample of whole train rows (``logistic_train_frames``) for the trained systems and the type
    baselines; None for an empty train split."""
    if not len(dsd["train"]):
        return None
    keep = sample_rows(dsd["train"]["n_frames"], settings.logistic_train_frames)
    return load_rows(dsd["train"], f"{corpus}: train rows", progress, keep)


def split_rates(ds) -> dict:
    """Human backchannel rate per listener-minute of a dataset split, per definition (reads only the event
    columns)."""
    cols = [c for c in ("n_frames", "bc_onsets", "bc_isolated") if c in ds.column_names]
    return {d: c["rate_per_minute"] for d, c in backchannel_counts(ds.select_columns(cols).to_list()).items()}


def transfer_check(predictor, source: str, target: str) -> dict:
    """What the head of a leave-one-corpus-out run was trained on. Raises ``ValueError`` when its head saw
    the target corpus's labels; notes a backbone pretrained (self-supervised, no labels) on the target's train
    split."""
    if predictor is None:
        return {}
    meta = getattr(predictor, "meta", None) or {}
    head = sorted(meta.get("manifests") or {})
    backbone = sorted(meta.get("backbone_manifests") or {})
    if target in head:
        raise ValueError(f"--test-on {target}: the head checkpoint was trained on {target} labels (its training "
                         f"corpora: {', '.join(head)}); a leave-one-corpus-out run needs a head trained without "
                         f"{target}, e.g. `backchannel train head --config train/configs/head_timing_{source}.yaml`")
    out = {"head_corpora": head, "backbone_corpora": backbone}
    if target in backbone:
        out["note"] = (f"the frozen backbone was pretrained on {', '.join(backbone)} (voice-activity projection, "
                       f"self-supervised: no backchannel labels), {target}'s train split among them")
    return out


def evaluate(dataset_dirs, checkpoint=None, out_dir: str | Path = "runs/eval", *, systems: Sequence[str] = SYSTEMS,
             margins=metrics.MARGINS, settings: EvalSettings | None = None, textgrid=None, data_root="data",
             progress: bool = True, plots: bool = True, train_on=None) -> dict:
    """Evaluate every system on the test split of each prepared dataset in ``dataset_dirs`` (folders or
    corpus names under ``data_root``); write the report, plots and onsets files to ``out_dir``.

    ``checkpoint``: a head checkpoint path, or an object with ``predict_rows`` (see ``systems.Head``).
    ``textgrid``: ``"DIALOGUE:LISTENER"`` of a test row to export as ``<corpus>-<dialogue>-<listener>.TextGrid``
    with the headline system's onsets (its timeline is also the one plotted). ``train_on``: a prepared dataset
    (folder or name): leave-one-corpus-out mode, every trained system fitted on its train split and every
    policy tuned on its dev split, then scored on each ``dataset_dirs`` test split; sections are keyed
    ``<source>-to-<target>``, the head must not have been trained on the target (:func:`transfer_check`), and
    the ``calibrated_stated`` variant calibrates to the target's train-split human rate. Returns the report.
    """
    from backchannel.corpora.dataset import code_version, load_prepared, resolve_prepared

    from . import report as report_mod

    settings = replace(settings or EvalSettings(), margins=tuple(tuple(m) for m in margins))
    make_systems(systems)  # unknown names fail before any work
    if isinstance(dataset_dirs, (str, Path)):
        dataset_dirs = [dataset_dirs]
    paths = [resolve_prepared(d, data_root) for d in dataset_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = _parse_row_key(textgrid)
    t_start = time.perf_counter()
    predictor = _load_predictor(checkpoint) if "head" in systems else None
    source = None if checkpoint is None or hasattr(checkpoint, "predict_rows") else str(checkpoint)
    report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "code": code_version(),
              "checkpoint": source, "systems": [s for s in SYSTEMS if s in systems],
              "settings": json_safe(asdict(settings)), "reference": REFERENCE, "corpora": {}, "files": []}
    plot_data, found = {}, False
    src = None
    if train_on is not None:  # leave-one-corpus-out: the source's train and dev rows serve every target
        t0 = time.perf_counter()
        src_path = resolve_prepared(train_on, data_root)
        src_dsd, src_manifest = load_prepared(src_path)
        src_name = src_manifest.get("corpus") or src_path.name
        src = {"name": src_name, "path": src_path, "manifest": src_manifest,
               "dev": load_rows(src_dsd["dev"], f"{src_name}: dev rows", progress),
               "train": _train_rows(src_dsd, src_name, settings, progress), "seconds": time.perf_counter() - t0}
        report["train_on"] = {"corpus": src_name, "path": str(src_path), "fingerprint": src_manifest.get("fingerprint")}
    for path in paths:
        t0 = time.perf_counter()
        dsd, manifest = load_prepared(path)
        corpus = manifest.get("corpus") or path.name
        run_settings, transfer = settings, None
        if src is not None:
            if corpus == src["name"]:
                raise ValueError(f"--train-on {src['name']} --test-on {corpus}: the same corpus (leave-one-corpus-out "
                                 "needs another one; for in-domain figures drop --train-on)")
            labels = (manifest.get("label_settings"), src["manifest"].get("label_settings"))
            if labels[0] != labels[1]:
                raise ValueError(f"{path}: prepared with label settings {labels[0]}, but {src['path']} with "
                                 f"{labels[1]}: prepare both with the same settings")
            transfer = {"train_on": src["name"], "test_on": corpus, **transfer_check(predictor, src["name"], corpus),
                        "target_train_rates": split_rates(dsd["train"]) if len(dsd["train"]) else {}}
            if settings.stated_rates is None:
                run_settings = replace(settings, stated_rates=transfer["target_train_rates"] or None)
            dev_rows, train_rows = src["dev"], src["train"]
            name = f"{src['name']}-to-{corpus}"
        else:
            dev_rows = load_rows(dsd["dev"], f"{corpus}: dev rows", progress)
            train_rows = _train_rows(dsd, corpus, settings, progress)
            name = corpus
        test_rows = load_rows(dsd["test"], f"{corpus}: test rows", progress)
        load_s = time.perf_counter() - t0 + (src["seconds"] if src is not None else 0.0)
        section, extras = evaluate_corpus(name, dev_rows, test_rows, train_rows=train_rows, predictor=predictor,
                                          systems=systems, settings=run_settings, progress=progress, checkpoint=source,
                                          definition=(manifest.get("label_settings") or {}).get("bc_definition"))
        section["dataset"] = {"path": str(path), "fingerprint": manifest.get("fingerprint"),
                              "label_settings": manifest.get("label_settings")}
        if transfer is not None:
            section["transfer"] = transfer
        corpus = name
        section["seconds"]["load"] = load_s
        files = []
        for name, ext in extras.items():
            keep = ext.get("rows", range(len(test_rows)))
            rows = [test_rows[i] for i in keep]
            onsets = [ext["onsets"][ext["variant"]][i] for i in keep]
            files.append(write_onsets_jsonl(out_dir / "onsets" / f"{corpus}-{name}.jsonl", rows, onsets))
            if name == section["headline"]:
                forms = ext.get("forms", {}).get(ext["variant"])
                files.append(write_onsets_jsonl(out_dir / f"{corpus}-test-onsets.jsonl", rows, onsets,
                                                [{"forms": f} for f in forms] if forms else None))
                section["onsets_file"] = {"path": f"{corpus}-test-onsets.jsonl", "system": name,
                                          "variant": ext["variant"], "definition": section["definitions"][0]}
        idx = _pick_timeline_row(test_rows, key) if key is not None else None
        found = found or idx is not None
        if idx is not None and section["headline"]:
            ext = extras[section["headline"]]
            files.append(export_textgrid(test_rows[idx], ext["onsets"][ext["variant"]][idx],
                                         out_dir / f"{corpus}-{key[0]}-{key[1]}.TextGrid"))
        report["files"] += [str(f.relative_to(out_dir)) for f in files]
        report["corpora"][corpus] = section
        plot_data[corpus] = _plot_data(corpus, test_rows, extras, section,
                                       idx if idx is not None else _pick_timeline_row(test_rows, None))
    if key is not None and not found:
        raise ValueError(f"--textgrid {key[0]}:{key[1]}: no such test row (dialogue:listener) in "
                         f"{', '.join(report['corpora'])}")
    report["seconds_total"] = time.perf_counter() - t_start
    report = json_safe(report)
    report["files"] += report_mod.write_report(report, out_dir, plot_data if plots else None) + ["report.json"]
    tmp = out_dir / ".report.json.tmp"
    import json

    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out_dir / "report.json")
    return report


def cmd_evaluate(args) -> int:
    from backchannel.corpora.errors import CorpusError

    grid = PolicyGrid()
    try:
        if args.target_rate is not None and not (math.isfinite(args.target_rate) and args.target_rate > 0):
            raise ValueError(f"--target-rate must be > 0 backchannels per minute, got {args.target_rate}")
        settings = EvalSettings(seeds=tuple(range(args.seeds)), grid=grid, target_rate=args.target_rate)
        datasets = args.datasets or ["maptask", "mrda"]
        if args.test_on and not args.train_on:
            raise ValueError("--test-on needs --train-on (the corpus the systems are trained and tuned on)")
        if args.train_on:
            if args.datasets and args.test_on:
                raise ValueError("give the test corpora either as --test-on or as arguments, not both")
            datasets = args.test_on or args.datasets or [d for d in ("maptask", "mrda")
                                                         if Path(d).name != Path(args.train_on).name]
        report = evaluate(datasets, args.checkpoint, args.out, systems=args.systems or list(SYSTEMS),
                          settings=settings, textgrid=args.textgrid, data_root=args.data, train_on=args.train_on)
    except (FileNotFoundError, ValueError, CorpusError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .report import summary_lines

    for line in summary_lines(report):
        print(line)
    print(f"report written to {Path(args.out) / 'report.md'} (+ report.json, plots, onsets)")
    return 0
