"""How long `flows --help` takes as a fresh process. Goal: < 0.3 s.

    python bench/cli_startup.py [--runs 9]

Runs the installed `flows` script (or `python -m cli` when it is not on PATH), prints every run, then
the median and the spread (min-max), and the bare interpreter's start for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from benchkit import report, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    script = shutil.which("flows")
    help_cmd = [script, "--help"] if script else [sys.executable, "-m", "cli", "--help"]
    timed(help_cmd)  # warm the file cache
    report(f"{' '.join(os.path.basename(c) for c in help_cmd)}", [timed(help_cmd) for _ in range(args.runs)])
    report("python -c pass (the interpreter alone)", [timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)])
    report(
        "python -c 'import cli' (our imports)", [timed([sys.executable, "-c", "import cli"]) for _ in range(args.runs)]
    )


if __name__ == "__main__":
    main()
