"""``backchannel train backbone|head --config X.yaml [--ckpt_path last.ckpt] [overrides]`` (LightningCLI).

    backchannel train backbone --config train/configs/backbone_timing.yaml
    backchannel train backbone --config train/configs/backbone_timing.yaml --ckpt_path runs/backbone_timing/last.ckpt
    backchannel train head --config train/configs/head_timing.yaml --trainer.max_epochs 5 --model.hidden 96

Overrides are LightningCLI's (``--model.*``, ``--data.*``, ``--trainer.*``, ``--seed_everything``,
``--threads``). ``--ckpt_path`` resumes the same run (step count, optimizer, schedule); the checkpoint
is checked first (:func:`backchannel.train.modules.load_checkpoint`) and must match the config.
Multi-GPU / multi-node training is Lightning's: set ``trainer.accelerator``, ``trainer.devices``,
``trainer.num_nodes`` and ``trainer.strategy: ddp`` in the YAML (the crop samplers shard by rank).
``backchannel train head --help`` (or ``backbone``) lists every LightningCLI option.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
HELP = {"backbone": "VAP-pretrain the timing backbone on the train splits",
        "head": "train the timing head on cached frozen-backbone features"}
_USAGE = ("{text}. --config: a YAML path or a packaged config ({names}); --ckpt_path PATH (alias --resume) "
          "resumes a run from its checkpoint. Every other option is LightningCLI's (--model.*, --data.*, "
          "--trainer.*, --seed_everything, --threads), listed by `backchannel train {kind} --help`; "
          "`--config NAME --print_config` prints a config's full values.")


def description(kind: str) -> str:
    """The help text of ``backchannel train KIND``."""
    return _USAGE.format(text=HELP[kind], kind=kind, names=", ".join(packaged_configs()))


def _cli_class(link_text: bool):
    import torch
    from lightning.pytorch.cli import LightningCLI

    class TrainCLI(LightningCLI):
        """LightningCLI with ``--threads`` (torch CPU threads, default 2)."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
            if link_text:  # the pretraining data's tokenizer follows the backbone config
                for key in ("use_text", "vocab_size", "text_k", "text_words"):
                    parser.link_arguments(f"model.{key}", f"data.{key}")

        def before_instantiate_classes(self) -> None:
            if self.config.get("threads"):
                torch.set_num_threads(int(self.config["threads"]))

    return TrainCLI


class TrainConfigError(ValueError):
    """A config or LightningCLI override that cannot be used; the message is one line naming the flag
    (or the config file) and the problem."""


def _config_of(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def run(kind: str, argv: list[str], ckpt_path: str | None = None):
    """Train a ``backbone`` or a ``head`` with LightningCLI arguments ``argv`` (``--config X`` and
    overrides); resume from ``ckpt_path`` if given. Returns the LightningCLI object (trainer, model).

    Raises :class:`TrainConfigError` (one line) for an unknown, missing or ill-typed argument and for a
    config value the model or data module rejects; :class:`CheckpointError` for a bad checkpoint.
    Every run ends validated, with a ``best.ckpt`` (:class:`FinalValidation`, :func:`ensure_best`)."""
    from argparse import ArgumentError

    from lightning.pytorch.utilities import disable_possible_user_warnings

    from .data import HeadDataModule, PretrainDataModule
    from .modules import CheckpointError, FinalValidation, HeadModule, VAPPretrainModule, load_checkpoint

    if kind not in ("backbone", "head"):
        raise ValueError(f"kind must be 'backbone' or 'head', got {kind!r}")
    resume = load_checkpoint(ckpt_path, kind=kind) if ckpt_path else None
    disable_possible_user_warnings()
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # the seed is in config.yaml
    model_cls, data_cls = (VAPPretrainModule, PretrainDataModule) if kind == "backbone" else (HeadModule, HeadDataModule)
    prog = f"backchannel train {kind}"
    argv0, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when sys.argv also holds arguments
    try:
        cli = _cli_class(kind == "backbone")(model_cls, data_cls, run=False, args=list(argv),
                                             seed_everything_default=0, save_config_kwargs={"overwrite": True},
                                             trainer_defaults={"deterministic": True},
                                             auto_configure_optimizers=False,  # the modules configure their own
                                             parser_kwargs={"prog": prog, "exit_on_error": False,
                                                            "description": description(kind)})
    except ArgumentError as err:
        message = " ".join(str(err).split())
        raise TrainConfigError(f"{prog}: {message} (all options: {prog} --help)") from err
    except CheckpointError:
        raise
    except ValueError as err:  # a value the model or data module rejects (they check their arguments)
        raise TrainConfigError(f"{_config_of(argv) or prog}: {' '.join(str(err).split())}") from err
    finally:
        sys.argv = argv0
    if resume is not None:
        _check_resume(resume, cli.model, ckpt_path)
    cli.model.run_config = json.loads(json.dumps(cli.config.as_dict(), default=str))  # plain types only
    cli.final_validation = FinalValidation()
    cli.trainer.callbacks.append(cli.final_validation)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ValueError as err:
        if ckpt_path and "checkpoint" in str(err):
            raise CheckpointError(ckpt_path, str(err)) from err
        raise
    cli.best_written_from_last = ensure_best(cli.trainer)
    return cli


def ensure_best(trainer) -> bool:
    """Write the checkpoint callback's ``best.ckpt`` from the final weights when no monitored value was
    ever logged (no validation ran); True if it did."""
    cb = trainer.checkpoint_callback
    if cb is None or cb.monitor is None or cb.dirpath is None:
        return False
    if cb.best_model_path and Path(cb.best_model_path).is_file():
        return False
    metrics = {**trainer.callback_metrics, "epoch": trainer.current_epoch, "step": trainer.global_step}
    path = Path(cb.format_checkpoint_name(metrics))
    trainer.save_checkpoint(path)
    cb.best_model_path = str(path)
    return True


def summary(cli) -> str:
    """The end of a run, as ``backchannel train`` prints it: steps, why it stopped, the last logged
    metrics, and the paths of ``best.ckpt`` and ``last.ckpt``."""
    trainer = cli.trainer
    cb = trainer.checkpoint_callback
    fv = getattr(cli, "final_validation", None)
    if fv is not None and fv.capped:
        why = "time cap trainer.max_time reached"
    elif trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        why = f"trainer.max_steps={trainer.max_steps} reached"
    else:
        why = f"trainer.max_epochs={trainer.max_epochs} done"
    lines = [f"training done: {trainer.global_step} steps, {trainer.current_epoch} epoch(s); {why}"]
    if fv is not None:
        lines.append(f"  last validation at step {fv.validated_step}" if fv.validated_step is not None
                     else "  no validation ran (no dev data, or validation disabled)")
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if v.numel() == 1}
    lines += [f"  {k:<28} {v:.4f}" for k, v in metrics.items()]
    if cb is not None:
        if cb.best_model_path:
            score = f" ({cb.monitor} {float(cb.best_model_score):.4f})" if cb.best_model_score is not None else ""
            note = (f" (final weights: no {cb.monitor} was logged)"
                    if getattr(cli, "best_written_from_last", False) else score)
            lines.append(f"best.ckpt: {cb.best_model_path}{note}")
        if cb.last_model_path:
            lines.append(f"last.ckpt: {cb.last_model_path}")
    return "\n".join(lines)


