"""LightningModules: VAP pretraining of the ``timing`` backbone and the timing head on frozen features.

Checkpoints written by either carry a ``"backchannel"`` entry (:func:`checkpoint_meta`): format, kind
(``backbone`` / ``head``), backbone name and config, the run's config, the corpus manifests it was
trained on (fingerprints) and the metrics at save time. :func:`load_checkpoint` reads a checkpoint
and checks it, raising :class:`CheckpointError` naming the file for anything corrupt or mismatched.
"""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from backchannel.corpora.events import BACKCHANNEL
from lightning.pytorch.callbacks import Callback, Timer
from sklearn.metrics import roc_auc_score

from backchannel.backbones.timing import (
    IGNORE_INDEX,
    FrameFeatures,
    TimingBackbone,
    TimingConfig,
    VAPHead,
    vap_loss,
    vap_zero_shot,
)
from backchannel.evaluation.tuning import PolicyGrid, tune_backchannel
from backchannel.head import TimingHead, count_weights, head_loss
from backchannel.lexicon import BC_TYPES
from backchannel.metrics import frame_scores, shift_hold_scores
from backchannel.text import VOCAB_SIZE, WORDS_PER_FRAME, tokenizer_for

from .data import file_sha256

CHECKPOINT_FORMAT = "backchannel.checkpoint/1"
#: The policy settings the head's dev metric tunes over (a coarse version of ``backchannel evaluate``'s).
DEV_GRID = PolicyGrid(on=tuple(round(0.05 * k, 2) for k in range(1, 20)), smoothing=(1, 3), lead=(0.0, 0.24))
KINDS = ("backbone", "head")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: ``"<path>: <problem>"``."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict:
    """Read a checkpoint written by this package and check it.

    Only tensors and plain data are unpickled (``torch.load(weights_only=True)``): a file holding any
    other pickled object is refused unread. Raises :class:`CheckpointError` naming ``path`` when the file
    is missing, unreadable (truncated, not a PyTorch file), holds such an object, is not a backchannel
    checkpoint, is of another ``kind`` than asked, has a non-finite weight (naming the tensor), or its
    weights do not fit its own recorded config (wrong input dimension, wrong backbone size).
    """
    p = Path(path)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not p.is_file():
        raise CheckpointError(p, "no such checkpoint file")
    try:  # weights_only: tensors and plain data only; a pickled object that could run code is refused
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        hostile = re.search(r"GLOBAL ([\w.]+)", str(err))
        if hostile:
            raise CheckpointError(p, f"refused: it holds a pickled Python object ({hostile.group(1)}), not only "
                                     f"tensors and plain data; loading it could run code") from None
        raise CheckpointError(p, f"not a readable PyTorch checkpoint (truncated or corrupt?): "
                                 f"{type(err).__name__}: {err}") from None
    except Exception as err:
        raise CheckpointError(p, f"not a readable PyTorch checkpoint (truncated or corrupt?): "
                                 f"{type(err).__name__}: {err}") from err
    return check_checkpoint(ckpt, p, kind)


