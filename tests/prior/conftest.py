"""Shared fixtures of the prior tests."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every prior test runs with one intra-op thread (``one_thread`` of tests/conftest.py)."""


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prior_report():
    return load_benchmark("prior_report")


@pytest.fixture(scope="module")
def prior_grid():
    return load_benchmark("prior_grid")


@pytest.fixture(scope="module")
def prior_ceiling():
    return load_benchmark("prior_ceiling")
