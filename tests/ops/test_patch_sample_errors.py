"""Bad input to patch_sample gets a clear error naming the argument; backend selection rules."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import funknn_fast
from funknn_fast import BackendUnavailableError, patch_sample


def inputs(batch=2, channels=3, height=5, width=4, queries=6, dtype=torch.float32):
    return (
        torch.rand(batch, channels, height, width, dtype=dtype),
        torch.rand(batch, queries, 2, dtype=dtype) * 2 - 1,
    )


@pytest.mark.parametrize(
    ("image", "coords", "step", "error", "match"),
    [
        (torch.rand(3, 4, 4), torch.rand(1, 2, 2), 1.0, ValueError, "image must have shape"),
        (torch.rand(1, 1, 4, 4), torch.rand(1, 2), 1.0, ValueError, "coords must have shape"),
        (torch.rand(1, 1, 4, 4), torch.rand(1, 2, 3), 1.0, ValueError, "coords must have shape"),
        (torch.rand(2, 1, 4, 4), torch.rand(3, 2, 2), 1.0, ValueError, "batch size"),
        (torch.rand(1, 1, 0, 4), torch.rand(1, 2, 2), 1.0, ValueError, "height and width"),
        (
            torch.ones(1, 1, 4, 4, dtype=torch.int64),
            torch.rand(1, 2, 2),
            1.0,
            TypeError,
            "image must have a floating dtype",
        ),
        (
            torch.rand(1, 1, 4, 4),
            torch.ones(1, 2, 2, dtype=torch.int32),
            1.0,
            TypeError,
            "coords must have a floating dtype",
        ),
        (
            torch.rand(1, 1, 4, 4),
            torch.rand(1, 2, 2, dtype=torch.float64),
            1.0,
            TypeError,
            "coords dtype",
        ),
        (
            torch.rand(1, 1, 4, 4),
            torch.rand(1, 2, 2),
            float("nan"),
            ValueError,
            "step must be finite",
        ),
        (
            torch.rand(1, 1, 4, 4),
            torch.rand(1, 2, 2),
            (1.0, float("inf")),
            ValueError,
            "step must be finite",
        ),
        (torch.rand(1, 1, 4, 4), torch.rand(1, 2, 2), (1.0, 2.0, 3.0), TypeError, "step must be"),
        (torch.rand(1, 1, 4, 4), torch.rand(1, 2, 2), "1", TypeError, "step must be"),
        (
            torch.rand(1, 1, 4, 4),
            torch.rand(1, 2, 2),
            torch.ones(3),
            ValueError,
            r"step must have shape \(2,\)",
        ),
        (
            torch.rand(1, 1, 4, 4),
            torch.rand(1, 2, 2),
            torch.ones(2, dtype=torch.int64),
            TypeError,
            "step must have a floating dtype",
        ),
        (
            torch.rand(1, 1, 4, 4),
            torch.rand(1, 2, 2),
            torch.ones(2, dtype=torch.float64),
            TypeError,
            "step dtype",
        ),
        ([[1.0]], torch.rand(1, 2, 2), 1.0, TypeError, "image must be a torch.Tensor"),
        (torch.rand(1, 1, 4, 4), None, 1.0, TypeError, "coords must be a torch.Tensor"),
    ],
)
@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
def test_bad_inputs_raise_clear_errors(image, coords, step, error, match, backend):
    with pytest.raises(error, match=match):
        patch_sample(image, coords, step, 3, backend=backend)


@pytest.mark.parametrize("patch_size", [0, -2])
def test_patch_size_below_one(patch_size):
    image, coords = inputs()
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        patch_sample(image, coords, 1.0, patch_size)


@pytest.mark.parametrize("patch_size", [2.5, True, "9"])
def test_patch_size_not_int(patch_size):
    image, coords = inputs()
    with pytest.raises(TypeError, match="patch_size must be an int"):
        patch_sample(image, coords, 1.0, patch_size)


def test_unknown_padding_and_backend():
    image, coords = inputs()
    with pytest.raises(ValueError, match="padding must be one of"):
        patch_sample(image, coords, 1.0, padding="mirror")
    with pytest.raises(ValueError, match="backend must be one of"):
        patch_sample(image, coords, 1.0, backend="fast")


def test_tensors_on_different_devices():
    image, coords = inputs()
    with pytest.raises(ValueError, match="coords is on meta but image is on cpu"):
        patch_sample(image, coords.to("meta"), 1.0)
    with pytest.raises(ValueError, match="step is on meta"):
        patch_sample(image, coords, torch.ones(2, device="meta"))


def test_explicit_unavailable_backend_raises():
    image, coords = inputs()
    status = funknn_fast.backends()
    assert set(status) == {"torch", "cpu", "cuda", "triton"}
    for name, entry in status.items():
        assert entry.name == name and entry.reason
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="backend 'cuda' is unavailable"):
            patch_sample(image, coords, 1.0, backend="cuda")


def test_cpu_backend_rejects_half_but_auto_falls_back():
    image, coords = inputs(dtype=torch.bfloat16)
    coords = coords.float()  # 16-bit images take float32 coordinates
    with pytest.raises(BackendUnavailableError, match="float32 and float64"):
        patch_sample(image, coords, 1.0, backend="cpu")
    out = patch_sample(image, coords, 1.0)
    assert out.dtype == torch.bfloat16
    reference = patch_sample(image.float(), coords.float(), 1.0, backend="torch")
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.05)


def test_16_bit_coordinates_are_converted_to_float32_with_a_warning():
    """They resolve only ~1/512 of the image (issue 14): positions are computed from their
    float32 values, and the caller is told."""
    image, coords = inputs(dtype=torch.bfloat16)
    step = torch.tensor([0.9, 1.2], dtype=torch.bfloat16)
    want = patch_sample(image, coords.float(), step.float(), 3)
    for backend in ("torch", "auto"):
        with pytest.warns(UserWarning, match="1/512"):
            got = patch_sample(image, coords, step, 3, backend=backend)
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_environment_overrides_auto(monkeypatch):
    image, coords = inputs(dtype=torch.float64)
    calls = []
    module = sys.modules["funknn_fast.ops.patch_sample"]  # the package attribute is the function
    original = module.patch_sample_reference

    def spy(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, "patch_sample_reference", spy)
    patch_sample(image, coords, 1.0)
    assert not calls  # auto on CPU picks the compiled kernels
    monkeypatch.setenv("FUNKNN_BACKEND", "torch")
    patch_sample(image, coords, 1.0)
    assert len(calls) == 1
    monkeypatch.setenv("FUNKNN_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="FUNKNN_BACKEND must be one of"):
        patch_sample(image, coords, 1.0)


def test_package_works_without_the_compiled_extension():
    """With funknn_fast._C unimportable, the reference serves "auto" and "cpu" says why not."""
    script = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "funknn_fast._C":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
import torch, funknn_fast
status = funknn_fast.backends()["cpu"]
assert not status.available and "blocked for the test" in status.reason, status
out = funknn_fast.patch_sample(torch.rand(1, 2, 5, 4), torch.rand(1, 3, 2) * 2 - 1, 1.0, 3)
assert out.shape == (1, 3, 2, 3, 3)
try:
    funknn_fast.patch_sample(torch.rand(1, 2, 5, 4), torch.rand(1, 3, 2), 1.0, 3, backend="cpu")
except funknn_fast.BackendUnavailableError as error:
    print("OK", error)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "OK backend 'cpu' is unavailable" in result.stdout
