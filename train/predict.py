"""Per-frame predictions of a trained head checkpoint: the API evaluation uses.

    predictor = load_predictor("runs/head_timing/best.ckpt")
    out = predictor.predict_rows(dataset_rows)   # one dict per row, on the 80 ms clock
    out[0]["action_probs"]   # float32 [n, 3]  SILENT, BACKCHANNEL, TAKE_TURN
    out[0]["type_probs"]     # float32 [n, 5]  lexicon.BC_TYPES
    out[0]["vap_p_shift"]    # float32 [n]     the backbone's zero-shot p(listener speaks next), or None
    predictor.describe()     # backbone, config, checkpoint hash, corpora

Everything is causal: the backbone attends to past frames only and the head is frame-wise or a
forward GRU, so the probabilities at frame ``t`` use frames ``<= t`` only (frame ``t``'s words are
those that ended inside it).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backchannel.backbones.timing import vap_zero_shot

from .data import CachedTokenizer, file_sha256, row_inputs
from .modules import CheckpointError, build_from_meta, load_checkpoint


class Predictor:
    """A loaded head checkpoint (frozen backbone + head), run on whole rows of a prepared dataset."""

    def __init__(self, checkpoint: dict, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.meta = checkpoint["backchannel"]
        if self.meta["kind"] != "head":
            raise CheckpointError(path, f"is a {self.meta['kind']} checkpoint; predictions need a head checkpoint")
        mods = build_from_meta(self.meta, checkpoint["state_dict"])
        self.backbone, self.vap, self.head = mods["extractor"], mods["vap"], mods["head"]
        cfg = self.meta.get("backbone_config") or {}
        self.tokenizer = (CachedTokenizer(cfg["vocab_size"], cfg["text_k"])
                          if self.meta["backbone"] == "timing" and cfg.get("use_text") else None)
        self.sha256 = file_sha256(self.path)
        self.threads = threads

    @torch.inference_mode()
    def predict_row(self, row: Mapping) -> dict:
        """Probabilities for one dataset row (see :meth:`predict_rows`)."""
        inputs = {k: v.unsqueeze(0) for k, v in row_inputs(row, self.tokenizer).items()}
        hidden = self.backbone(inputs)
        action_logits, type_logits = self.head(hidden)
        p_shift = None
        if self.vap is not None:
            p_shift = vap_zero_shot(self.vap(hidden))["p_now"][0].float().numpy().astype(np.float32)
        return {"action_probs": action_logits[0].float().softmax(-1).numpy().astype(np.float32),
                "type_probs": type_logits[0].float().softmax(-1).numpy().astype(np.float32),
                "vap_p_shift": p_shift}

    def predict_rows(self, rows: Iterable[Mapping], progress: bool = False) -> list[dict]:
        """Per row (a dataset row: ``n_frames``, voice activity, prosody, text streams), a dict with
        ``action_probs`` float32 ``[n, 3]``, ``type_probs`` float32 ``[n, 5]`` and ``vap_p_shift``
        float32 ``[n]`` (the backbone's zero-shot probability that the listener holds the floor in the
        next 0.6 s, VAP ``p_now``; ``None`` for the raw-feature head). ``n = row["n_frames"]``."""
        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            rows = list(rows) if not hasattr(rows, "__len__") else rows
            return [self.predict_row(r) for r in tqdm(rows, desc="predict", unit="row", disable=not progress)]
        finally:
            torch.set_num_threads(prev)

    def describe(self) -> dict:
        """What this predictor is: backbone name and config, head config, the run config, checkpoint
        path and sha256, training corpora (fingerprints) and the metrics stored at save time."""
        m = self.meta
        return {"checkpoint": str(self.path), "checkpoint_sha256": self.sha256, "backbone": m["backbone"],
                "backbone_config": m.get("backbone_config"), "backbone_sha256": m.get("backbone_hash"),
                "head_config": m.get("head_config"), "config": m.get("config"), "corpora": m.get("manifests"),
                "metrics": m.get("metrics"), "global_step": m.get("global_step")}


def load_predictor(checkpoint_path: str | Path, threads: int | None = None) -> Predictor:
    """Load a head checkpoint (``backchannel train head``) for prediction; raises ``CheckpointError``
    naming the file when it is missing, corrupt, not a head checkpoint, or inconsistent."""
    return Predictor(load_checkpoint(checkpoint_path, kind="head"), checkpoint_path, threads)
