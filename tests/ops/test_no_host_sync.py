"""No host synchronisation in the op, the jets and the model (issue 14).

Reading a device tensor's value on the host (``.item()``, ``bool()``, ``if tensor:``, ``.tolist()``,
``torch.equal``, data-dependent shapes) stalls the GPU on every call and breaks CUDA-graph
capture. On CPU those reads all go through a few ATen ops (``aten._local_scalar_dense`` above all),
so a dispatch mode that refuses them shows, without a GPU, that the Python wrappers, the Triton
launchers (through the interpreter) and FunkNN's forward and backward never read a tensor's value.
The GPU counterpart (``torch.cuda.set_sync_debug_mode``) is in tests/ops/test_patch_sample_gpu.py.
"""

import os

import pytest
import torch
from _backend_cases import make_inputs
from torch.utils._python_dispatch import TorchDispatchMode

import funknn_fast
from funknn_fast.ops.backends import backends
from funknn_fast.ops.jets import patch_sample_jets

aten = torch.ops.aten
HOST_READS = {
    aten._local_scalar_dense.default,  # .item(), bool(), int(), float(), if tensor
    aten.item.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.unique_dim.default,
    aten._unique2.default,
}


class NoHostReads(TorchDispatchMode):
    """Raises on any op that hands a tensor's value to the host."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            raise AssertionError(f"host synchronisation: {func}")
        return func(*args, **(kwargs or {}))


def test_the_mode_catches_host_reads():
    step = torch.tensor([1.0, 2.0])
    with NoHostReads(), pytest.raises(AssertionError, match="host synchronisation"):
        bool(torch.isfinite(step).all())


def cpu_backends():
    names = ["torch"]
    if backends()["cpu"].available:
        names.append("cpu")
    if os.environ.get("TRITON_INTERPRET") == "1" and backends()["triton"].available:
        names.append("triton")
    return names


@pytest.mark.parametrize("backend", cpu_backends())
def test_patch_sample_and_jets_first_and_second_order(backend):
    image, coords, step = make_inputs((1, 2, 5, 6, 3, 3, 1.2), torch.float64, requires_grad=True)
    weights = torch.randn(1, 3, 2, 3, 3, dtype=torch.float64)
    directions = [torch.randn_like(t) for t in (image, coords, step)]
    with NoHostReads():
        out = funknn_fast.patch_sample(image, coords, step, 3, "reflection", backend)
        first = torch.autograd.grad(out, (image, coords, step), weights, create_graph=True)
        total = sum((g * v).sum() for g, v in zip(first, directions, strict=True))
        torch.autograd.grad(total, (image, coords, step))
        jets = patch_sample_jets(image, coords, step, 3, "zeros", "hessian", backend)
        torch.autograd.grad(jets.square().sum(), (image, coords, step))
        funknn_fast.patch_sample(image, coords, (0.9, 1.1), 3, "border", backend)


@pytest.mark.parametrize("backend", cpu_backends())
def test_funknn_training_step_and_inference(backend):
    from funknn_fast.models.funknn import FunkNN
    from funknn_fast.models.gpu_inference import FunkNNInference

    torch.manual_seed(0)
    model = FunkNN(channels=2, backend=backend).double()
    image, coords, _ = make_inputs((1, 2, 8, 8, 5, 9, 1.0), torch.float64)
    engine = FunkNNInference(model, chunk=3, precision="float32")
    with NoHostReads():
        loss = model(coords, image).square().mean()
        loss.backward()
        with torch.no_grad():
            model(coords, image)
        engine(coords, image)


def test_liif_inference_engine():
    from funknn_fast.models.gpu_inference import LIIFInference
    from funknn_fast.models.liif import LIIF, LIIFConfig

    torch.manual_seed(1)
    model = LIIF(LIIFConfig(encoder_features=8, encoder_blocks=1, hidden=16, hidden_layers=2))
    image = torch.rand(1, 3, 6, 7)
    coords = torch.rand(1, 11, 2) * 2 - 1
    cell = torch.tensor([0.1, 0.1])
    engine = LIIFInference(model, chunk=4, precision="bfloat16")
    with NoHostReads():
        engine(coords, image, cell)
