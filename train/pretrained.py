"""A listener model as a Hugging Face-style folder: what ``backchannel export`` writes and the package ships.

    model/
      config.json        everything that rebuilds the model: the checkpoint's meta entry (backbone name and
                         config, head config, kind), the tokenizer and its fingerprint, the code version,
                         the training data (corpus manifest fingerprints) and where the weights came from
      model.safetensors  backbone, VAP projection and head weights (``backbone.*``, ``vap.*``, ``head.*``)
      policy.json        optional: the dev-tuned ``backchannel.policy.Policy`` settings (``Policy.to_dict``)
      MODEL_CARD.md      optional: training data and licences, measured figures, intended use, limitations

:func:`save_pretrained` writes it, :func:`read_pretrained` reads it back into the same checkpoint dict
``train.modules.load_checkpoint`` returns, checked by the same code (``check_checkpoint``: format, kind,
tokenizer fingerprint, non-finite weights named by tensor, weights that fit the config). Nothing is
unpickled: the weights are safetensors, the rest JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from backchannel.frames import FRAME_S

from .data import file_sha256
from .modules import CheckpointError, check_checkpoint

FORMAT = "backchannel.listener/1"
CONFIG, WEIGHTS, POLICY, CARD = "config.json", "model.safetensors", "policy.json", "MODEL_CARD.md"


def default_model_dir() -> Path:
    """The package's default listener folder (``backchannel/default_listener``, package data); it may hold
    no model yet (:func:`default_model` then names the missing file)."""
    import backchannel

    return Path(backchannel.__file__).resolve().parent / "default_listener"


def default_model() -> Path:
    """:func:`default_model_dir`, checked: raises :class:`CheckpointError` naming the missing file when this
    install carries no default model."""
    folder = default_model_dir()
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise CheckpointError(folder / name, "no such file: this install of backchannel ships no default listener "
                                                 "model (write one with `backchannel export CKPT --out "
                                                 f"{folder}`), or pass load_listener(PATH) a model folder or .ckpt")
    return folder


def _strict_json(obj):
    """JSON types with non-finite floats as None (config.json stays standard JSON)."""
    if isinstance(obj, dict):
        return {str(k): _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def tokenizer_summary(meta: dict) -> dict | None:
    """What the model's text tokenizer is (``vocab_size``, ``k`` words per frame, ``words``, ``fingerprint``);
    None for a model that reads no text."""
    from backchannel.text import tokenizer_for

    tok = tokenizer_for(meta.get("backbone_config") or {})
    if tok is None:
        return None
    return {"vocab_size": tok.vocab_size, "k": tok.k, "words": tok.words, "fingerprint": tok.fingerprint}


def save_pretrained(meta: dict, state: dict, out_dir: str | Path, *, policy=None, card: str | None = None,
                    source: dict | None = None, extra: dict | None = None) -> list[Path]:
    """Write the model folder (module docstring) into ``out_dir`` (created; our four files replaced, nothing
    else touched). ``meta``: a head checkpoint's ``"backchannel"`` entry; ``state``: its weights
    (``backbone.*``, ``vap.*``, ``head.*`` tensors); ``policy``: a ``Policy`` for ``policy.json`` (None: none
    written, an old one removed); ``card``: the ``MODEL_CARD.md`` text; ``source``: where the weights came
    from (checkpoint path, sha256); ``extra``: more ``config.json`` entries (e.g. the policy's source).
    The state is checked as a checkpoint is before anything is written. Returns the files written."""
    import torch
    from backchannel.corpora.dataset import code_version
    from huggingface_hub import save_torch_state_dict

    out = Path(out_dir)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    check_checkpoint({"backchannel": meta, "state_dict": state}, out / WEIGHTS, kind="head")
    out.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "model_type": "backchannel-listener", "library_name": "backchannel",
              "frame_s": FRAME_S, "tokenizer": tokenizer_summary(meta), "code": code_version(),
              "source": source or {},
              "training_data": {"head": meta.get("manifests") or {}, "backbone": meta.get("backbone_manifests") or {}},
              **(extra or {}), "backchannel": meta}
    for name in (WEIGHTS, CONFIG, POLICY, CARD):
        (out / name).unlink(missing_ok=True)
    save_torch_state_dict(state, out, max_shard_size="4GB", metadata={"format": "pt", "backchannel": FORMAT})
    (out / CONFIG).write_text(json.dumps(_strict_json(config), indent=1) + "\n")
    written = [out / WEIGHTS, out / CONFIG]
    if policy is not None:
        (out / POLICY).write_text(json.dumps(policy.to_dict(), indent=1) + "\n")
        written.append(out / POLICY)
    if card is not None:
        (out / CARD).write_text(card)
        written.append(out / CARD)
    return written


def read_pretrained(path: str | Path) -> dict:
    """A model folder read back as ``load_checkpoint`` reads a checkpoint, checked by the same code: a dict with
    ``"backchannel"`` (meta), ``"state_dict"`` (tensors), ``"_path"``, ``"_sha256"`` (of ``model.safetensors``),
    ``"_config"`` (config.json) and ``"_policy"`` (policy.json's settings, or None without one).
    Raises :class:`~backchannel.train.modules.CheckpointError` naming the file for a missing or unreadable
    ``config.json``/``model.safetensors``/``policy.json``, another format, a tokenizer fingerprint that is not
    this package's, a non-finite weight (naming the tensor) or weights that do not fit the config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from backchannel.policy import Policy

    folder = Path(path)
    cfg_path, weights = folder / CONFIG, folder / WEIGHTS
    for need in (cfg_path, weights):
        if not need.is_file():
            raise CheckpointError(need, f"no such file: {folder} is not a listener model folder (it needs "
                                        f"{CONFIG} and {WEIGHTS}; `backchannel export CKPT --out {folder}` writes them)")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(cfg_path, f"not readable JSON: {err}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("backchannel"), dict):
        raise CheckpointError(cfg_path, f"not a listener model config (no format {FORMAT!r} with a 'backchannel' entry)")
    try:
        state = load_file(weights, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(weights, f"not a readable safetensors file (truncated or corrupt?): {err}") from None
    meta = config["backchannel"]
    ckpt = check_checkpoint({"backchannel": meta, "state_dict": state}, weights, kind="head")
    if config.get("tokenizer") != tokenizer_summary(meta):
        raise CheckpointError(cfg_path, f"its tokenizer {config.get('tokenizer')} is not the one its backbone config "
                                        f"reads text with in this package, {tokenizer_summary(meta)}")
    settings = None
    policy_path = folder / POLICY
    if policy_path.is_file():
        try:
            settings = json.loads(policy_path.read_text())
            Policy.from_dict(settings)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
            raise CheckpointError(policy_path, f"not valid policy settings: {err}") from None
    return ckpt | {"_path": str(folder), "_sha256": file_sha256(weights), "_config": config, "_policy": settings}
