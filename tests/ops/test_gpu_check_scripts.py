"""The GPU check keeps what it measured (issue 14, item 7), checked without a GPU.

A GPU run is minutes long and happens once: a Triton compile error (``CompilationError``,
``OutOfResources``: Exceptions, not RuntimeErrors) or a step killed by its time limit late in the
run must not lose the numbers already taken, and the first minutes must already give the
headline numbers. ``benchmarks/gpu_check.sh --dry-run`` runs the whole script on CPU; these tests
pin the pieces: the guarded measurements, the write after every method, the step order.
"""

import json
import pathlib
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_bench_common as common  # noqa: E402


def test_a_triton_compile_error_is_a_failed_cell_not_a_crash():
    triton_errors = pytest.importorskip("triton.compiler.errors")
    import torch

    def body():
        raise triton_errors.CompilationError("kernel.py", None, "unsupported atomic")

    timer = common.Timer(torch.device("cpu"))
    result = common.measure(timer, body, 1, torch.device("cpu"))
    assert result["error"].startswith("CompilationError")


def test_results_are_written_after_every_method(tmp_path):
    args = types.SimpleNamespace(output=str(tmp_path / "table.md"), log_dir=str(tmp_path))
    written = []

    def render(payload):
        written.append(json.loads(json.dumps(payload["results"])))
        return f"rows: {sorted(payload['results'])}\n", ""

    checkpoint = common.Checkpoint(args, "table.md", "table.json", render)
    state = {"results": {}}
    log = common.Log()

    def time_method(method):
        if method == "broken":
            raise RuntimeError("launch failed")
        return {"forward": {"seconds": 1.0}}

    common.time_methods(("fast", "broken", "slow"), lambda method: None, time_method, log,
                        results=state["results"], checkpoint=lambda: checkpoint(state))
    assert [sorted(rows) for rows in written] == [["fast"], ["broken", "fast"],
                                                  ["broken", "fast", "slow"]]
    assert "forward" in state["results"]["slow"] and "forward" not in state["results"]["broken"]
    assert json.loads((tmp_path / "table.json").read_text())["results"]["slow"]
    assert "slow" in (tmp_path / "table.md").read_text()


def test_merge_keeps_the_rows_of_the_previous_run(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"results": {"float32": {"triton": {}}}}))
    args = types.SimpleNamespace(merge=True, log_dir=str(tmp_path))
    assert common.previous_results(args, "bench.json")["results"] == {"float32": {"triton": {}}}
    args.merge = False
    assert common.previous_results(args, "bench.json") == {}


def test_headline_steps_come_before_the_build():
    script = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")]).returncode == 0
    order = [script.index(f'step "{name}') for name in
             ("environment", "Triton GPU tests", "op benchmark: triton", "build",
              "CUDA GPU tests", "op benchmark: cuda", "model benchmark", "jets benchmark")]
    assert order == sorted(order)
    assert "-m pip" not in script  # nothing installed on the GPU machine
