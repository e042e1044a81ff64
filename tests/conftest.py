"""Test configuration: without a CUDA device, Triton kernels run through the interpreter.

TRITON_INTERPRET must be set before any Triton kernel is defined, hence here, before the tests
import funknn_fast.kernels.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: on the shared, oversubscribed test machine
    extra threads only spin (a 0.3 s test took 60 s with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