def check_checkpoint(ckpt, path: str | Path, kind: str | None = None) -> dict:
    """The checks of :func:`load_checkpoint` on a checkpoint already read (a dict with a ``"backchannel"``
    meta entry and a ``state_dict``; also what ``train.pretrained`` reads from a model folder). ``path``
    names the source in the errors (:class:`CheckpointError`). Returns ``ckpt`` with ``"_path"`` set."""
    p = path
    meta = ckpt.get("backchannel") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(p, f"not a backchannel checkpoint (no 'backchannel' entry of format "
                                 f"{CHECKPOINT_FORMAT!r})")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(p, f"is a {meta.get('kind')} checkpoint, expected a {kind} checkpoint")
    tokenizer = tokenizer_for(meta.get("backbone_config") or {})
    if meta.get("text_fingerprint") and tokenizer is not None and meta["text_fingerprint"] != tokenizer.fingerprint:
        raise CheckpointError(p, f"its backbone read text with vocabulary {meta['text_fingerprint']}; this version of "
                                 f"the package tokenizes as {tokenizer.fingerprint} (the lexicon or word list changed): "
                                 "retrain the backbone")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(p, "has no state_dict")
    for name, value in ckpt["state_dict"].items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(p, f"tensor {name} holds {bad} non-finite value(s) (NaN or inf)")
    try:
        build_from_meta(meta, ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(p, f"weights do not match the checkpoint's own config: {err}") from err
    ckpt["_path"] = str(p)
    return ckpt


def sub_state(state: dict, prefix: str) -> dict:
    """Entries of ``state`` under ``prefix.`` with the prefix removed."""
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def build_from_meta(meta: dict, state: dict) -> dict:
    """Modules of a checkpoint, weights loaded (strict): ``extractor`` (TimingBackbone or FrameFeatures),
    ``vap`` (VAPHead or None) and, for a head checkpoint, ``head`` (TimingHead)."""
    name = meta["backbone"]
    if name == "timing":
        extractor = TimingBackbone(TimingConfig(**meta["backbone_config"]))
        vap = VAPHead(extractor.hidden_size)
        vap.load_state_dict(sub_state(state, "vap"))
    elif name == "raw":
        extractor, vap = FrameFeatures(), None
    else:
        raise ValueError(f"unknown backbone {name!r}")
    extractor.load_state_dict(sub_state(state, "backbone"))
    out = {"extractor": extractor.eval(), "vap": vap.eval() if vap is not None else None, "head": None}
    if meta["kind"] == "head":
        h = meta["head_config"]
        if h["input_dim"] != extractor.hidden_size:
            raise ValueError(f"head input_dim {h['input_dim']} != backbone hidden size {extractor.hidden_size}")
        head = TimingHead(**h)
        head.load_state_dict(sub_state(state, "head"))
        out["head"] = head.eval()
    return out


def checkpoint_meta(module: L.LightningModule, kind: str) -> dict:
    """The ``"backchannel"`` entry of a checkpoint (see module docstring)."""
    trainer = module._trainer
    dm = trainer.datamodule if trainer is not None else None
    metrics = {}
    if trainer is not None:
        for k, v in trainer.callback_metrics.items():
            try:
                metrics[k] = float(v)
            except (TypeError, ValueError):
                continue
    tokenizer = tokenizer_for(module.backbone_config() or {})
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "backbone": module.backbone_name,
        "backbone_config": module.backbone_config(),
        "text_fingerprint": tokenizer.fingerprint if tokenizer is not None else None,
        "config": _plain({"model": dict(module.hparams), "data": dict(dm.hparams) if dm is not None else None,
                          "run": getattr(module, "run_config", None)}),
        "manifests": getattr(dm, "manifest_summary", None) or {},
        "metrics": metrics,
        "global_step": int(module.global_step),
    }


def _plain(obj):
    """JSON types only (paths and the like as strings), so checkpoints load with ``weights_only=True``."""
    return json.loads(json.dumps(obj, default=str))


