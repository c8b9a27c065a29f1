"""Look at a prepared dataset: a text summary and a timeline plot of one listener's frames and events."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backchannel.frames import FRAME_S
from backchannel.lexicon import BC_TYPES

from .errors import CorpusError


def _dataset_folder(dsd) -> str:
    """The folder a loaded ``DatasetDict`` was read from (for error messages)."""
    for split in dsd.values():
        if split.cache_files:
            return str(Path(split.cache_files[0]["filename"]).parent.parent)
    return "dataset"


def _pick_row(dsd, dialogue: str | None, listener: str | None) -> dict:
    """``plugin.simulate.pick_row``: the matching row (most backchannels first); ``CorpusError`` if none."""
    from backchannel.plugin.simulate import pick_row

    return pick_row(dsd, _dataset_folder(dsd), dialogue, listener)


def timeline_window(n_frames: int, start: float, seconds: float, where: str | Path = "dataset"):
    """``(start, end, duration)`` seconds of a timeline window on a row of ``n_frames``, the end clipped to
    the row; ``CorpusError`` naming ``where`` for a window outside it."""
    duration = n_frames * FRAME_S
    if not seconds > 0:
        raise CorpusError(where, f"--seconds must be > 0, got {seconds}")
    if not 0 <= start < duration:
        raise CorpusError(where, f"--start {start} s is past the end of the row ({duration:.1f} s)"
                          if start >= duration else f"--start must be >= 0, got {start}")
    return start, min(start + seconds, duration), duration


def describe(dsd, manifest: dict, dialogue: str | None = None, listener: str | None = None) -> str:
    """Manifest summary, plus one row's events when ``dialogue`` is given."""
    lines = [f"corpus {manifest.get('corpus')}  (made by backchannel {manifest.get('code', {}).get('version', '?')})",
             f"label settings: {manifest.get('label_settings')}"]
    for split in ("train", "dev", "test"):
        ds = dsd[split]
        minutes = sum(ds["n_frames"]) * FRAME_S / 60 if len(ds) else 0.0
        n_bc = sum(len(x) for x in ds["bc_onsets"]) if len(ds) else 0
        rate = n_bc / minutes if minutes else float("nan")
        lines.append(f"{split:<5}: {len(ds):4d} listener rows, {minutes:7.1f} listener-min, "
                     f"{n_bc:5d} backchannels ({rate:.2f}/listener-min)")
    if dialogue is not None:
        row = _pick_row(dsd, dialogue, listener)
        action = np.asarray(row["action"])
        lines.append(f"\n{row['dialogue']} listener {row['listener']} vs floor {row['floor']}: {row['n_frames']} frames, "
                     f"labels SILENT {int((action == 0).sum())} / BACKCHANNEL {int((action == 1).sum())} / "
                     f"TAKE_TURN {int((action == 2).sum())}")
        for t, form, kind, src in list(zip(row["bc_onsets"], row["bc_forms"], row["bc_types"], row["bc_sources"]))[:30]:
            lines.append(f"  {t:8.2f} s  {form:<14} {kind:<16} ({src})")
    return "\n".join(lines)


def plot_timeline(dsd, dialogue: str | None, listener: str | None, out: str | Path,
                  start: float = 0.0, seconds: float = 60.0) -> Path:
    """PNG of voice activity of both parties, the action labels and the mined events over a time window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = _pick_row(dsd, dialogue, listener)
    start, end, duration = timeline_window(row["n_frames"], start, seconds, _dataset_folder(dsd))
    f0, f1 = int(start / FRAME_S), int(np.ceil(end / FRAME_S))
    t = np.arange(row["n_frames"])[f0:f1] * FRAME_S
    fig, axes = plt.subplots(3, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    axes[0].fill_between(t, 0, np.asarray(row["va_speaker"])[f0:f1], step="post", color="tab:blue", alpha=0.7)
    axes[0].set_ylabel(f"floor\n{row['floor']}")
    axes[1].fill_between(t, 0, np.asarray(row["va_listener"])[f0:f1], step="post", color="tab:orange", alpha=0.7)
    axes[1].set_ylabel(f"listener\n{row['listener']}")
    colors = {"SILENT": "white", "BACKCHANNEL": "tab:green", "TAKE_TURN": "tab:red"}
    action = np.asarray(row["action"])[f0:f1]
    for k, (name, c) in enumerate(colors.items()):
        if k:
            axes[2].fill_between(t, 0, (action == k).astype(float), step="post", color=c, alpha=0.6, label=name)
    axes[2].set_ylabel("label\n(500 ms)")
    axes[2].legend(loc="upper right", fontsize=8)
    for onset, form, kind in zip(row["bc_onsets"], row["bc_forms"], row["bc_types"]):
        if start <= onset < start + seconds:
            axes[1].axvline(onset, color="tab:green", lw=1)
            axes[1].text(onset, 1.02, form, fontsize=7, rotation=45, color="tab:green")
    for onset in row["shift_onsets"]:
        if start <= onset < start + seconds:
            axes[1].axvline(onset, color="tab:red", lw=1, ls="--")
    for onset in row["interruption_onsets"]:
        if start <= onset < start + seconds:
            axes[1].axvline(onset, color="tab:purple", lw=1, ls=":")
    for ax in axes[:2]:
        ax.set_ylim(0, 1.25)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{row['corpus']} {row['dialogue']}: listener {row['listener']} "
                 f"(green: backchannel onsets, red dashed: shifts, purple dotted: interruptions)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = ["describe", "plot_timeline", "BC_TYPES"]
