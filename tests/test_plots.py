"""The PNGs a reader sees: every title and label inside the figure, legends beside (not over) the data,
the window a timeline shows and the overflow bins of a histogram said in words."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from backchannel.frames import FRAME_S
from backchannel.policy import Policy


@pytest.fixture
def kept(monkeypatch):
    """The figures the plot functions close after saving, kept open for inspection."""
    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    yield figs
    monkeypatch.undo()
    plt.close("all")


def texts(fig):
    out = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        out += [ax.title, ax.xaxis.label, ax.yaxis.label]
    return [t for t in out if t.get_visible() and t.get_text()]


def assert_readable(fig, outside_legends: bool = True) -> None:
    """Every title/label lies inside the figure; legends too, and (``outside_legends``) off every axes."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    legends = fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]
    for t in texts(fig) + legends:
        b = t.get_window_extent(r)
        assert b.x0 >= -1 and b.y0 >= -1 and b.x1 <= W + 1 and b.y1 <= H + 1, \
            f"{getattr(t, 'get_text', lambda: 'legend')()!r} is clipped: {b} in {W}x{H}"
    if outside_legends:
        assert legends
        for legend in legends:
            box = legend.get_window_extent(r)
            assert not any(box.overlaps(a.get_window_extent(r)) for a in fig.axes), "a legend covers data"


def test_onset_offset_histogram_names_its_overflow_bins(tmp_path, kept):
    from backchannel.evaluation.report import OFFSET_BINS, plot_offsets

    lo, hi = OFFSET_BINS[0], OFFSET_BINS[-1]
    human = np.array([0.2, 0.3, 5.0, -3.0])  # two beyond the range: drawn in the outer bins
    plot_offsets(human, {"head (rate_matched)": np.array([0.1, 9.0, np.nan])}, tmp_path / "o.png", "title")
    fig = kept[0]
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == f"≤{lo:g}" and labels[-1] == f"≥{hi:g}"
    assert f"outer bins (≤{lo:g}, ≥{hi:g})" in ax.get_xlabel()
    assert_readable(fig)
    assert (tmp_path / "o.png").stat().st_size > 5_000


def test_evaluation_timeline_says_its_window_and_keeps_its_legend_off_the_data(tmp_path, kept):
    from backchannel.evaluation.report import plot_timeline

    n = 4000  # 320 s
    row = {"corpus": "hand", "dialogue": "d1", "listener": "f", "n_frames": n, "va_speaker": np.ones(n),
           "va_listener": np.zeros(n), "bc_onsets": [12.0, 40.0]}
    probs = {"head": np.full(n, 0.99), "pause_gate": np.full(n, 0.99)}  # the legend's corner is full of data
    plot_timeline(row, probs, {"head": [13.0], "pause_gate": [41.0]}, tmp_path / "t.png", start=10, seconds=60)
    fig = kept[0]
    assert "10–70 s of 320 s" in fig._suptitle.get_text()
    assert fig.axes[-1].get_xlim()[0] <= 10 and fig.axes[-1].get_xlim()[1] >= 70 - FRAME_S
    assert_readable(fig)


def test_simulation_plot_title_fits_and_says_its_window(tmp_path, kept):
    from backchannel.plugin.simulate import plot_simulation

    n = 375  # 30 s
    row = {"corpus": "demo", "dialogue": "q7ec1", "listener": "f", "floor": "g", "n_frames": n,
           "start_s": 40.0, "va_speaker": np.ones(n), "va_listener": np.zeros(n),
           "bc_onsets": [3.0, 9.0], "bc_forms": ["mhm", "right"]}
    policy = Policy(on=0.5, take_turn=0.9)
    probs = np.tile([0.3, 0.6, 0.1], (n, 1))  # p(backchannel) 0.6 everywhere: the legend's corner has data
    state = policy.init_state(1)[0]
    decisions = [policy.decide(state, p, None) for p in probs]
    assert any(d.action == "BACKCHANNEL" for d in decisions)
    weights = "checkpoint runs/tiny_head/checkpoints/best.ckpt (sha256 b94565536fb9, backbone timing)"
    plot_simulation(row, decisions, policy, tmp_path / "s.png", weights)
    fig = kept[0]
    title = fig._suptitle.get_text()
    assert "40.0–70.0 s of the dialogue" in title and "b94565536fb9" in title
    assert "into the dialogue" in fig.axes[-1].get_xlabel()
    assert_readable(fig)


def test_rating_plot_panels_are_titled(tmp_path, kept):
    pytest.importorskip("krippendorff")
    from backchannel.rating.analysis import BIN_LABELS, SCALES, plot

    conds = ["real", "random"]
    report = {"conditions": conds,
              "mos": {s: {c: {"mean": 3.0, "ci_low": 2.5, "ci_high": 3.5} for c in conds} for s in SCALES},
              "bad_moments": [{"condition": c, "bin": b, "rate": 0.5} for c in conds for b in BIN_LABELS]}
    plot(report, tmp_path / "r.png")
    fig = kept[0]
    assert all(ax.get_title() for ax in fig.axes)
    assert_readable(fig, outside_legends=False)


def test_stats_figure_counts_echoes_and_says_what_its_histograms_leave_out():
    from backchannel.corpora.stats import stats_figure

    def hist(edges, counts, above=0, median=None, **kw):
        return {"bin_edges_s": edges, "counts": counts, "below": 0, "above": above, "median_s": median, **kw}

    types = {"continuer": 5, "agreement": 3, "assessment": 0, "surprise": 0, "acknowledgement": 2}
    stats = {"corpus": "hand", "n_dialogues": 1, "hours": 0.1, "backchannels": 14,
             "forms": {"top": [{"form": "mhm", "count": 10}, {"form": "south", "count": 4}]},
             "types": {t: {"count": c} for t, c in types.items()}, "echo": {"count": 4, "share": 4 / 14},
             "overlap_share": 0.25, "onset_since_speaker_end": hist([0.0, 0.5, 1.0], [8, 4], above=2, median=0.3),
             "turn_transition_gaps": hist([-0.5, 0.0, 0.5], [3, 5], median=0.1, mode_s=0.25),
             "inter_backchannel_intervals": hist([0.0, 30.0, 60.0], [9, 3], above=1, median=12.0),
             "rate": {"per_listener_values": [1.0, 3.0], "per_listener_minute": 2.0}}
    fig = stats_figure(stats)
    bars = fig.axes[1].patches
    assert [round(b.get_height()) for b in bars] == [5, 3, 0, 0, 2, 4]  # the echoes: the bars add up to 14
    assert fig.axes[1].get_xticklabels()[-1].get_text() == "echo\n(no type)"
    assert "(not shown: 2 above 1000 ms)" in fig.axes[2].get_xlabel()
    assert "(not shown: 1 above 60 s)" in fig.axes[4].get_xlabel()
    assert_readable(fig, outside_legends=False)
    plt.close(fig)