def warmup_cosine(progress: float, warmup: float, floor: float = 0.05) -> float:
    """LR multiplier at ``progress`` (0..1 of the run): linear warmup over the first ``warmup``
    fraction, then cosine decay to ``floor``."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    rest = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * rest))


def run_progress(trainer, step: int, total: int) -> float:
    """Fraction of the run done: the step fraction or, when the trainer has a ``max_time``, the
    elapsed fraction of it if larger (on a shared CPU the time cap may come first; the schedule then
    still decays fully instead of being cut off)."""
    progress = step / max(1, total)
    for cb in trainer.callbacks:
        if isinstance(cb, Timer) and cb._duration and cb.start_time() is not None:
            progress = max(progress, cb.time_elapsed() / cb._duration)
    return min(progress, 1.0)


class FinalValidation(Callback):
    """Every run ends validated, whatever stops it: the time cap (``trainer.max_time``), ``max_steps``
    or the last epoch, even where ``check_val_every_n_epoch`` would skip that step. Under a time cap,
    training stops once the time left is shorter than the last validation took (seconds), so the final
    validation fits under the cap (the first one, with nothing to go by, may run past it).
    ``capped`` says whether the time cap ended the run."""

    def __init__(self):
        self.val_s, self.validated_step, self.capped = 0.0, None, False
        self._t0 = self._every = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._t0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.val_s, self.validated_step = time.monotonic() - self._t0, trainer.global_step
        if self._every is not None:  # the forced validation is done: restore the config's schedule
            trainer.check_val_every_n_epoch, self._every = self._every[0], None

    def on_train_batch_end(self, trainer, *args) -> None:
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
        if timer is not None and timer._duration and timer.time_remaining() <= self.val_s:
            trainer.should_stop = self.capped = True  # (Lightning's Timer stops at 0 s left)
        epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        last = ((trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)
                or (epochs is not None and trainer.current_epoch + 1 >= epochs
                    and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch))
        if (trainer.should_stop or last) and trainer.enable_validation \
                and self.validated_step != trainer.global_step:
            # Lightning validates a stopping run only in a validation epoch: make this one of them
            trainer.should_stop = True
            if self._every is None:
                self._every = (trainer.check_val_every_n_epoch,)
            trainer.check_val_every_n_epoch = None


Schedule = Literal["cosine", "onecycle", "constant"]  # of make_optimizer


def make_optimizer(module: L.LightningModule, params, lr: float, weight_decay: float, schedule: str,
                   warmup: float):
    """AdamW (no decay on biases, norms, embeddings) with a per-step schedule: ``cosine`` (linear
    warmup over the ``warmup`` fraction, cosine decay; progress by steps or by ``max_time``, see
    :func:`run_progress`), ``onecycle`` (torch's, by steps) or ``constant``."""
    decay, no_decay = [], []
    for name, p in params:
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "text_" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    trainer = module.trainer
    total = max(1, int(trainer.estimated_stepping_batches))
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total,
                                                    pct_start=max(warmup, 1e-3))
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(run_progress(trainer, step, total), warmup))
    elif schedule == "constant":
        return opt
    else:
        raise ValueError(f"schedule must be cosine, onecycle or constant, got {schedule!r}")
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# --------------------------------------------------------------------------- VAP pretraining

