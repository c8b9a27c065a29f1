"""One frame-input schema for every backbone (the idea of lhotse's ``InputStrategy``).

:class:`FrameInputs` owns the keys, dtypes and shapes of what a backbone reads per 80 ms frame, the
prosody width (``frames.PROSODY_DIM``), the masking rule for absent streams and the validation. It has
one builder per source: a dataset row (:meth:`FrameInputs.from_row`), a training crop (:meth:`crop`),
and one streaming frame from audio or from given values (:meth:`FrameInputs.frame`, used by
``plugin.features.StreamingFeatures``). Batches: :meth:`collate` (sequences) and :meth:`stack` (frames).

===================  ==========================  ==================================================
key                  shape (dtype)               meaning
===================  ==========================  ==================================================
``va_listener``      ``[..., T]`` float32        fraction of the frame the listener is voiced (0..1)
``va_speaker``       ``[..., T]`` float32        same for the floor party
``prosody``          ``[..., T, 8]`` float32     f0 (semitones re the party's median), low-pitch flag,
                                                 intensity (dB), voiced fraction; listener's 4, then
                                                 the floor party's 4; 0 where masked
``prosody_mask``     ``[..., T, 8]`` bool        True where the prosody value exists
``text_ids``         ``[..., T, 2, K]`` int64    optional: ``text.TextTokenizer`` ids, listener
                                                 ``[..., 0, :]``, floor party ``[..., 1, :]``
===================  ==========================  ==================================================

Masking rule: an absent prosody stream (no audio) is all masked with value 0 — stored compactly as
``prosody=None`` and expanded when read. NaN never reaches a backbone: a masked NaN becomes 0, an
unmasked one is an error; out-of-range values are clamped to :data:`BOUNDS` by :meth:`clamped` (the
streaming boundary), refused by :meth:`validate` (datasets).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backchannel.frames import PROSODY_DIM, PROSODY_STREAMS

KEYS = ("va_listener", "va_speaker", "prosody", "prosody_mask", "text_ids")
#: Physical range of each prosody stream (per party): semitones, flag, dB, fraction.
STREAM_BOUNDS = {"f0_st": (-48.0, 48.0), "low_pitch": (0.0, 1.0), "intensity_db": (0.0, 150.0), "voiced": (0.0, 1.0)}
BOUNDS = np.array([STREAM_BOUNDS[s] for s in PROSODY_STREAMS] * 2, dtype=np.float32)  # [8, 2]


def pad_stack(tensors: Sequence[Tensor], length: int | None = None, value=0) -> Tensor:
    """Stack ``[T_i, ...]`` tensors into ``[B, T, ...]``, end-padded with ``value``."""
    length = length or max(len(t) for t in tensors)
    out = tensors[0].new_full((len(tensors), length, *tensors[0].shape[1:]), value)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out


@dataclass
class FrameInputs(Mapping):
    """Backbone inputs (see the module docstring). ``prosody=None`` means no audio (all masked);
    ``text_ids=None`` means no text stream. Indexing by key gives the full tensors (a Mapping, so a backbone
    reads ``inputs["prosody"]`` whichever way the inputs were stored)."""

    va_listener: Tensor
    va_speaker: Tensor
    prosody: Tensor | None = None
    prosody_mask: Tensor | None = None
    text_ids: Tensor | None = None

    # -------------------------------------------------------------- Mapping
    def __getitem__(self, key: str) -> Tensor:
        if key == "prosody":
            if self.prosody is None:
                return torch.zeros(*self.va_listener.shape, PROSODY_DIM)
            return self.prosody
        if key == "prosody_mask":
            if self.prosody_mask is None:
                return torch.zeros(*self.va_listener.shape, PROSODY_DIM, dtype=torch.bool)
            return self.prosody_mask
        if key == "text_ids" and self.text_ids is not None:
            return self.text_ids.long()
        if key in ("va_listener", "va_speaker"):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(KEYS if self.text_ids is not None else KEYS[:-1])

    def __len__(self) -> int:
        return len(KEYS) if self.text_ids is not None else len(KEYS) - 1

    @property
    def n_frames(self) -> int:
        return int(self.va_listener.shape[-1])

    @property
    def has_audio(self) -> bool:
        return self.prosody is not None

    # -------------------------------------------------------------- checks
    @staticmethod
    def check_shapes(inputs: Mapping, where: str = "frame inputs", dims: int | None = None) -> None:
        """Raise ``ValueError`` naming ``where`` and the key when ``inputs`` (a ``FrameInputs`` or a dict with
        the same keys) lacks a key or has inconsistent shapes; ``dims``: the number of leading dims of
        ``va_listener`` (2 for ``[B, T]``, 1 for one streaming frame ``[B]``)."""
        missing = [k for k in KEYS[:4] if k not in inputs]
        if missing:
            raise ValueError(f"{where}: missing keys {missing} (expected {list(KEYS[:4])})")
        lead = tuple(inputs["va_listener"].shape)
        if dims is not None and len(lead) != dims:
            raise ValueError(f"{where}: va_listener must have {dims} dims, got shape {lead}")
        want = {"va_speaker": lead, "prosody": lead + (PROSODY_DIM,), "prosody_mask": lead + (PROSODY_DIM,)}
        for key, shape in want.items():
            if tuple(inputs[key].shape) != shape:
                raise ValueError(f"{where}: {key} has shape {tuple(inputs[key].shape)}, expected {shape}")
        if "text_ids" in inputs and tuple(inputs["text_ids"].shape[:-1]) != lead + (2,):
            raise ValueError(f"{where}: text_ids has shape {tuple(inputs['text_ids'].shape)}, "
                             f"expected {lead + (2, 'K')}")

    def validate(self, where: str = "frame inputs") -> FrameInputs:
        """Raise ``ValueError`` naming ``where``, the key and the first bad frame for wrong shapes, non-finite
        values or voice activity outside [0, 1]; returns ``self``."""
        self.check_shapes(self, where)
        for key in ("va_listener", "va_speaker"):
            x = getattr(self, key)
            bad = ~torch.isfinite(x) | (x < 0) | (x > 1)
            if bool(bad.any()):
                i = int(bad.reshape(-1).nonzero()[0])
                raise ValueError(f"{where}: {key} must be finite fractions in [0, 1], got {float(x.reshape(-1)[i])} "
                                 f"at frame {i % max(1, self.n_frames)}")
        if self.prosody is not None:
            bad = self.prosody_mask & ~torch.isfinite(self.prosody)
            if bool(bad.any()):
                raise ValueError(f"{where}: prosody is NaN/inf where its mask says it exists")
        return self

    def clamped(self) -> FrameInputs:
        """Voice activity clamped to [0, 1], prosody to :data:`BOUNDS` where its mask is set and 0 elsewhere;
        NaN/inf voice activity or unmasked prosody is an error. What the streaming boundary feeds a backbone."""
        for key in ("va_listener", "va_speaker"):
            if not bool(torch.isfinite(getattr(self, key)).all()):
                raise ValueError(f"voice activity is not finite ({key} = {getattr(self, key).tolist()})")
        va_l, va_s = self.va_listener.clamp(0.0, 1.0), self.va_speaker.clamp(0.0, 1.0)
        prosody = self.prosody
        if prosody is not None:
            bad = self.prosody_mask & ~torch.isfinite(prosody)
            if bool(bad.any()):
                raise ValueError(f"prosody value {int(bad.reshape(-1).nonzero()[0]) % PROSODY_DIM} is NaN/inf "
                                 "but not masked")
            lo, hi = torch.from_numpy(BOUNDS[:, 0]), torch.from_numpy(BOUNDS[:, 1])
            prosody = torch.where(self.prosody_mask, torch.maximum(torch.minimum(torch.nan_to_num(prosody), hi), lo),
                                  torch.zeros(()))
        return FrameInputs(va_l, va_s, prosody, self.prosody_mask, self.text_ids)

    # -------------------------------------------------------------- builders
    @classmethod
    def from_row(cls, row: Mapping, tokenizer=None, *, compact: bool = False) -> FrameInputs:
        """One dataset row (``[T]``, no batch axis): voice activity, prosody via ``corpora.dataset.row_prosody``
        (audio-less rows stored 0 x 8: absent), and with a ``tokenizer`` the text ids. ``compact``: keep an
        absent prosody as None and text ids as int16 (the training store)."""
        from backchannel.corpora.dataset import row_prosody

        n = int(row["n_frames"])
        va_l = np.asarray(row["va_listener"], dtype=np.float32)
        va_s = np.asarray(row["va_speaker"], dtype=np.float32)
        where = f"row {row.get('corpus')}/{row.get('dialogue')}/{row.get('listener')}"
        if len(va_l) != n or len(va_s) != n:
            raise ValueError(f"{where}: voice activity has {len(va_l)}/{len(va_s)} frames, n_frames is {n}")
        prosody, mask = row_prosody(row)
        if compact and not mask.any():
            p, m = None, None
        else:
            p, m = torch.from_numpy(np.where(mask, np.nan_to_num(prosody), 0.0).astype(np.float32)), torch.from_numpy(mask)
        ids = None
        if tokenizer is not None:
            ids = torch.from_numpy(tokenizer.encode_pair(row["text_listener"], row["text_speaker"]).astype(
                np.int16 if compact and tokenizer.vocab_size < 2 ** 15 else np.int64))
        return cls(torch.from_numpy(va_l), torch.from_numpy(va_s), p, m, ids).validate(where)

    def crop(self, start: int, stop: int) -> FrameInputs:
        """Frames ``start:stop`` of a sequence without a batch axis (a training crop), full tensors."""
        sl = slice(start, stop)
        return FrameInputs(self.va_listener[sl], self.va_speaker[sl], self["prosody"][sl], self["prosody_mask"][sl],
                           None if self.text_ids is None else self.text_ids[sl].long())

    @classmethod
    def frame(cls, va_listener: float, va_speaker: float, prosody=None, prosody_mask=None,
              text_ids=None) -> FrameInputs:
        """One streaming frame, batch 1: voice activity (fractions), optional ``prosody`` (8 values) and
        ``prosody_mask`` (default: where ``prosody`` is finite), optional ``text_ids`` ``[2, K]``. Checked
        and clamped (:meth:`clamped`)."""
        va_l = torch.tensor([float(va_listener)], dtype=torch.float32)
        va_s = torch.tensor([float(va_speaker)], dtype=torch.float32)
        p = m = None
        if prosody is not None:
            with np.errstate(over="ignore"):  # a value beyond float32 becomes inf (refused unless masked)
                pros = np.asarray(prosody, dtype=np.float32).reshape(-1)
            if pros.shape != (PROSODY_DIM,):
                raise ValueError(f"prosody has {pros.size} values, expected {PROSODY_DIM}")
            mask = np.isfinite(pros) if prosody_mask is None else np.asarray(prosody_mask, dtype=bool).reshape(-1)
            if mask.shape != (PROSODY_DIM,):
                raise ValueError(f"prosody_mask has {mask.size} values, expected {PROSODY_DIM}")
            p, m = torch.from_numpy(pros).unsqueeze(0), torch.from_numpy(mask).unsqueeze(0)
        ids = None if text_ids is None else torch.as_tensor(np.asarray(text_ids), dtype=torch.long).unsqueeze(0)
        if ids is not None and (ids.ndim != 3 or ids.shape[1] != 2):
            raise ValueError(f"text_ids has shape {tuple(ids.shape[1:])}, expected (2, K)")
        return cls(va_l, va_s, p, m, ids).clamped()

    @staticmethod
    def collate(items: Sequence[FrameInputs], length: int | None = None) -> tuple[FrameInputs, Tensor]:
        """Sequences ``[T_i]`` -> a batch ``[B, T]`` end-padded (zeros, masks False) and ``lengths [B]``."""
        lengths = torch.tensor([x.n_frames for x in items])
        length = length or int(lengths.max())

        def pad(key):
            return pad_stack([x[key] for x in items], length)

        has_text = [x.text_ids is not None for x in items]
        if any(has_text) and not all(has_text):
            raise ValueError("collate: some items have a text stream and some do not")
        return FrameInputs(pad("va_listener"), pad("va_speaker"), pad("prosody"), pad("prosody_mask"),
                           pad("text_ids") if all(has_text) else None), lengths

    @staticmethod
    def stack(frames: Sequence[FrameInputs]) -> FrameInputs:
        """One-frame inputs of several sessions (batch 1 each) -> one batch ``[B]``."""
        has_text = [f.text_ids is not None for f in frames]
        if any(has_text) and not all(has_text):
            raise ValueError("stack: some frames have a text stream and some do not")
        return FrameInputs(*(torch.cat([f[k] for f in frames]) for k in KEYS[:4]),
                           torch.cat([f["text_ids"] for f in frames]) if all(has_text) else None)
