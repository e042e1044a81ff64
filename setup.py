"""Build of funknn_fast's compiled extension ``funknn_fast._C``.

The C++ CPU kernels are always built. The CUDA kernels in ``csrc/cuda`` are added when a CUDA
toolkit is found and the installed torch is a CUDA build (or FUNKNN_FORCE_CUDA=1). Set
FUNKNN_NO_EXTENSION=1 to install the pure-Python package only (reference and Triton backends).
Install with ``pip install --no-build-isolation .`` so the extension is built against the torch
that is already installed.
"""

import glob
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def extension_modules() -> tuple[list, dict]:
    if os.environ.get("FUNKNN_NO_EXTENSION") == "1":
        return [], {}
    import torch
    from torch.utils import cpp_extension

    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cxx_flags = ["-O3", "-std=c++17", "-fno-math-errno"]
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
        )
    else:
        extension = cpp_extension.CppExtension(
            "funknn_fast._C",
            sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args={"cxx": cxx_flags},
        )
    return [extension], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
