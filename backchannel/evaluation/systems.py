"""The systems ``backchannel evaluate`` compares, behind one small protocol.

A :class:`System` maps dataset rows to per-frame outputs (:class:`Outputs`: action probabilities, and
where it has them backchannel-type probabilities and VAP's zero-shot p(shift)); the one decision core,
``backchannel.policy.Policy``, turns those into onsets. ``tunable`` systems get their policy tuned on dev
(``evaluation.tuning``); rules carry a fixed ``policy`` (their cooldown as the refractory time).
"""
from __future__ import annotations

import time
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
    means no output), ``types`` ``[n, 5]`` or None, ``p_shift`` ``[n]`` or None, ``onset`` ``[n]`` or None
    (p(the listener speech that started at an onset is a backchannel), read at frames after an onset:
    ``evaluation.user_onsets``)."""

    probs: np.ndarray
    types: np.ndarray | None = None
    p_shift: np.ndarray | None = None
    onset: np.ndarray | None = None


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


class FrameModel(System):
    """A ``baselines.FrameClassifier`` on handcrafted causal features, fitted on (a frame sample of) train."""

    needs_train = True

    def __init__(self, model: baselines.FrameClassifier, fit_frames: int):
        self.model, self.fit_frames = model, fit_frames
        self.trained_on: dict = {}

    def fit(self, train_rows, progress=False):
        t0 = time.perf_counter()
        feats = [self.model.featurize(r) for r in tqdm(train_rows, desc=f"{self.name}: features (train)", unit="row",
                                                       disable=not progress, leave=False)]
        self.model.fit(feats, [r["action"] for r in train_rows])
        self.trained_on = {"rows": len(train_rows), "frames": int(sum(r["n_frames"] for r in train_rows)),
                           "fit_frames": self.fit_frames, "fit_seconds": time.perf_counter() - t0}
        return self

    def predict(self, rows, progress=False):
        return [Outputs(self.model.predict_proba([self.model.featurize(r)])[0])
                for r in tqdm(rows, desc=self.name, unit="row", disable=not progress, leave=False)]

    def describe(self):
        return {"name": self.name, "train": self.trained_on}


class Logistic(FrameModel):
    """``baselines.LogisticBaseline`` (logistic regression on ``HandcraftedFeatures``)."""

    name = "logistic"

    def __init__(self, fit_frames: int = 300_000, seed: int = 0):
        super().__init__(baselines.LogisticBaseline(max_frames=fit_frames, seed=seed), fit_frames)


class GradientBoosting(FrameModel):
    """``baselines.GradientBoostingBaseline`` (gradient-boosted trees on ``TimingWordFeatures``; the word
    vocabulary is fitted on the train rows before they are featurised)."""

    name = "gbt"

    def __init__(self, fit_frames: int = 1_000_000, seed: int = 0, class_weight: str | None = None):
        super().__init__(baselines.GradientBoostingBaseline(max_frames=fit_frames, seed=seed,
                                                            class_weight=class_weight), fit_frames)
        self.class_weight = class_weight

    def fit(self, train_rows, progress=False):
        self.model.features.fit_vocabulary(train_rows)
        super().fit(train_rows, progress)
        self.trained_on |= {"class_weight": self.class_weight, "vocabulary": len(self.model.features.vocabulary),
                            "iterations": int(self.model.model.n_iter_)}
        return self


def _optional_stream(pred: dict, key: str, n: int, where: str) -> np.ndarray | None:
    """``pred[key]`` as float64 ``[n]`` (None when absent); a wrong shape is an error naming ``where``."""
    v = pred.get(key)
    if v is None:
        return None
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (n,):
        raise ValueError(f"{where}: {key} has shape {v.shape}, expected ({n},)")
    return v


class Head(System):
    """The timing head: a predictor with ``predict_rows(rows) -> [{"action_probs", "type_probs",
    "vap_p_shift", optional "onset_probs"}]`` (``backchannel.train.predict.Predictor``); outputs are checked for shape and range."""

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
                v, u = (_optional_stream(p, k, n, f"{where}{row_id(row)}") for k in ("vap_p_shift", "onset_probs"))
                out.append(Outputs(a, t, v, u))
        return out

    def describe(self):
        d = getattr(self.predictor, "describe", None)
        return d() if callable(d) else repr(self.predictor)


# ----------------------------------------------------------------------------------------------
# Backchannel type baselines (scored on BACKCHANNEL frames with a known type, like a system's types)
# ----------------------------------------------------------------------------------------------
TYPE_BASELINES = ("majority", "prior", "last_word")


class TypeBaseline:
    """A backchannel type per frame, fitted on the train frames labelled with a type (``bc_type >= 0``):
    ``majority`` (the most frequent type), ``prior`` (drawn per frame from the train type shares, seeded),
    ``last_word`` (the most frequent type after the floor party's last word, ``baselines.last_words``;
    words not seen before a typed train frame, and frames with no word yet, get the majority type).
    Ties go to the type listed first in ``lexicon.BC_TYPES``. ``predict`` gives one-hot ``[n, 5]``."""

    def __init__(self, kind: str, seed: int = 0, text_key: str = "text_speaker"):
        if kind not in TYPE_BASELINES:
            raise ValueError(f"unknown type baseline {kind!r} (have {TYPE_BASELINES})")
        self.kind, self.seed, self.text_key = kind, seed, text_key
        self.name = f"type_{kind}"

    def fit(self, train_rows: Sequence[dict]) -> TypeBaseline:
        y = np.concatenate([np.asarray(r["bc_type"], dtype=int) for r in train_rows] or [np.zeros(0, int)])
        counts = np.bincount(y[y >= 0], minlength=len(BC_TYPES))
        if not counts.sum():
            raise ValueError("type baselines: no train frame has a backchannel type")
        self.prior, self.majority = counts / counts.sum(), int(np.argmax(counts))
        self.table: dict[str, int] = {}
        if self.kind == "last_word":
            by_word: dict[str, np.ndarray] = {}
            for r in train_rows:
                t = np.asarray(r["bc_type"], dtype=int)
                (words,) = baselines.last_words(r[self.text_key], len(t), 1)
                for w, k in zip(words[t >= 0], t[t >= 0]):
                    if w is not None:
                        by_word.setdefault(w, np.zeros(len(BC_TYPES), int))[k] += 1
            self.table = {w: int(np.argmax(c)) for w, c in by_word.items()}
        return self

    def predict(self, rows: Sequence[dict]) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        out = []
        for r in rows:
            n = int(r["n_frames"])
            if self.kind == "majority":
                k = np.full(n, self.majority)
            elif self.kind == "prior":
                k = rng.choice(len(BC_TYPES), size=n, p=self.prior)
            else:
                (words,) = baselines.last_words(r[self.text_key], n, 1)
                k = np.array([self.table.get(w, self.majority) for w in words], dtype=int)
            out.append(np.eye(len(BC_TYPES))[k])
        return out
