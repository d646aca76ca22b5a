"""bench/validate.py: its generated flows validate clean, and its growth report reads validate's growth
against the floor's the way its lines say (the medians' ratios, and round by round)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

import validate as vb  # noqa: E402  (bench/validate.py)


def test_the_growth_report_reads_validate_against_the_floor(capsys):
    # Two rounds. Validate: 10 -> 50 ms and 20 -> 90 ms; the floor: 2 -> 12 ms and 4 -> 20 ms.
    times = {1000: [0.010, 0.020], 5000: [0.050, 0.090]}
    floors = {1000: [0.002, 0.004], 5000: [0.012, 0.020]}
    vb.report_growth(times, floors)
    out = capsys.readouterr().out
    # Medians: validate 15 -> 70 ms (4.67x), the floor 3 -> 16 ms (5.33x): 4.67 / 5.33 = 0.875.
    assert "5000 steps take 4.67x the time of 1000" in out
    assert "floor: 5000 steps take 5.33x the time of 1000" in out
    assert "validate's growth / the floor's: 0.88" in out
    # Round by round: 5.0 / 6.0 = 0.833 and 4.5 / 5.0 = 0.9, median 0.867.
    assert "(round by round 0.87, 0.83-0.90)" in out


def test_the_bench_runs_on_small_flows_and_prints_every_figure(tmp_path):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "validate.py"), "--small", "20", "--steps", "40"]
        + ["--large", "80", "--runs", "2", "--mistakes-runs", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for size in (20, 40, 80):
        assert f"floor, {size} steps" in out
    growth = re.findall(r"validate's growth / the floor's: (\d+\.\d+)", out)
    assert len(growth) == 2 and all(float(g) > 0 for g in growth), out
    assert "subprocess, 40 steps" in out and "imported without need: none" in out
