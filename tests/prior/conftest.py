"""Shared fixtures of the prior tests."""

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every prior test runs with one intra-op thread (``one_thread`` of tests/conftest.py)."""
