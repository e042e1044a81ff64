"""The ``funknn`` entry point itself: fast help, --version, ``python -m``, Ctrl-C, extension."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import funknn_fast

FUNKNN = Path(sys.executable).with_name("funknn")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_version_from_the_entry_point_and_python_m():
    expected = f"funknn_fast {funknn_fast.__version__}"
    for command in ([str(FUNKNN)], [sys.executable, "-m", "funknn_fast"]):
        result = subprocess.run([*command, "--version"], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.strip() == expected


def test_help_lists_every_command_without_importing_torch():
    result = python("import sys\n"
                    "from funknn_fast.cli import main\n"
                    "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                    "print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")
    from funknn_fast.cli import COMMANDS

    for name in COMMANDS:
        assert f"    {name}" in result.stdout
    assert "``" not in result.stdout


def test_the_op_layer_does_not_import_dynamo():
    result = python("import sys, funknn_fast.ops\nprint('torch._dynamo' in sys.modules)")
    assert result.stdout.strip() == "False", result.stderr
    # the marker set in backends.py is what torch.compiler.assume_constant_result sets
    from funknn_fast.ops.backends import _resolve

    def probe():
        return None

    torch.compiler.assume_constant_result(probe)
    marks = {k for k in vars(probe) if k.startswith("_dynamo")}
    assert marks and all(getattr(_resolve, k) == getattr(probe, k) for k in marks)


def test_a_missing_extension_warns_loudly():
    result = python("import sys\nsys.modules['funknn_fast._C'] = None\nimport funknn_fast.ops")
    assert "RuntimeWarning" in result.stderr and "did not load" in result.stderr
    assert f"running torch {torch.__version__}" in result.stderr


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    source = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source)
    process = subprocess.Popen(
        [str(FUNKNN), "superres", str(source), "-o", str(tmp_path / "b.png"), "--size",
         "4000x4000", "--threads", "1"], stderr=subprocess.PIPE, text=True,
        # a test run started in the background (`cmd &`) inherits SIGINT ignored; undo that so
        # the child's Python installs its KeyboardInterrupt handler as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "render" not in seen:  # the progress bar: rendering has started
        seen += process.stderr.read(1)
        assert process.poll() is None, seen
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 130
    assert rest.strip().splitlines()[-1] == "funknn superres: interrupted"
    assert "Traceback" not in rest
    assert not (tmp_path / "b.png").exists()
