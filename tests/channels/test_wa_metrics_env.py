"""PROMETHEUS_MULTIPROC_DIR as people set it (issue 13.6): empty, as `.env.example` has it, is one process on
its own — not a folder named "" in the working directory."""

from __future__ import annotations

import os
import subprocess
import sys

from channel_harness import REPO

SCRIPT = """
from channels.metrics import Metrics
metrics = Metrics()
metrics.messages_in.inc(3)
print(metrics.messages_in.value(), [line for line in metrics.render().splitlines() if line.startswith("convoflow_messages_in_total")])
"""


def test_an_empty_multiprocess_dir_means_one_process(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", "PYTHONPATH": REPO}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0 ['convoflow_messages_in_total 3.0']"
    assert list(tmp_path.iterdir()) == []  # no counter_<pid>.db files left in the working directory
