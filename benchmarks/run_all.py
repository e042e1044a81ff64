"""Regenerates BENCHMARKS.md: runs every benchmark script, then benchmarks/make_report.py.

Scripts, in this order, each only if it exists: bench_patch_sample.py (op micro-benchmarks),
bench_model.py (FunkNN model), bench_derivatives.py (derivative throughput), bench_superres.py
(end-to-end super-resolution against LIIF). Each runs in its own process with the same Python;
each writes its own ``benchmarks/results/*.md``. A failing script is reported and the others
still run; the exit status is 1 if any failed. The report is assembled from whatever results
files exist (sections of skipped scripts keep their previous content).

Usage: python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--quick]
       [--skip-slow] [--list] [--args NAME "ARGS"]

  --quick       pass --quick to every script that accepts it (smoke run; such scripts do not
                write results, so BENCHMARKS.md is rebuilt from the previous results)
  --skip-slow   pass ``--skip-memory`` to bench_superres.py (skips the 1M-query memory runs)
  --args NAME "ARGS"  extra arguments for one script (repeatable), e.g.
                --args superres "--skip-quality --repeats 2"
NAME is a script's name without ``bench_`` and ``.py`` (patch_sample, model, derivatives,
superres).
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = ("patch_sample", "model", "derivatives", "superres")
SLOW_FLAGS = {"superres": ["--skip-memory"]}


def script_path(name: str) -> pathlib.Path:
    return HERE / f"bench_{name}.py"


def accepts(path: pathlib.Path, flag: str) -> bool:
    """Whether the script's --help mentions ``flag``."""
    result = subprocess.run([sys.executable, str(path), "--help"], capture_output=True,
                            text=True, cwd=HERE.parent)
    return result.returncode == 0 and flag in result.stdout


def commands(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, command line) of each script to run."""
    unknown = set(args.only or []) | set(args.skip or []) | {n for n, _ in args.args or []}
    unknown -= set(SCRIPTS)
    if unknown:
        raise SystemExit(f"unknown benchmark name(s) {sorted(unknown)}; expected {SCRIPTS}")
    extra: dict[str, list[str]] = {}
    for name, text in args.args or []:
        extra.setdefault(name, []).extend(shlex.split(text))
    out = []
    for name in SCRIPTS:
        path = script_path(name)
        if (args.only and name not in args.only) or name in (args.skip or []):
            continue
        if not path.is_file():
            print(f"run_all: {path.name} does not exist, skipped", file=sys.stderr)
            continue
        command = [sys.executable, str(path)]
        if args.quick and accepts(path, "--quick"):
            command.append("--quick")
        if args.skip_slow:
            command += SLOW_FLAGS.get(name, [])
        out.append((name, command + extra.get(name, [])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="do not run these scripts")
    parser.add_argument("--quick", action="store_true", help="smoke run of every script")
    parser.add_argument("--skip-slow", action="store_true", help="skip the slowest parts")
    parser.add_argument("--args", nargs=2, action="append", metavar=("NAME", "ARGS"),
                        help="extra arguments for one script")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    failed = []
    for name, command in commands(args):
        printable = " ".join(shlex.quote(part) for part in command)
        print(f"run_all: {printable}", file=sys.stderr)
        if args.list:
            continue
        start = time.perf_counter()
        result = subprocess.run(command, cwd=HERE.parent)
        seconds = time.perf_counter() - start
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"run_all: {name}: {status} in {seconds:.0f} s", file=sys.stderr)
        if result.returncode != 0:
            failed.append(name)
    if args.list:
        return 0
    report = subprocess.run([sys.executable, str(HERE / "make_report.py")], cwd=HERE.parent)
    if report.returncode != 0:
        failed.append("make_report")
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("run_all: BENCHMARKS.md regenerated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
