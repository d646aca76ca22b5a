"""How long `flows --help` takes as a fresh process. Goal: < 0.3 s.

    python bench/cli_startup.py [--runs 9]

Runs the installed `flows` script (or `python -m cli` when it is not on PATH), prints every run, then
the median and the spread (min-max), and the bare interpreter's start for comparison.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return elapsed


def report(label: str, times: list[float]) -> None:
    print(f"{label}: " + " ".join(f"{t * 1000:.0f}" for t in times) + " ms")
    print(f"  median {statistics.median(times) * 1000:.0f} ms, spread {min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    script = shutil.which("flows")
    help_cmd = [script, "--help"] if script else [sys.executable, "-m", "cli", "--help"]
    timed(help_cmd)  # warm the file cache
    report(f"{' '.join(os.path.basename(c) for c in help_cmd)}", [timed(help_cmd) for _ in range(args.runs)])
    report("python -c pass (the interpreter alone)", [timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)])
    report("python -c 'import cli' (our imports)", [timed([sys.executable, "-c", "import cli"]) for _ in range(args.runs)])


if __name__ == "__main__":
    main()
