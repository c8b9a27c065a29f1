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
    """``dataset.find_row``: the matching row (most backchannels first); ``CorpusError`` if none."""
    from .dataset import find_row

    return find_row(dsd, _dataset_folder(dsd), dialogue, listener)


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
    """PNG of voice activity of both parties, the action labels and the mined events from ``start`` for
    ``seconds`` (clipped to the row; the title states the window and the row's length)."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(_pick_row(dsd, dialogue, listener), start, seconds, _dataset_folder(dsd))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def timeline_figure(row: dict, start: float = 0.0, seconds: float = 60.0, where: str | Path = "dataset"):
    """The matplotlib figure of ``plot_timeline`` for one dataset row (times in seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    start, end, duration = timeline_window(row["n_frames"], start, seconds, where)
    f0, f1 = int(start / FRAME_S), int(np.ceil(end / FRAME_S))
    t = np.arange(row["n_frames"])[f0:f1] * FRAME_S

    fig, axes = plt.subplots(3, 1, figsize=(14, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    axes[0].fill_between(t, 0, np.asarray(row["va_speaker"])[f0:f1], step="post", color="tab:blue", alpha=0.7)
    axes[0].set_ylabel(f"floor {row['floor']}\nvoice activity")
    axes[1].fill_between(t, 0, np.asarray(row["va_listener"])[f0:f1], step="post", color="tab:orange", alpha=0.7)
    axes[1].set_ylabel(f"listener {row['listener']}\nvoice activity\n(backchannels\nleft out)")
    action = np.asarray(row["action"])[f0:f1]
    labels = {1: ("BACKCHANNEL", "tab:green"), 2: ("TAKE_TURN", "tab:red")}
    for k, (_name, c) in labels.items():
        axes[2].fill_between(t, 0, (action == k).astype(float), step="post", color=c, alpha=0.6, lw=0)
    axes[2].set_yticks([])
    axes[2].set_ylabel("label\n(onset within\n500 ms)")
    for onset, form in zip(row["bc_onsets"], row["bc_forms"]):
        if start <= onset < end:
            axes[1].axvline(onset, color="tab:green", lw=1)
            axes[1].text(onset, 1.03, form, fontsize=7, rotation=30, color="tab:green", clip_on=True)
    for key, color, ls in (("shift_onsets", "tab:red", "--"), ("interruption_onsets", "tab:purple", ":")):
        for onset in row[key]:
            if start <= onset < end:
                axes[1].axvline(onset, color=color, lw=1, ls=ls)
    for ax in axes[:2]:
        ax.set_ylim(0, 1.3)
        ax.set_yticks([0, 0.5, 1])
    axes[-1].set_xlim(start, end)
    axes[-1].set_xlabel("time (s)")
    handles = [Line2D([], [], color="tab:green", lw=1, label="backchannel onset"),
               Line2D([], [], color="tab:red", lw=1, ls="--", label="shift (listener takes the turn)"),
               Line2D([], [], color="tab:purple", lw=1, ls=":", label="interruption"),
               Patch(color="tab:green", alpha=0.6, label="label BACKCHANNEL"),
               Patch(color="tab:red", alpha=0.6, label="label TAKE_TURN")]
    fig.suptitle(f"{row['corpus']} {row['dialogue']}: listener {row['listener']} vs floor {row['floor']}, "
                 f"{start:.0f}-{end:.0f} s of {duration:.0f} s", fontsize=11)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(handles), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


__all__ = ["BC_TYPES", "describe", "plot_timeline", "timeline_figure", "timeline_window"]
