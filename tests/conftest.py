"""Shared fixtures. Real-corpus tests read ``BACKCHANNEL_CORPORA`` or ``../shared/corpora``.

Under CI (``CI=true``) a missing corpus path is an error, not a skip.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def corpora_path() -> Path | None:
    env = os.environ.get("BACKCHANNEL_CORPORA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "corpora"]:
        if (cand / "maptask").is_dir() and (cand / "mrda").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def corpora_root() -> Path:
    path = corpora_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("real corpora not found (set BACKCHANNEL_CORPORA or provide ../shared/corpora)")
        pytest.skip("real corpora not available")
    return path


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch CPU thread (streaming code steps frame by frame; on a shared 2-core
    machine a second thread only waits, and one thread keeps float sums in one order), then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
