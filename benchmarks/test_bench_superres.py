"""pytest-benchmark cases: FunkNN against LIIF at x4 on CPU (not part of the test suite).

Run: python -m pytest benchmarks/test_bench_superres.py --benchmark-only
Workload: a 32 x 32 image, 16,384 random queries with the x4 cell, one chunk, 2 threads; LIIF's
encoding is included (efficient: encoder and unfolded features once; projected: first layer
folded into a convolution once). Compare rows of one run; bench_superres.py has the full study.
"""

from __future__ import annotations

import pytest
import torch

from funknn_fast.models.funknn import FunkNN
from funknn_fast.models.liif import LIIF, LIIF_140K, LIIF_EDSR

SIDE, QUERIES = 32, 16384


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _inputs():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, SIDE, SIDE, generator=generator)
    coords = torch.rand(1, QUERIES, 2, generator=generator) * 2 - 1
    return image, coords, 2.0 / (4 * SIDE)


def test_funknn(benchmark):
    torch.manual_seed(0)
    model = FunkNN().eval()
    image, coords, _ = _inputs()

    def run():
        with torch.inference_mode():
            return model(coords, image)

    benchmark.extra_info["queries"] = QUERIES
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("size", ["edsr", "140k"])
@pytest.mark.parametrize("project", [False, True], ids=["efficient", "projected"])
def test_liif(benchmark, size, project):
    torch.manual_seed(0)
    model = LIIF(LIIF_EDSR if size == "edsr" else LIIF_140K).eval()
    image, coords, cell = _inputs()

    def run():
        return model.evaluate(coords, image, cell, chunk_size=QUERIES, project=project)

    benchmark.extra_info["queries"] = QUERIES
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
