"""What both Moshi adapters share (:mod:`backchannel.plugin.moshi_hf` on transformers, :mod:`backchannel.plugin.moshi_lm`
on the ``moshi`` package): a backchannel form as the tokens Moshi must emit (:class:`SpokenForm`), the per-session
floor logic that turns decisions into forced tokens (:class:`FloorControl`) and the batch of listeners driving a
loop (:class:`DuplexControl`). Needs only torch.

**Acting inside the loop.** Each 80 ms step the LM reads one position of its token streams, its
temporal transformer gives a hidden state, and it samples the next position: one text token, then
(depth transformer) one code per audio codebook. Between the hidden state and the sampling we run
the head (``StreamingListener.step_hidden``) and force tokens:

- ``BACKCHANNEL`` (while the user holds the floor): the form's text tokens and its pre-encoded Mimi
  codes are forced, each channel at its own delayed step (below);
- ``SILENT`` while the user holds the floor: the text token is forced to PAD (Moshi's "no word"
  token), and the audio codebooks are forced to ``silence_codes`` if given, else left to the model.
  PAD text alone discourages speech but does not forbid it (Moshi also emits PAD inside words);
  Mimi codes of 80 ms of digital silence make the suppression exact;
- ``TAKE_TURN``: the floor goes to the model: nothing is forced any more (a backchannel already
  under way is completed). The floor returns to the user once the model's own text has been PAD
  for ``yield_after`` consecutive steps after the last TAKE_TURN (its turn has ended); ``None``:
  only the host gives it back (``FloorControl.floor = USER``). Backchannels are spoken only while the
  user holds the floor, and not while another is still being spoken.

**Delays.** Channel ``k`` of the model's own streams (0 = text, 1.. = audio codebooks) lags by
``delays[k]`` steps: the token sampled at step ``c`` belongs to frame ``c + 1 - delays[k]``. A form is
laid out on the model's own (undelayed) frames; decided at step ``c`` it starts at frame
``c + 1 - min(delays)``, so the channel with the smallest delay is forced at step ``c`` itself and
channel ``k`` at step ``c + r + delays[k] - min(delays)`` for the form's frame ``r``. For Moshi (text
and semantic codebook 0 undelayed, acoustic codebooks 1 step late) a form decided at step ``c``
emits EPAD at step ``c``, its word pieces and semantic codes from step ``c + 1``, its acoustic codes
from step ``c + 2``; the undelayed output frames carry it whole.

**Layout of a form** (:meth:`SpokenForm.build`, Moshi's inner monologue): frame 0 = EPAD (announces
a word; audio not forced), frames ``1..`` = the word pieces then PAD in the text, and the form's Mimi
codes, one frame each. ``epad=False`` drops the EPAD frame.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from backchannel.backbones.moshi import TEXT_EPAD_ID, TEXT_PAD_ID
from backchannel.policy import Decision

from .faults import Faults

log = logging.getLogger(__name__)

FREE = -1  # in forced-token tensors: "not forced, the model samples"
USER, MODEL = "user", "model"  # who holds the floor
MIMI_SAMPLE_RATE = 24_000


# ----------------------------------------------------------------------------- forms


@dataclass(frozen=True)
class SpokenForm:
    """A backchannel form as Moshi emits it: ``tokens [1 + n_audio, n_frames]`` (long) on the model's
    own undelayed 80 ms frames; row 0 text ids, rows ``1..`` Mimi codes per codebook; ``FREE`` (-1)
    where nothing is forced."""

    tokens: Tensor

    def __post_init__(self):
        t = self.tokens
        if t.dim() != 2 or t.shape[0] < 2 or t.shape[1] < 1 or t.dtype != torch.long:
            raise ValueError(
                f"SpokenForm.tokens must be a long tensor [1 + n_audio, n_frames], got "
                f"{t.dtype} {tuple(t.shape)}"
            )
        if bool((t < FREE).any()):
            raise ValueError(f"SpokenForm.tokens: negative ids other than FREE ({FREE})")

    @classmethod
    def build(
        cls,
        text_ids: Sequence[int],
        codes: Tensor,
        *,
        epad: bool = True,
        epad_id: int = TEXT_EPAD_ID,
        pad_id: int = TEXT_PAD_ID,
    ) -> SpokenForm:
        """The form from its text ids (Moshi's text tokenizer) and Mimi codes ``[n_audio, L]`` (80 ms
        per column): frame 0 EPAD (if ``epad``), then the pieces padded with PAD over the audio."""
        codes = torch.as_tensor(codes)
        if codes.dim() != 2 or codes.shape[1] < 1:
            raise ValueError(f"SpokenForm.build: codes must be [n_audio, n_frames], got {tuple(codes.shape)}")
        if bool((codes < 0).any()):
            raise ValueError("SpokenForm.build: Mimi codes must be >= 0")
        text = [int(i) for i in text_ids]
        if not text or min(text) < 0:
            raise ValueError(f"SpokenForm.build: need at least one text id >= 0, got {text}")
        lead = 1 if epad else 0
        n = lead + max(len(text), codes.shape[1])
        tokens = torch.full((1 + codes.shape[0], n), FREE, dtype=torch.long)
        tokens[0] = pad_id
        if epad:
            tokens[0, 0] = epad_id
        tokens[0, lead : lead + len(text)] = torch.tensor(text)
        tokens[1:, lead : lead + codes.shape[1]] = codes.long()
        return cls(tokens)

    @property
    def n_frames(self) -> int:
        return self.tokens.shape[1]


def build_forms(
    codes: Mapping[str, Tensor], tokenize: Callable[[str], Sequence[int]], **kwargs
) -> dict[str, SpokenForm]:
    """``{form: SpokenForm}`` from ``{form: Mimi codes [n_audio, L]}`` and the model's text tokenizer
    (e.g. ``sp.encode`` of Moshi's SentencePiece model); kwargs go to :meth:`SpokenForm.build`."""
    return {form: SpokenForm.build(tokenize(form), c, **kwargs) for form, c in codes.items()}


def load_wav(path: str | Path, sample_rate: int = MIMI_SAMPLE_RATE) -> Tensor:
    """A WAV (or any soundfile format) as mono float32 ``[1, 1, samples]`` at ``sample_rate`` Hz."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read audio: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no samples")
    x = data.mean(axis=1)
    if sr != sample_rate:
        g = np.gcd(int(sr), int(sample_rate))
        x = resample_poly(x, sample_rate // g, sr // g).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def form_codes(
    path: str | Path, encode: Callable[[Tensor], Tensor], sample_rate: int = MIMI_SAMPLE_RATE
) -> Tensor:
    """Mimi codes ``[n_audio, L]`` of a recorded form (offline): ``encode`` maps 24 kHz audio
    ``[1, 1, samples]`` to codes ``[1, n_audio, L]`` (``moshi``: ``mimi.encode``; transformers:
    :func:`mimi_encoder`). Trim the recording's silences first: every frame is spoken."""
    with torch.no_grad():
        codes = encode(load_wav(path, sample_rate))
    if codes.dim() != 3 or codes.shape[0] != 1:
        raise ValueError(
            f"{path}: the encoder returned codes of shape {tuple(codes.shape)}, expected [1, K, L]"
        )
    return codes[0].long().cpu()


# ----------------------------------------------------------------------------- floor logic


class FloorControl:
    """One session's floor and forcing schedule (see the module docstring).

    ``forms``: ``{form: SpokenForm}`` (each with ``len(delays) - 1`` audio rows); ``delays``: the
    model's own channels' delays in steps (text first); ``pad_id``: text PAD; ``silence_codes``:
    ``[n_audio]`` codes forced while suppressed (None: audio follows the model); ``floor``: who holds
    it at the start; ``yield_after``: steps of the model's own PAD text after which it yields the floor.
    ``stats`` counts ``backchannel``, ``take_turn``, ``yield`` and the backchannels not said:
    ``dropped_busy`` (another one under way), ``dropped_model_floor``, ``dropped_unknown_form``.
    """

    def __init__(
        self,
        forms: Mapping[str, SpokenForm],
        delays: Sequence[int],
        *,
        pad_id: int = TEXT_PAD_ID,
        silence_codes: Sequence[int] | Tensor | None = None,
        floor: str = USER,
        yield_after: int | None = 25,
        logger: logging.Logger | None = None,
    ):
        self.delays = [int(d) for d in delays]
        if len(self.delays) < 2 or min(self.delays) < 0:
            raise ValueError(f"delays must list text + >= 1 audio codebook, all >= 0, got {list(delays)}")
        n = len(self.delays)
        for name, f in forms.items():
            if f.tokens.shape[0] != n:
                raise ValueError(
                    f"form {name!r}: {f.tokens.shape[0] - 1} audio codebooks, the model has {n - 1}"
                )
        if silence_codes is not None:
            silence_codes = torch.as_tensor(silence_codes, dtype=torch.long).reshape(-1)
            if silence_codes.shape != (n - 1,) or bool((silence_codes < 0).any()):
                raise ValueError(f"silence_codes must be {n - 1} codes >= 0, got {silence_codes.tolist()}")
        if floor not in (USER, MODEL):
            raise ValueError(f"floor must be {USER!r} or {MODEL!r}, got {floor!r}")
        if yield_after is not None and yield_after < 1:
            raise ValueError(f"yield_after must be >= 1 step or None, got {yield_after}")
        self.forms, self.pad_id, self.silence_codes = dict(forms), int(pad_id), silence_codes
        self.initial_floor, self.yield_after = floor, yield_after
        self.log = logger or log
        lead = [d - min(self.delays) for d in self.delays]
        self._lead = lead
        horizon = max((f.n_frames for f in forms.values()), default=1) + max(lead)
        self._empty = torch.full((n, horizon), FREE, dtype=torch.long)
        self.stats: Counter = Counter()
        self.reset()

    def reset(self) -> None:
        """Back to the initial floor with nothing scheduled (``stats`` are kept)."""
        self.floor = self.initial_floor
        self.schedule = self._empty.clone()  # [channels, steps ahead], column 0 = this step
        self._quiet = 0
        self.last_outcome: str | None = None  # what became of this step's BACKCHANNEL or TAKE_TURN decision

    @property
    def speaking(self) -> bool:
        """A backchannel is under way (some of its tokens are still to be forced)."""
        return bool((self.schedule != FREE).any())

    def step(self, decision: Decision | None, prev_text: int | None = None) -> Tensor:
        """This step's forced tokens ``[1 + n_audio]`` (``FREE`` = sampled) from its decision (None:
        SILENT) and the text token the model wrote at the previous step (None if unknown)."""
        if self.floor == MODEL and prev_text is not None:
            self._quiet = self._quiet + 1 if prev_text == self.pad_id else 0
        action = decision.action if decision is not None else "SILENT"
        self.last_outcome = None
        if action == "TAKE_TURN":
            if self.floor == USER:
                self.stats["take_turn"] += 1
            self.last_outcome = "took the floor" if self.floor == USER else "the model holds the floor already"
            self.floor, self._quiet = MODEL, 0
        elif action == "BACKCHANNEL":
            self._backchannel(decision)
        elif self.floor == MODEL and self.yield_after is not None and self._quiet >= self.yield_after:
            self.floor = USER
            self.stats["yield"] += 1
        forced = self.schedule[:, 0].clone()
        if self.floor == USER:
            if forced[0] == FREE:
                forced[0] = self.pad_id
            if self.silence_codes is not None:
                forced[1:] = torch.where(forced[1:] == FREE, self.silence_codes, forced[1:])
        self.schedule = torch.cat([self.schedule[:, 1:], self._empty[:, :1]], dim=1)
        return forced

    def _backchannel(self, decision: Decision) -> None:
        form = self.forms.get(decision.form)
        if self.floor != USER:
            self.stats["dropped_model_floor"] += 1
            self.last_outcome = "not said: the model holds the floor"
        elif self.speaking:
            self.stats["dropped_busy"] += 1
            self.last_outcome = "not said: another backchannel is still being spoken"
        elif form is None:
            self.stats["dropped_unknown_form"] += 1
            self.last_outcome = f"not said: no spoken form for {decision.form!r}"
            if self.stats["dropped_unknown_form"] == 1:
                self.log.warning(
                    "duplex loop: frame %d: no spoken form for %r (forms: %s); not said. Further "
                    "misses are counted in .stats",
                    decision.frame,
                    decision.form,
                    sorted(self.forms),
                )
        else:
            self.stats["backchannel"] += 1
            self.last_outcome = "said"
            n = form.n_frames
            for k, lead in enumerate(self._lead):
                self.schedule[k, lead : lead + n] = form.tokens[k]


class DuplexControl:
    """The listeners of a batch inside a duplex LM loop: one :class:`StreamingListener` and one
    :class:`FloorControl` per batch row. ``__call__(hidden [B, d], prev_text, active)`` runs each
    active row's head on its hidden state and returns the step's forced tokens ``[B, 1 + n_audio]``.

    Fault isolation: the listener makes a failing or late head SILENT itself; anything else that
    raises here leaves that row unforced for the step (logged once per kind, counted in ``faults``).
    ``on_decision(row, decision)`` is called for every decision (its errors are isolated the same way).
    ``last_call_s``: wall time (seconds) of the last call, every row's head, policy and floor together.
    """

    def __init__(
        self,
        listeners,
        forms: Mapping[str, SpokenForm],
        delays: Sequence[int],
        *,
        text_vocab: int,
        audio_vocab: int,
        on_decision: Callable[[int, Decision], None] | None = None,
        logger: logging.Logger | None = None,
        **floor_kwargs,
    ):
        self.listeners = list(listeners) if isinstance(listeners, Sequence) else [listeners]
        if not self.listeners:
            raise ValueError("DuplexControl needs at least one listener")
        for name, f in forms.items():
            text, audio = f.tokens[0], f.tokens[1:]
            if bool((text >= text_vocab).any()) or bool((audio >= audio_vocab).any()):
                raise ValueError(
                    f"form {name!r}: token ids out of range (text < {text_vocab}, "
                    f"audio < {audio_vocab}): {f.tokens.tolist()}"
                )
        sc = floor_kwargs.get("silence_codes")
        if sc is not None and bool((torch.as_tensor(sc) >= audio_vocab).any()):
            raise ValueError(f"silence_codes out of range (< {audio_vocab})")
        self.log = logger or log
        self.floors = [FloorControl(forms, delays, logger=self.log, **floor_kwargs) for _ in self.listeners]
        self.on_decision = on_decision
        self._faults = Faults("duplex loop", self.log, consequence="the step goes on unforced for that row")
        self.last_decisions: list[Decision | None] = [None] * len(self.listeners)
        self.last_call_s = math.nan

    def __len__(self) -> int:
        return len(self.listeners)

    def reset(self, rows: Sequence[int] | None = None) -> None:
        """Reset the listeners and floors of ``rows`` (all by default)."""
        for b in range(len(self)) if rows is None else rows:
            self.listeners[b].reset()
            self.floors[b].reset()
            self.last_decisions[b] = None

    @property
    def faults(self):
        """Faults by kind (a ``Counter``)."""
        return self._faults.counts

    def fault(self, kind: str, row: int, err: BaseException) -> None:
        """Count a fault of ``row`` (logged once per kind)."""
        self._faults.record(kind, err=err, detail=f"row {row}")

    def __call__(
        self,
        hidden: Tensor,
        prev_text: Sequence[int | None] | None = None,
        active: Sequence[bool] | None = None,
    ) -> Tensor:
        start = time.perf_counter()
        B = len(self)
        if hidden.shape[0] != B:
            raise ValueError(f"duplex loop: batch of {hidden.shape[0]} for {B} listeners")
        forced = torch.full((B, len(self.floors[0].delays)), FREE, dtype=torch.long)
        hidden = hidden.detach()
        for b in range(B):
            if active is not None and not active[b]:
                continue
            listener = self.listeners[b]
            decision = None
            try:
                p = next(listener.head.parameters(), None)
                h = hidden[b : b + 1].float() if p is None else hidden[b : b + 1].to(p.device, p.dtype)
                decision = listener.step_hidden(h)
            except Exception as err:  # noqa: BLE001 -- fault isolation: the loop goes on
                self.fault(f"listener:{type(err).__name__}", b, err)
            self.last_decisions[b] = decision
            try:
                prev = None if prev_text is None else prev_text[b]
                forced[b] = self.floors[b].step(decision, None if prev is None or prev < 0 else int(prev))
            except Exception as err:  # noqa: BLE001
                self.fault(f"floor:{type(err).__name__}", b, err)
            if self.on_decision is not None and decision is not None:
                try:
                    self.on_decision(b, decision)
                except Exception as err:  # noqa: BLE001
                    self.fault(f"on_decision:{type(err).__name__}", b, err)
        self.last_call_s = time.perf_counter() - start
        return forced


CONTROL_KEYWORDS = ("silence_codes", "floor", "yield_after", "on_decision", "logger")
"""The keywords a Moshi adapter hands on to :class:`DuplexControl` / :class:`FloorControl`."""


def adapter_control(listeners, forms: Mapping[str, SpokenForm], delays: Sequence[int], *, text_vocab: int,
                    audio_vocab: int, pad_id: int = TEXT_PAD_ID, **kwargs) -> tuple[DuplexControl, dict]:
    """A Moshi adapter's :class:`DuplexControl` from the model's own channels' ``delays`` (text first, in steps),
    its text and audio vocabulary sizes and its text PAD id; the ``CONTROL_KEYWORDS`` among ``kwargs`` go to
    the control, the rest are returned (the adapter's own loop keywords)."""
    control_kw = {k: kwargs.pop(k) for k in CONTROL_KEYWORDS if k in kwargs}
    control = DuplexControl(listeners, forms, delays, text_vocab=text_vocab, audio_vocab=audio_vocab, pad_id=pad_id,
                            **control_kw)
    return control, kwargs


# ----------------------------------------------------------------------------- for hosts and examples


def policy_forms(spoken: Mapping[str, SpokenForm]) -> dict[str, tuple[str, ...]]:
    """The ``Policy.forms`` a loop can say: per type, the default forms (``policy.DEFAULT_FORMS``) that have a
    spoken form; all spoken forms as continuers when none of them is a default form."""
    from backchannel.lexicon import BC_TYPES
    from backchannel.policy import DEFAULT_FORMS

    forms = {t: tuple(f for f in DEFAULT_FORMS[t] if f in spoken) for t in BC_TYPES}
    return forms if any(forms.values()) else {"continuer": tuple(spoken)}


def decision_lines(timeline: Sequence[tuple[Decision, str | None]], stats: Mapping[str, int]) -> list[str]:
    """Console lines for a loop's decisions ``(decision, FloorControl.last_outcome)``: every decision that is
    not SILENT or has a fault, with what became of each backchannel and take-turn, then the floor's totals."""
    lines = []
    for d, outcome in timeline:
        if d.action != "SILENT" or d.fault:
            why = f"  ({outcome})" if d.action != "SILENT" and outcome else ""
            lines.append(f"  frame {d.frame:4d}  {d.time:6.2f} s  {d.action:11s} {d.form or '':8s} {d.fault or ''}{why}")
    decided = sum(d.action == "BACKCHANNEL" for d, _ in timeline)
    dropped = {k: v for k, v in stats.items() if k.startswith("dropped") and v}
    lines.append(f"{decided} BACKCHANNEL decision(s), said {stats.get('backchannel', 0)}"
                 + (f" (not said: {dropped})" if dropped else "")
                 + f"; took the turn {stats.get('take_turn', 0)} time(s), yielded {stats.get('yield', 0)}")
    return lines


def report_loop(out: str | Path, user: Tensor, moshi, timeline: Sequence[tuple[Decision, str | None]],
                stats: Mapping[str, int], sample_rate: int = MIMI_SAMPLE_RATE) -> None:
    """End of a loop run (the examples): write the stereo WAV ``out`` (left: the user's ``[1, 1, samples]``,
    right: Moshi's ``[samples]``, both cut to the shorter), print :func:`decision_lines` and the path."""
    import soundfile

    moshi = np.asarray(moshi, dtype=np.float32)
    n = min(len(moshi), user.shape[-1])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out, np.stack([user[0, 0, :n].cpu().numpy(), moshi[:n]], axis=1), sample_rate)
    for line in decision_lines(timeline, stats):
        print(line)
    print(f"wrote {out} (left: user, right: Moshi)")
