"""``backchannel train backbone|head --config X.yaml [--ckpt_path last.ckpt] [overrides]`` (LightningCLI).

    backchannel train backbone --config train/configs/backbone_timing.yaml
    backchannel train backbone --config train/configs/backbone_timing.yaml --ckpt_path runs/backbone_timing/last.ckpt
    backchannel train head --config train/configs/head_timing.yaml --trainer.max_epochs 5 --model.hidden 96

Overrides are LightningCLI's (``--model.*``, ``--data.*``, ``--trainer.*``, ``--seed_everything``,
``--threads``). ``--ckpt_path`` resumes the same run (step count, optimizer, schedule); the checkpoint
is checked first (:func:`backchannel.train.modules.load_checkpoint`) and must match the config.
Multi-GPU / multi-node training is Lightning's: set ``trainer.accelerator``, ``trainer.devices``,
``trainer.num_nodes`` and ``trainer.strategy: ddp`` in the YAML (the crop samplers shard by rank).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _cli_class(link_text: bool):
    import torch
    from lightning.pytorch.cli import LightningCLI

    class TrainCLI(LightningCLI):
        """LightningCLI with ``--threads`` (torch CPU threads, default 2)."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
            if link_text:  # the pretraining data's tokenizer follows the backbone config
                for key in ("use_text", "vocab_size", "text_k"):
                    parser.link_arguments(f"model.{key}", f"data.{key}")

        def before_instantiate_classes(self) -> None:
            if self.config.get("threads"):
                torch.set_num_threads(int(self.config["threads"]))

    return TrainCLI


def run(kind: str, argv: list[str], ckpt_path: str | None = None):
    """Train a ``backbone`` or a ``head`` with LightningCLI arguments ``argv`` (``--config X`` and
    overrides); resume from ``ckpt_path`` if given. Returns the LightningCLI object (trainer, model)."""
    from lightning.pytorch.utilities import disable_possible_user_warnings

    from .data import HeadDataModule, PretrainDataModule
    from .modules import CheckpointError, HeadModule, VAPPretrainModule, load_checkpoint

    if kind not in ("backbone", "head"):
        raise ValueError(f"kind must be 'backbone' or 'head', got {kind!r}")
    resume = load_checkpoint(ckpt_path, kind=kind) if ckpt_path else None
    disable_possible_user_warnings()
    model_cls, data_cls = (VAPPretrainModule, PretrainDataModule) if kind == "backbone" else (HeadModule, HeadDataModule)
    argv0, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when sys.argv also holds arguments
    try:
        cli = _cli_class(kind == "backbone")(model_cls, data_cls, run=False, args=list(argv),
                                             seed_everything_default=0, save_config_kwargs={"overwrite": True},
                                             trainer_defaults={"deterministic": True},
                                             parser_kwargs={"prog": f"backchannel train {kind}"})
    finally:
        sys.argv = argv0
    if resume is not None:
        _check_resume(resume, cli.model, ckpt_path)
    cli.model.run_config = json.loads(json.dumps(cli.config.as_dict(), default=str))  # plain types only
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ValueError as err:
        if ckpt_path and "checkpoint" in str(err):
            raise CheckpointError(ckpt_path, str(err)) from err
        raise
    return cli


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


def resolve_config(name: str) -> str:
    """A config path, or the name of a packaged config (``head_timing`` -> ``train/configs/head_timing.yaml``)."""
    p = Path(name)
    if p.is_file():
        return str(p)
    packaged = CONFIG_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if packaged.is_file():
        return str(packaged)
    raise FileNotFoundError(f"{name}: no such config file (packaged configs: "
                            f"{', '.join(sorted(x.stem for x in CONFIG_DIR.glob('*.yaml')))})")


def cmd_train(args) -> int:
    from .modules import CheckpointError

    try:
        run(args.train_command, ["--config", resolve_config(args.config), *args.overrides], args.ckpt_path)
    except (CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
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
    for kind, text in (("backbone", "VAP-pretrain the timing backbone on the train splits"),
                       ("head", "train the timing head on cached frozen-backbone features")):
        p = tsub.add_parser(kind, help=text, allow_abbrev=False, description=f"{text}. Overrides: LightningCLI "
                            "arguments, e.g. --trainer.max_steps 100 --model.lr 1e-3 --threads 2.")
        p.add_argument("--config", required=True, help="YAML config (a path, or a packaged name like "
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
