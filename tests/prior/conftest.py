"""Shared fixtures of the prior tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """One intra-op thread: the shared test machine is oversubscribed (8-20x slower with 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
