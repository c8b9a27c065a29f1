"""``backchannel evaluate``: the evaluation protocol of docs/design.md on the official TEST splits, every
system in the same run, every decision setting tuned on DEV only.

Each system (``evaluation.systems``) gives per-frame outputs; the ONE decision core, ``Policy.run``, turns
them into backchannel and take-turn onsets (tuned: ``evaluation.tuning``; rules: their fixed policy); the
scorer (``evaluation.scoring`` on ``backchannel.metrics``) compares them with the gold events of each
backchannel definition (``isolated`` and ``all``, side by side). The tuned policy of each variant is saved
in the report and loaded by ``Policy.from_report`` as is. Outputs in ``out_dir``: ``report.json``,
``report.md``, PNG plots, ``<corpus>-test-onsets.jsonl`` (the headline system: isolated definition,
``rate_matched`` variant) and ``onsets/<corpus>-<system>.jsonl`` for every system.
"""
from __future__ import annotations

_LAZY = {"evaluate": "run", "evaluate_corpus": "run", "EvalSettings": "run", "SYSTEMS": "run", "cmd_evaluate": "run",
         "PolicyGrid": "tuning", "tune_backchannel": "tuning", "System": "systems", "Outputs": "systems"}


def __getattr__(name):  # heavy modules (scikit-learn, matplotlib) load on first use, not at `--help`
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
