"""Build of funknn_fast's compiled extension ``funknn_fast._C`` and its torch requirement.

The C++ CPU kernels are always built. The CUDA kernels in ``csrc/cuda`` are added when a CUDA
toolkit is found and the installed torch is a CUDA build (or FUNKNN_FORCE_CUDA=1). Set
FUNKNN_NO_EXTENSION=1 to install the pure-Python package only (reference and Triton backends).
Install with ``pip install --no-build-isolation .`` so the extension is built against the torch
that is already installed.

The extension is linked against one torch's C++ ABI, so the package then requires that torch's
minor release (``torch>=2.13,<2.14`` for a build against 2.13.x); ``funknn_fast/_build_info.json``
records the build (``funknn_fast.ops._extension`` names it when ``_C`` fails to load). Release
builds are stripped of debug symbols (``-Wl,--strip-all`` on Linux; FUNKNN_DEBUG=1 keeps them).
"""

import glob
import json
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_REQUIREMENTS = ["numpy", "pillow", "safetensors", "tqdm"]
BUILD_INFO = os.path.join(HERE, "funknn_fast", "_build_info.json")


def torch_requirement(version: str | None) -> str:
    """``torch>=X.Y,<X.(Y+1)`` for an extension built against torch X.Y.*, else ``torch>=2.4``."""
    if version is None:
        return "torch>=2.4"
    major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    return f"torch>={major}.{minor},<{major}.{minor + 1}"


def write_build_info(torch_version: str | None) -> None:
    with open(BUILD_INFO, "w") as handle:
        json.dump({"extension": torch_version is not None, "torch": torch_version}, handle)
        handle.write("\n")


def extension_modules() -> tuple[list, dict, str | None]:
    """(ext_modules, cmdclass, version of the torch they are built against)."""
    if os.environ.get("FUNKNN_NO_EXTENSION") == "1":
        return [], {}, None
    import torch
    from torch.utils import cpp_extension

    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cxx_flags = ["-O3", "-std=c++17", "-fno-math-errno"]
    strip = sys.platform.startswith("linux") and os.environ.get("FUNKNN_DEBUG") != "1"
    link_flags = ["-Wl,--strip-all"] if strip else []
    use_cuda = cpp_extension.CUDA_HOME is not None and (
        torch.version.cuda is not None or os.environ.get("FUNKNN_FORCE_CUDA") == "1"
    )
    if use_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        extension = cpp_extension.CUDAExtension(
            "funknn_fast._C",
            sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=link_flags,
        )
    else:
        extension = cpp_extension.CppExtension(
            "funknn_fast._C",
            sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [extension], {"build_ext": build_ext}, torch.__version__


ext_modules, cmdclass, built_torch = extension_modules()
write_build_info(built_torch)
setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    install_requires=[torch_requirement(built_torch), *BASE_REQUIREMENTS],
)
