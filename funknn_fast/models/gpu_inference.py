"""GPU inference of FunkNN and LIIF: large chunks, channels-last, TF32 or bfloat16, CUDA graphs.

:class:`FunkNNInference` wraps a trained :class:`~funknn_fast.models.funknn.FunkNN` for inference
with FunkNN's call signature, ``engine(coords (B, Q, 2), image (B, C, h, w)) -> (B, Q, C)``
(coordinates in the ``grid_sample(align_corners=False)`` convention), so that
``funknn_fast.superres.inference.render(engine, image, scale, chunk=engine.chunk)`` renders with
it. :class:`LIIFInference` does the same for :class:`~funknn_fast.models.liif.LIIF`
(``encode``/``query``/``forward`` as LIIF's, so ``render_liif(engine, ...)`` works too).

What differs from calling the model (same function, up to the chosen precision):

* Chunks: ``chunk`` queries per network call (default 131072). The CPU path of
  ``models.fused_cnn`` walks 512-query micro-chunks (cache-sized, right for oneDNN); on a GPU each
  of those is ~25 kernel launches for too little work, so a 4096 x 4096 render made tens of
  thousands of launches. Here one chunk is one patch-sampling kernel and one pass of the CNN
  (channels-last direct convolutions, in-place activations and residual adds).
* Precision (``precision``): ``"float32"`` (TF32 off: the reference of the others), ``"tf32"``
  (float32 tensors, TF32 tensor-core convolutions and matmuls, float32 accumulation) or
  ``"bfloat16"`` (autocast: convolutions and linear layers in bfloat16 with float32 accumulation
  in cuDNN/cuBLAS, activations and residual adds in bfloat16). Patch sampling, the centre-sample
  residual and the output stay float32. The benchmark records each mode's error against float32.
* No host synchronisation: nothing reads a device value on the host; coordinates, outputs and
  the chunk loop stay on the device.
* CUDA graphs (``graphs=True``, CUDA tensors): the chunk function (patch sampling + network) is
  captured once per (image shape, dtype, device, chunk) with static coordinate, image and output
  buffers; a chunk then costs a copy in, one graph launch and a copy out. The last, partial chunk
  is padded with valid coordinates. The image is copied into the static buffer only when it
  changed (data pointer or version counter). ``compile=True`` compiles the chunk function with
  ``torch.compile`` instead (inductor; ``mode="reduce-overhead"`` when ``graphs``), at a compile
  cost of tens of seconds.
* Runs under ``torch.inference_mode()``: the results cannot enter autograd.

On CPU tensors the same code runs without graphs (autocast on CPU for ``"bfloat16"``): that is how
the tests check it without a GPU.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from funknn_fast.models.fused_cnn import fused_cnn_patch_network

PRECISIONS = ("float32", "tf32", "bfloat16")
DEFAULT_CHUNK = 131072


@contextlib.contextmanager
def precision_mode(precision: str, device_type: str):
    """The numerics of ``precision`` (module docstring) for the ops run inside."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16":
        # No cast cache: casts made while a CUDA graph is captured must be captured too.
        with torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False):
            yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    return chunk


def _identity(tensor: torch.Tensor) -> tuple | None:
    """(data pointer, version) of ``tensor``; None for inference tensors (no version counter)."""
    try:
        return tensor.data_ptr(), tensor._version
    except RuntimeError:
        return None


