"""pytest-benchmark cases for patch_sample on CPU (not part of the test suite).

Run: python -m pytest benchmarks/test_bench_patch_sample.py --benchmark-only
Same workload as bench_patch_sample.py (8 x 3 x 64 x 64 images, 32,768 queries, p = 9); compare
rows of one run with --benchmark-group-by=param:mode.
"""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_patch_sample import make_inputs, method_fn  # noqa: E402

METHODS = ["funknn_fast cpu", "grid_sample", "16-tap gather"]


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["forward", "forward+backward", "second order"])
def test_patch_sample(benchmark, method, mode):
    if mode == "second order" and method == "grid_sample":
        benchmark.extra_info["note"] = "about 30 s per call on this machine"
    fn = method_fn(method)
    image, coords, step = make_inputs(8, 32768, 64)
    weights = torch.rand(8, coords.shape[1], 3, 9, 9)

    def forward():
        with torch.no_grad():
            return fn(image, coords, step, 9)

    def forward_backward():
        img, crd = image.clone().requires_grad_(), coords.clone().requires_grad_()
        fn(img, crd, step, 9).backward(weights)

    def second_order():
        img, crd = image.clone().requires_grad_(), coords.clone().requires_grad_()
        (g,) = torch.autograd.grad((fn(img, crd, step, 9) * weights).sum(), crd, create_graph=True)
        torch.autograd.grad(g.sum(), (crd, img))

    run = {"forward": forward, "forward+backward": forward_backward, "second order": second_order}
    benchmark.pedantic(run[mode], rounds=3, warmup_rounds=1)
