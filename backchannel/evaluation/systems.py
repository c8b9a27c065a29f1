"""The systems ``backchannel evaluate`` compares, behind one small protocol.

A :class:`System` maps dataset rows to per-frame outputs (:class:`Outputs`: action probabilities, and
where it has them backchannel-type probabilities and VAP's zero-shot p(shift)); the one decision core,
``backchannel.policy.Policy``, turns those into onsets. ``tunable`` systems get their policy tuned on dev
(``evaluation.tuning``); rules carry a fixed ``policy`` (their cooldown as the refractory time).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from backchannel import baselines
from backchannel.corpora.dataset import row_prosody
from backchannel.frames import time_to_frame
from backchannel.lexicon import BC_TYPES
from backchannel.policy import Policy

from .data import duration, row_id

SPEAKER_LOW_PITCH = 5  # prosody columns: the listener's 4 streams, then the speaker's (f0, low pitch, ...)


@dataclass
class Outputs:
    """One row's per-frame outputs: ``probs`` float64 ``[n, 3]`` (SILENT, BACKCHANNEL, TAKE_TURN; a NaN row
    means no output), ``types`` ``[n, 5]`` or None, ``p_shift`` ``[n]`` or None."""

    probs: np.ndarray
    types: np.ndarray | None = None
    p_shift: np.ndarray | None = None


class System:
    """``fit(train_rows)`` (no-op for rules), ``predict(rows) -> [Outputs]``; ``applies(row)`` says whether
    the system can score a row (Ward & Tsukahara needs audio). ``tunable``: its policy is tuned on dev;
    otherwise ``policy`` is fixed. ``take_turn``: it predicts TAKE_TURN (take-turn and shift/hold are
    scored)."""

    name = "system"
    tunable = True
    take_turn = True
    needs_train = False
    policy: Policy | None = None

    def fit(self, train_rows: Sequence[dict], progress: bool = False) -> System:
        return self

    def predict(self, rows: Sequence[dict], progress: bool = False) -> list[Outputs]:
        raise NotImplementedError

    def applies(self, row: dict) -> bool:
        return True

    def describe(self) -> dict | str:
        return self.name


class PauseGate(System):
    """The voice-agent plugin rule (``baselines.pause_gate``), its cooldown as the policy's refractory time."""

    name, tunable, take_turn = "pause_gate", False, False

    def __init__(self, cooldown: float = baselines.PAUSE_GATE_COOLDOWN):
        self.policy = baselines.rule_policy(cooldown)

    def predict(self, rows, progress=False):
        return [Outputs(baselines.as_probs(baselines.pause_gate(r["va_speaker"])))
                for r in tqdm(rows, desc=self.name, unit="row", disable=not progress, leave=False)]


class WardTsukahara(System):
    """Ward & Tsukahara's low-pitch rule on the speaker's precomputed low-pitch flag; only rows with audio."""

    name, tunable, take_turn = "ward_tsukahara", False, False

    def __init__(self):
        self.policy = baselines.rule_policy(baselines.WT_REFRACTORY)

    def applies(self, row):
        return bool(row_prosody(row)[1][:, SPEAKER_LOW_PITCH].any())

    def predict(self, rows, progress=False):
        out = []
        for r in rows:
            prosody, mask = row_prosody(r)
            s = baselines.ward_tsukahara(prosody, mask, r["va_speaker"], r["va_listener"],
                                         low_pitch_col=SPEAKER_LOW_PITCH)
            out.append(Outputs(baselines.as_probs(np.zeros(int(r["n_frames"])) if s is None else s)))
        return out


class RandomCount(System):
    """Ruede et al. (2017)'s reference: a row's true number of backchannels (``count(row)``) at random times
    at least the refractory time apart (``baselines.random_onsets``), as one-frame spikes."""

    name, tunable, take_turn = "random", False, False

    def __init__(self, count: Callable[[dict], int], seed: int, refractory: float = 0.8):
        self.count, self.seed = count, seed
        self.policy = baselines.rule_policy(refractory)

    def predict(self, rows, progress=False):
        rng = np.random.default_rng(self.seed)
        out = []
        for r in rows:
            n = int(r["n_frames"])
            spikes = np.zeros(n)
            times = baselines.random_onsets(self.count(r), duration(r), rng, self.policy.refractory)
            spikes[[time_to_frame(t) for t in times]] = 1.0
            out.append(Outputs(baselines.as_probs(spikes)))
        return out


class Logistic(System):
    """``baselines.LogisticBaseline`` on handcrafted causal features, fitted on (a frame sample of) train."""

    name, needs_train = "logistic", True

    def __init__(self, fit_frames: int = 300_000, seed: int = 0):
        self.model = baselines.LogisticBaseline(max_frames=fit_frames, seed=seed)
        self.fit_frames = fit_frames
        self.trained_on: dict = {}

    def fit(self, train_rows, progress=False):
        feats = [self.model.featurize(r) for r in tqdm(train_rows, desc="logistic: features (train)", unit="row",
                                                       disable=not progress, leave=False)]
        self.model.fit(feats, [r["action"] for r in train_rows])
        self.trained_on = {"rows": len(train_rows), "frames": int(sum(r["n_frames"] for r in train_rows)),
                           "fit_frames": self.fit_frames}
        return self

    def predict(self, rows, progress=False):
        return [Outputs(self.model.predict_proba([self.model.featurize(r)])[0])
                for r in tqdm(rows, desc=self.name, unit="row", disable=not progress, leave=False)]

    def describe(self):
        return {"name": self.name, "train": self.trained_on}


class Head(System):
    """The timing head: a predictor with ``predict_rows(rows) -> [{"action_probs", "type_probs",
    "vap_p_shift"}]`` (``backchannel.train.predict.Predictor``); outputs are checked for shape and range."""

    name = "head"

    def __init__(self, predictor, batch_rows: int = 8, source: str | None = None):
        self.predictor, self.batch_rows, self.source = predictor, batch_rows, source

    def predict(self, rows, progress=False):
        out = []
        where = f"checkpoint {self.source}: " if self.source else ""
        for i in tqdm(range(0, len(rows), self.batch_rows), desc=self.name, unit="batch", disable=not progress,
                      leave=False):
            batch = rows[i : i + self.batch_rows]
            preds = self.predictor.predict_rows(batch)
            if len(preds) != len(batch):
                raise ValueError(f"{where}predictor returned {len(preds)} outputs for {len(batch)} rows")
            for row, p in zip(batch, preds):
                n = int(row["n_frames"])
                a = np.asarray(p["action_probs"], dtype=np.float64)
                t = np.asarray(p["type_probs"], dtype=np.float64)
                if a.shape != (n, 3) or t.shape != (n, len(BC_TYPES)):
                    raise ValueError(f"{where}{row_id(row)}: predictor gave action_probs {a.shape}, type_probs "
                                     f"{t.shape}; expected ({n}, 3) and ({n}, {len(BC_TYPES)})")
                if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
                    raise ValueError(f"{where}{row_id(row)}: action_probs must be finite probabilities in [0, 1]")
                v = p.get("vap_p_shift")
                if v is not None:
                    v = np.asarray(v, dtype=np.float64).reshape(-1)
                    if v.shape != (n,):
                        raise ValueError(f"{where}{row_id(row)}: vap_p_shift has shape {v.shape}, expected ({n},)")
                out.append(Outputs(a, t, v))
        return out

    def describe(self):
        d = getattr(self.predictor, "describe", None)
        return d() if callable(d) else repr(self.predictor)