def _check_resume(ckpt: dict, model, path) -> None:
    """The checkpoint must have been written by the same model config (sizes, backbone)."""
    from .modules import CheckpointError

    meta = ckpt["backchannel"]
    if meta.get("backbone") != model.backbone_name:
        raise CheckpointError(path, f"was trained with backbone {meta.get('backbone')!r}, the config uses "
                                    f"{model.backbone_name!r}")
    if meta.get("backbone_config") != model.backbone_config():
        raise CheckpointError(path, f"backbone config {meta.get('backbone_config')} differs from the config's "
                                    f"{model.backbone_config()}")
    if meta["kind"] == "head":
        dim = meta["head_config"]["input_dim"]
        if dim != model.backbone.hidden_size:
            raise CheckpointError(path, f"head input dim {dim} differs from the backbone's {model.backbone.hidden_size}")
        if model.backbone_name == "timing" and meta.get("backbone_hash") != model.backbone_hash:
            raise CheckpointError(path, f"was trained on backbone checkpoint sha256 {str(meta.get('backbone_hash'))[:12]}, "
                                        f"the config's backbone_ckpt has {model.backbone_hash[:12]}")
        for key in ("kind", "hidden"):
            if meta["head_config"][key] != model.hparams[key]:
                raise CheckpointError(path, f"head {key} {meta['head_config'][key]!r} differs from the config's "
                                            f"{model.hparams[key]!r}")


def packaged_configs() -> list[str]:
    """Names of the configs in ``train/configs/``."""
    return sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))


def resolve_config(name: str) -> str:
    """A config path, or the name of a packaged config (``head_timing`` -> ``train/configs/head_timing.yaml``)."""
    p = Path(name)
    if p.is_file():
        return str(p)
    packaged = CONFIG_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if packaged.is_file():
        return str(packaged)
    raise FileNotFoundError(f"{name}: no such config file (packaged configs: {', '.join(packaged_configs())})")


def cmd_train(args) -> int:
    from .modules import CheckpointError

    prog = f"backchannel train {args.train_command}"
    try:
        if args.help:  # LightningCLI's help: every --model.*, --data.*, --trainer.* option
            try:
                run(args.train_command, [*(["--config", resolve_config(args.config)] if args.config else []),
                                         "--help"])
            except SystemExit as done:
                return int(done.code or 0)
            return 0
        if not args.config:
            raise TrainConfigError(f"{prog}: the --config argument is required (a YAML path or a packaged "
                                   f"config: {', '.join(packaged_configs())})")
        cli = run(args.train_command, ["--config", resolve_config(args.config), *args.overrides], args.ckpt_path)
    except (CheckpointError, FileNotFoundError, TrainConfigError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    print(summary(cli), flush=True)
    return 0


class _PassThroughParser(argparse.ArgumentParser):
    """Collects every argument it does not know into ``overrides`` (LightningCLI's own options)."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        ns.overrides = list(rest)
        return ns, []


def register(subparsers) -> None:
    """Add ``train backbone`` and ``train head`` to the top-level ``backchannel`` subparsers."""
    train = subparsers.add_parser("train", help="pretrain the timing backbone (VAP) or train the timing head",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = train.add_subparsers(dest="train_command", required=True, parser_class=_PassThroughParser)
    for kind, text in HELP.items():
        # -h/--help is LightningCLI's (cmd_train): it lists the --model.*, --data.*, --trainer.* options
        p = tsub.add_parser(kind, help=text, allow_abbrev=False, add_help=False,
                            description=description(kind))
        p.add_argument("-h", "--help", action="store_true", help="LightningCLI's options (model, data, trainer)")
        p.add_argument("--config", help="YAML config (a path, or a packaged name like "
                       f"{'backbone_timing' if kind == 'backbone' else 'head_timing'})")
        p.add_argument("--ckpt_path", "--resume", dest="ckpt_path", help="resume this run from a checkpoint")
        p.set_defaults(func=cmd_train)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m backchannel.train.cli backbone --config ...``."""
    parser = argparse.ArgumentParser(prog="backchannel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