class VAPPretrainModule(L.LightningModule):
    """``TimingBackbone`` + ``VAPHead`` trained with the VAP loss (next 2 s of both parties' voice
    activity, 256 classes). Logs ``train/loss``; on dev ``val/loss`` and per corpus ``val/<corpus>/loss``
    and ``val/<corpus>/shift_hold_auc`` (ROC AUC of the zero-shot ``p_now`` in mutual silences)."""

    backbone_name = "timing"

    def __init__(self, d_model: int = 128, n_layers: int = 4, n_heads: int = 4, window: int = 256,
                 mlp_ratio: int = 4, use_text: bool = True, dropout: float = 0.1, vocab_size: int = VOCAB_SIZE,
                 text_k: int = WORDS_PER_FRAME, text_words: str = "all", lr: float = 1e-3, weight_decay: float = 0.05,
                 warmup: float = 0.05, schedule: Schedule = "cosine"):
        super().__init__()
        self.save_hyperparameters()
        cfg = TimingConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, window=window, mlp_ratio=mlp_ratio,
                           vocab_size=vocab_size, text_k=text_k, use_text=use_text, dropout=dropout,
                           text_words=text_words)
        self.backbone = TimingBackbone(cfg)
        self.vap = VAPHead(d_model)
        self.run_config = None
        self._val = None

    def backbone_config(self) -> dict:
        return asdict(self.backbone.config)

    def forward(self, inputs):
        return self.vap(self.backbone(inputs))

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if self.global_step == 0 and dm is not None and getattr(dm, "train_store", None) is not None:
            h = dm.hparams
            keys = ("vocab_size", "text_k", "use_text", "text_words")
            if [h[k] for k in keys] != [self.hparams[k] for k in keys]:
                raise ValueError(f"data text settings {dict((k, h[k]) for k in keys)} differ from the model's "
                                 f"{dict((k, self.hparams[k]) for k in keys)}")
            stats = dm.train_store.prosody_arrays()
            if stats is not None:
                self.backbone.features.fit(*stats)

    def training_step(self, batch, batch_idx):
        loss = vap_loss(self(batch["inputs"]), batch["vap"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["corpus"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = defaultdict(lambda: {"loss": 0.0, "n": 0, "scores": [], "labels": []})

    def validation_step(self, batch, batch_idx):
        logits = self(batch["inputs"])
        ce = F.cross_entropy(logits.transpose(1, 2), batch["vap"], ignore_index=IGNORE_INDEX, reduction="none")
        p_now = vap_zero_shot(logits)["p_now"]
        for i, corpus in enumerate(batch["corpus"]):
            acc = self._val[corpus]
            valid = batch["vap"][i] != IGNORE_INDEX
            acc["loss"] += float(ce[i][valid].sum())
            acc["n"] += int(valid.sum())
            n = int(batch["lengths"][i])
            s, lab = shift_hold_scores(p_now[i, :n].float().numpy(), batch["hold_pauses"][i], batch["shift_pauses"][i])
            acc["scores"].append(s)
            acc["labels"].append(lab)

    def on_validation_epoch_end(self) -> None:
        total, count = 0.0, 0
        for corpus, acc in sorted(self._val.items()):
            if acc["n"]:
                self.log(f"val/{corpus}/loss", acc["loss"] / acc["n"])
            total, count = total + acc["loss"], count + acc["n"]
            labels = np.concatenate(acc["labels"]) if acc["labels"] else np.zeros(0)
            if len(set(labels.tolist())) == 2:
                self.log(f"val/{corpus}/shift_hold_auc", roc_auc_score(labels, np.concatenate(acc["scores"])))
        if count:
            self.log("val/loss", total / count, prog_bar=True)

    def configure_optimizers(self):
        h = self.hparams
        return make_optimizer(self, self.named_parameters(), h.lr, h.weight_decay, h.schedule, h.warmup)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["backchannel"] = checkpoint_meta(self, "backbone")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("backchannel") or {}
        if meta.get("kind") != "backbone":
            raise ValueError(f"resuming backbone training from a {meta.get('kind')!r} checkpoint")
        if meta.get("backbone_config") != self.backbone_config():
            raise ValueError(f"checkpoint backbone config {meta.get('backbone_config')} differs from this run's "
                             f"{self.backbone_config()}")


# --------------------------------------------------------------------------- head

class HeadModule(L.LightningModule):
    """``TimingHead`` on frozen features: ``backbone="timing"`` (the pretrained backbone at
    ``backbone_ckpt``) or ``"raw"`` (``FrameFeatures``: voice activity and prosody, no backbone and no
    text; the ablation).

    Head options (``backchannel.head.TimingHead``): ``direct`` (the head also reads the frame's voice activity
    and, with ``text_dim > 0`` and a text backbone, its own embedding of the words), ``context`` (the floor
    context, ``head.floor_context``: running speech shares and the floor pause relative to the speaker's own),
    ``onset`` (the user-onset output, trained with weight ``onset_loss_weight`` on
    ``evaluation.user_onsets.onset_targets``).

    Loss: ``head_loss`` with action class weights (``class_weights="inverse"``: inverse frequency of
    the train frames to the power ``class_weight_power``; or an explicit list of 3; or None) and an
    optional focal term ``focal_gamma``. Dev metrics per corpus: frame macro-F1, backchannel AUPRC,
    and backchannel event F1 at ``margin`` (seconds) with the policy tuned on dev itself, against the
    dataset's own backchannel gold (``dev/bc_event_f1`` is their mean over corpora; the checkpoint monitor),
    and with ``onset`` the frame-level ROC AUC of the onset output (``dev/<corpus>/onset_auc``).
    """

    def __init__(self, backbone: Literal["timing", "raw"] = "timing", backbone_ckpt: str | None = None,
                 kind: Literal["gru", "mlp"] = "gru",
                 hidden: int = 64, dropout: float = 0.1, lr: float = 3e-3, weight_decay: float = 0.01,
                 warmup: float = 0.05, schedule: Schedule = "cosine", class_weights: str | list[float] | None = "inverse",
                 class_weight_power: float = 0.5, focal_gamma: float = 0.0, type_loss_weight: float = 0.5,
                 type_weights: Literal["inverse", "balanced"] | None = None,
                 margin: tuple[float, float] = (-0.5, 0.5), direct: bool = False, text_dim: int = 0,
                 context: bool = False, onset: bool = False, onset_loss_weight: float = 0.5):
        super().__init__()
        if class_weights not in (None, "inverse") and (isinstance(class_weights, str) or len(class_weights) != 3):
            raise ValueError(f"class_weights must be 'inverse', None or 3 numbers, got {class_weights!r}")
        if type_weights not in (None, "inverse", "balanced"):
            raise ValueError(f"type_weights must be 'inverse', 'balanced' or None, got {type_weights!r}")
        self.save_hyperparameters()
        self.backbone_name = backbone
        if backbone == "timing":
            if not backbone_ckpt:
                raise ValueError("backbone 'timing' needs --model.backbone_ckpt (a checkpoint of "
                                 "`backchannel train backbone`)")
            if backbone_ckpt == "default" or Path(backbone_ckpt).is_dir():
                # a listener model folder (``default``: the one the package ships): its frozen backbone
                from .pretrained import default_model, read_pretrained

                folder = default_model() if backbone_ckpt == "default" else Path(backbone_ckpt)
                ckpt = read_pretrained(folder)
                meta = ckpt["backchannel"]
                mods = build_from_meta(meta, ckpt["state_dict"])
                if meta.get("backbone") != "timing" or not meta.get("backbone_hash"):
                    raise CheckpointError(folder, "its model has no timing backbone to train a head on")
                self.backbone_hash = meta["backbone_hash"]   # the backbone checkpoint it was trained on
                self.backbone_manifests = meta.get("backbone_manifests")
            elif not Path(backbone_ckpt).is_file():
                raise CheckpointError(backbone_ckpt, "no such backbone checkpoint (--model.backbone_ckpt): "
                                                     "train it first with `backchannel train backbone`, or pass "
                                                     "--model.backbone_ckpt PATH (a backbone .ckpt, a listener "
                                                     "model folder, or 'default' for the shipped model's backbone)")
            else:
                ckpt = load_checkpoint(backbone_ckpt, kind="backbone")
                mods = build_from_meta(ckpt["backchannel"], ckpt["state_dict"])
                self.backbone_hash = file_sha256(backbone_ckpt)
                self.backbone_manifests = ckpt["backchannel"].get("manifests")
            self.backbone, self.vap = mods["extractor"], mods["vap"]
        elif backbone == "raw":
            self.backbone, self.vap = FrameFeatures(), None
            self.backbone_hash = None
            self.backbone_manifests = None
        else:
            raise ValueError(f"backbone must be 'timing' or 'raw', got {backbone!r}")
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        if self.vap is not None:
            for p in self.vap.parameters():
                p.requires_grad_(False)
        text_vocab = self.backbone.config.vocab_size if direct and text_dim and self.use_text else 0
        self.head = TimingHead(self.backbone.hidden_size, hidden=hidden, kind=kind, dropout=dropout, direct=direct,
                               text_vocab=text_vocab, text_dim=text_dim or 16, context=context, onset=onset)
        self.register_buffer("class_weight", torch.ones(3))
        self.register_buffer("type_weight", torch.ones(len(BC_TYPES)), persistent=False)  # not in older checkpoints
        self.run_config = None
        self._val = None

    # ---- features
    @property
    def use_text(self) -> bool:
        return self.backbone_name == "timing" and self.backbone.config.use_text

    def backbone_config(self) -> dict | None:
        return asdict(self.backbone.config) if self.backbone_name == "timing" else None

    def feature_backbone(self):
        """The frozen feature extractor (eval mode); for ``raw`` its normalisation is fitted first."""
        if self.backbone_name == "raw" and self.backbone_hash is None:
            self.fit_raw()
        return self.backbone.eval()

    def fit_raw(self) -> None:
        """Fit ``FrameFeatures`` normalisation on the train rows' prosody; hash its buffers."""
        from backchannel.corpora.dataset import load_prepared, row_prosody

        dm = self.trainer.datamodule
        xs, ms = [], []
        for folder in dm.hparams.corpora:
            ds = load_prepared(folder)[0]["train"].select_columns(["n_frames", "prosody", "prosody_mask"])
            for row in ds:
                x, m = row_prosody(row)
                if m.any():
                    xs.append(x)
                    ms.append(m)
        if xs:
            self.backbone.fit(np.concatenate(xs), np.concatenate(ms))
        self.backbone_hash = "raw-" + hashlib.sha256(
            self.backbone.shift.numpy().tobytes() + self.backbone.scale.numpy().tobytes()).hexdigest()

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        dm = self.trainer.datamodule
        cw = self.hparams.class_weights
        if cw == "inverse":
            self.class_weight.copy_(count_weights(dm.label_counts(), self.hparams.class_weight_power))
        elif cw is not None:
            self.class_weight.copy_(torch.tensor(cw, dtype=torch.float32))
        if self.hparams.type_weights is not None:   # inverse: to class_weight_power; balanced: power 1 (sklearn's)
            power = 1.0 if self.hparams.type_weights == "balanced" else self.hparams.class_weight_power
            self.type_weight.copy_(count_weights(dm.type_counts(), power))

    # ---- training
    def forward(self, features, inputs=None):
        return self.head(features, inputs)

    def training_step(self, batch, batch_idx):
        out = self(batch["features"], batch["inputs"])
        loss = head_loss(out.action, out.bc_type, batch["action"], batch["bc_type"], self.class_weight,
                         self.hparams.focal_gamma, type_weights=self.type_weight,
                         type_loss_weight=self.hparams.type_loss_weight,
                         onset_logits=out.onset, onset=batch["onset"], onset_loss_weight=self.hparams.onset_loss_weight)
        bs = len(batch["row"])
        for key, value in loss.items():
            self.log(f"train/{key}", value, prog_bar=key == "loss", batch_size=bs)
        return loss["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val = defaultdict(list)

    def validation_step(self, batch, batch_idx):
        out = self(batch["features"], batch["inputs"])
        probs = out.action.float().softmax(-1)
        onset = out.onset.float().sigmoid() if out.onset is not None else None
        rows = self.trainer.datamodule.dev_rows
        for i, r in enumerate(batch["row"]):
            n = int(batch["lengths"][i])
            self._val[batch["corpus"][i]].append((probs[i, :n].numpy(), rows[r].action, rows[r].bc_onsets,
                                                  None if onset is None else onset[i, :n].numpy(), rows[r].onset))

    def on_validation_epoch_end(self) -> None:
        f1s = []
        for corpus, items in sorted(self._val.items()):
            probs = np.concatenate([x[0] for x in items])
            labels = np.concatenate([x[1] for x in items])
            fs = frame_scores(labels, probs)
            self.log(f"dev/{corpus}/macro_f1", fs["macro_f1"])
            if not math.isnan(fs["auprc"][BACKCHANNEL]):
                self.log(f"dev/{corpus}/bc_auprc", fs["auprc"][BACKCHANNEL])
            tuned = tune_backchannel([x[0] for x in items], [x[2] for x in items], grid=DEV_GRID,
                                     margin=tuple(self.hparams.margin))
            self.log(f"dev/{corpus}/bc_event_f1", tuned.f1)
            f1s.append(tuned.f1)
            if items[0][3] is not None and items[0][4] is not None:  # (no targets on unheard dev rows)
                p, y = np.concatenate([x[3] for x in items]), np.concatenate([x[4] for x in items])
                if len(np.unique(y[y >= 0])) == 2:
                    self.log(f"dev/{corpus}/onset_auc", roc_auc_score(y[y >= 0], p[y >= 0]))
        if f1s:
            self.log("dev/bc_event_f1", float(np.mean(f1s)), prog_bar=True)

    def configure_optimizers(self):
        h = self.hparams
        return make_optimizer(self, self.head.named_parameters(), h.lr, h.weight_decay, h.schedule, h.warmup)

    # ---- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint_meta(self, "head")
        meta["backbone_hash"] = self.backbone_hash
        meta["backbone_manifests"] = self.backbone_manifests
        meta["head_config"] = self.head.config()
        meta["class_weight"] = self.class_weight.tolist()
        checkpoint["backchannel"] = meta

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("backchannel") or {}
        if meta.get("kind") != "head":
            raise ValueError(f"resuming head training from a {meta.get('kind')!r} checkpoint")
        if meta.get("backbone") != self.backbone_name:
            raise ValueError(f"checkpoint head was trained on backbone {meta.get('backbone')!r}, this run uses "
                             f"{self.backbone_name!r}")
        if self.backbone_name == "timing" and meta.get("backbone_hash") != self.backbone_hash:
            raise ValueError(f"checkpoint head was trained on backbone checkpoint sha256 "
                             f"{str(meta.get('backbone_hash'))[:12]}, this run's backbone_ckpt has "
                             f"{self.backbone_hash[:12]}")
        if self.backbone_name == "raw":
            self.backbone_hash = meta.get("backbone_hash")
        dim = (meta.get("head_config") or {}).get("input_dim")
        if dim != self.backbone.hidden_size:
            raise ValueError(f"checkpoint head input dim {dim} != this backbone's {self.backbone.hidden_size}")
