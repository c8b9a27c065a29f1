"""The 80 ms frame clock, by hand."""
import numpy as np
import pytest

from backchannel import frames


def test_frame_of_time_boundaries():
    assert frames.FRAME_S == pytest.approx(0.08)
    assert frames.time_to_frame(0.0) == 0
    assert frames.time_to_frame(0.0799) == 0
    assert frames.time_to_frame(0.08) == 1  # frame t covers [0.08 t, 0.08 (t+1))
    assert frames.time_to_frame(0.24) == 3  # 0.08 * 3 is 0.24000000000000002 in floats
    assert frames.time_to_frame(1.0) == 12
    assert frames.frame_start(12) == pytest.approx(0.96)
    assert frames.frame_end(12) == pytest.approx(1.04)


def test_num_frames_counts_partial_last_frame():
    assert frames.num_frames(0.0) == 0
    assert frames.num_frames(0.08) == 1
    assert frames.num_frames(0.081) == 2
    assert frames.num_frames(60.0) == 750
    with pytest.raises(ValueError):
        frames.num_frames(-1)


def test_interval_activity_fractions():
    # 0.04..0.20 s covers half of frame 0, all of frame 1, half of frame 2.
    np.testing.assert_allclose(frames.interval_activity([(0.04, 0.20)], 4), [0.5, 1.0, 0.5, 0.0], atol=1e-6)
    # overlapping intervals are merged, never above 1; inside one frame: 0.01..0.03 -> 0.25
    np.testing.assert_allclose(frames.interval_activity([(0.0, 0.1), (0.05, 0.16)], 3), [1, 1, 0], atol=1e-6)
    np.testing.assert_allclose(frames.interval_activity([(0.01, 0.03)], 1), [0.25], atol=1e-6)
    # clipped at the sequence end
    np.testing.assert_allclose(frames.interval_activity([(0.12, 5.0)], 2), [0.0, 0.5], atol=1e-6)


def test_merge_intervals_with_gap():
    assert frames.merge_intervals([(1, 2), (0, 0.5), (2.1, 3)]) == [(0, 0.5), (1, 2), (2.1, 3)]
    assert frames.merge_intervals([(1, 2), (2.1, 3)], gap=0.2) == [(1, 3)]