class _CapturedChunk:
    """One CUDA graph of ``fn(coords, image)`` over static buffers (module docstring)."""

    def __init__(self, fn, coords_shape, coords_dtype, image: torch.Tensor) -> None:
        self.coords = torch.zeros(coords_shape, dtype=coords_dtype, device=image.device)
        self.image = image.clone()
        self.source = _identity(image)
        with torch.cuda.device(image.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture: compiles Triton kernels
                for _ in range(2):
                    fn(self.coords, self.image)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = fn(self.coords, self.image)

    def __call__(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The chunk's output (a view of the static output: copy it before the next call)."""
        source = _identity(image)
        if source is None or source != self.source:
            self.image.copy_(image)
            self.source = source
        count = coords.shape[1]
        self.coords[:, :count].copy_(coords)
        if count < self.coords.shape[1]:
            self.coords[:, count:].zero_()
        self.graph.replay()
        return self.out[:, :count]


class _ChunkedEngine(nn.Module):
    """Chunk loop, precision, graph capture and compilation shared by both engines."""

    def __init__(self, chunk: int, precision: str, graphs: bool, compile: bool) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.chunk = _check_chunk(chunk)
        self.precision = precision
        self.graphs = bool(graphs)
        self.compile = bool(compile)
        self._captured: dict[tuple, _CapturedChunk] = {}
        self._compiled = None

    def _chunk_function(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _runner(self, coords: torch.Tensor, image: torch.Tensor):
        """The callable that evaluates one chunk of ``coords`` (at most ``chunk`` queries)."""
        if self.compile:
            if self._compiled is None:
                mode = "reduce-overhead" if self.graphs and image.is_cuda else "default"
                self._compiled = torch.compile(self._chunk_function, mode=mode, dynamic=False)
            return self._compiled
        if not (self.graphs and image.is_cuda):
            return self._chunk_function
        key = (tuple(image.shape), image.dtype, image.device, coords.dtype, self.chunk)
        if key not in self._captured:
            shape = (image.shape[0], self.chunk, 2)
            self._captured[key] = _CapturedChunk(self._chunk_function, shape, coords.dtype, image)
        return self._captured[key]

    def _evaluate(self, coords: torch.Tensor, image: torch.Tensor, channels: int) -> torch.Tensor:
        if coords.dim() != 3 or coords.shape[-1] != 2 or coords.shape[0] != image.shape[0]:
            raise ValueError(
                f"coords must have shape (B, Q, 2) with B = {image.shape[0]}, got "
                f"{tuple(coords.shape)}"
            )
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        with torch.inference_mode():
            out = torch.empty(coords.shape[0], coords.shape[1], channels, dtype=dtype,
                              device=coords.device)
            if coords.shape[1] == 0:
                return out.to(image.dtype)
            run = self._runner(coords, image)
            for start in range(0, coords.shape[1], self.chunk):
                out[:, start : start + self.chunk] = run(coords[:, start : start + self.chunk],
                                                         image)
            return out.to(image.dtype)


class FunkNNInference(_ChunkedEngine):
    """Fast inference of a FunkNN (module docstring): ``engine(coords, image) -> (B, Q, C)``.

    Args:
        model: a trained FunkNN (any variant; the CNN takes the channels-last path).
        chunk: queries per network call.
        precision: "float32", "tf32" or "bfloat16".
        graphs: capture each chunk in a CUDA graph (CUDA tensors only).
        compile: compile the chunk function with torch.compile instead.
    """

    def __init__(self, model: nn.Module, *, chunk: int = DEFAULT_CHUNK,
                 precision: str = "bfloat16", graphs: bool = True, compile: bool = False) -> None:
        super().__init__(chunk, precision, graphs, compile)
        self.model = model
        self.eval()  # render() restores the engine's mode afterwards: keep it (and model) eval

    def _chunk_function(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        model = self.model
        patches = model.sample_patches(coords, image)
        batch, queries, channels, p, _ = patches.shape
        flat = patches.reshape(batch * queries, channels, p, p)
        centre = flat[:, :, p // 2, p // 2]
        with precision_mode(self.precision, image.device.type):
            if model.variant == "cnn":
                # One channels-last pass over the whole chunk (the CPU micro-chunks are for
                # caches, see models.fused_cnn).
                net = fused_cnn_patch_network(model, flat, micro=flat.shape[0])
            else:
                net = model.patch_network(flat.contiguous(memory_format=torch.channels_last))
        return (net.to(centre.dtype) + centre).reshape(batch, queries, channels)

    def forward(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Intensities (B, Q, C) at ``coords`` (B, Q, 2) of the continuous image of ``image``
        (coords and image as the model takes them), in ``image``'s dtype."""
        return self._evaluate(coords, image, self.model.channels)


class LIIFInference(_ChunkedEngine):
    """Fast inference of a LIIF (module docstring): ``encode``, ``query`` and
    ``engine(coords, image, cell)`` as LIIF's, with its precision; ``forward`` encodes once and
    decodes ``chunk`` queries at a time (CUDA graphs of the decoding when ``graphs``)."""

    def __init__(self, model: nn.Module, *, chunk: int = DEFAULT_CHUNK,
                 precision: str = "bfloat16", graphs: bool = True, compile: bool = False) -> None:
        super().__init__(chunk, precision, graphs, compile)
        self.model = model
        self.eval()
        self._features = None
        self._cell = None

    def encode(self, image: torch.Tensor, *, project: bool = True):
        """``LIIF.encode`` on a channels-last image in this engine's precision; the codes are
        kept in the image's dtype (the query geometry stays float32)."""
        with torch.inference_mode(), precision_mode(self.precision, image.device.type):
            features = self.model.encode(image.contiguous(memory_format=torch.channels_last),
                                         project=project)
        if features.codes.dtype != image.dtype:
            features.codes = features.codes.to(image.dtype)
        return features

    def query(self, features, coords: torch.Tensor, cell) -> torch.Tensor:
        """``LIIF.query`` in this engine's precision, result in the coordinates' dtype."""
        with torch.inference_mode(), precision_mode(self.precision, coords.device.type):
            return self.model.query(features, coords, cell).to(coords.dtype)

    def _chunk_function(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.query(self._features, coords, self._cell)

    def forward(self, coords: torch.Tensor, image: torch.Tensor, cell) -> torch.Tensor:
        """Intensities (B, Q, C): one encoding of ``image``, then chunks of queries. ``cell`` =
        (cell_x, cell_y), one output pixel's size for every query (a float, a pair or a tensor
        (2,); see ``models.liif.cell_for_size``)."""
        if not isinstance(cell, torch.Tensor):
            values = [float(cell)] * 2 if isinstance(cell, (int, float)) else [
                float(v) for v in cell]
            cell = torch.tensor(values, dtype=coords.dtype, device=coords.device)
        if cell.shape != (2,):
            raise ValueError(f"cell must be (cell_x, cell_y), got shape {tuple(cell.shape)}")
        with torch.inference_mode():
            self._features = self.encode(image)
            self._cell = cell.to(dtype=coords.dtype, device=coords.device)
            self._captured.clear()  # the captured decodings read the previous features
            return self._evaluate(coords, image, self.model.config.channels)
