"""The ``backchannel evaluate`` command line (imports nothing heavy; the work is in ``evaluation.run``)."""
from __future__ import annotations

import argparse

SYSTEMS = ("random", "pause_gate", "ward_tsukahara", "logistic", "gbt", "head")


def _systems_arg(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown systems {unknown or text!r}; choose from {','.join(SYSTEMS)}")
    return names


def _run(args) -> int:
    from backchannel.evaluation.run import cmd_evaluate

    return cmd_evaluate(args)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``backchannel evaluate`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "evaluate", help="evaluate the head and all baselines on the test splits",
        description="Evaluate every system on the official test splits of prepared corpora: policies tuned on "
                    "dev only, both backchannel definitions (isolated, all) side by side.")
    p.add_argument("datasets", nargs="*", help="prepared dataset folders or corpus names resolved to "
                   "DATA/<name> (default: maptask mrda)")
    p.add_argument("--checkpoint", help="timing-head checkpoint, or a model folder of `backchannel export` "
                   "(without it the head is reported n/a)")
    p.add_argument("--out", default="runs/eval", help="report folder (default runs/eval)")
    p.add_argument("--textgrid", metavar="DIALOGUE:LISTENER",
                   help="also write a Praat TextGrid of this test row with true and predicted backchannels")
    p.add_argument("--systems", type=_systems_arg,
                   help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)")
    p.add_argument("--seeds", type=int, default=5, help="random-baseline seeds (default 5)")
    p.add_argument("--train-on", metavar="CORPUS",
                   help="leave-one-corpus-out: fit the trained baselines on this corpus's train split and tune every "
                        "policy on its dev split; score on the --test-on corpora (the head checkpoint must not have "
                        "been trained on them)")
    p.add_argument("--test-on", metavar="CORPUS", action="append",
                   help="with --train-on: a corpus whose test split is scored (repeatable; default: the other of "
                        "maptask, mrda)")
    p.add_argument("--target-rate", type=float, metavar="PER_MIN",
                   help="the calibrated variant's target backchannels per listener-minute (default: the dev split's "
                        "human rate)")
    p.add_argument("--data", default="data", help="folder holding prepared datasets by corpus name (default data)")
    p.set_defaults(func=_run)
    return p
