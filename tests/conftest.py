"""Test configuration: without a CUDA device, Triton kernels run through the interpreter.

TRITON_INTERPRET must be set before any Triton kernel is defined, hence here, before the tests
import funknn_fast.kernels.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
