"""gunicorn settings for the webhook, so it logs and counts like `flows serve`:

    gunicorn -c python:channels.gunicorn_conf -w 2 -b 127.0.0.1:8080 'channels.whatsapp:create_from_env(workers=2)'

Logs: gunicorn's own lines go through convoflow's handler (LOG_LEVEL, LOG_FORMAT=text|json), like the app's.
Metrics: with PROMETHEUS_MULTIPROC_DIR set, the folder is emptied when gunicorn starts (old counts would be
added in) and a worker's files are retired when it exits, so /metrics answers the same from any worker.
"""

from __future__ import annotations

import glob
import os

from channels.metrics import multiprocess_dir, process_exited
from storage.settings import Settings

_settings = Settings.from_env()
loglevel = _settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"convoflow": {"()": "storage.logs.handler", "fmt": _settings.log_format}},
    "root": {"level": _settings.log_level, "handlers": ["convoflow"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": ["convoflow"], "propagate": False},
        "gunicorn.access": {"level": _settings.log_level, "handlers": ["convoflow"], "propagate": False},
    },
}


def on_starting(server) -> None:
    shared = multiprocess_dir()  # an existing folder: the settings check that
    if shared:
        for stale in glob.glob(os.path.join(shared, "*.db")):
            os.remove(stale)


def child_exit(server, worker) -> None:
    process_exited(worker.pid)
