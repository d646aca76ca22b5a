"""`flows validate` loads the actions only for the contracts on their decorators (issue 14.4): registering
them must not pull in HTTP, the web server or the database, which made most of a new process's start.
Each check runs in a new interpreter, where nothing else has imported those libraries first."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = (
    "requests",
    "urllib3",
    "flask",
    "werkzeug",
    "peewee",
    "psycopg2",
    "storage.db",
    "storage.models",
    "storage.payments",
    "storage.bookings",
    "actions.omari_sandbox",
    "actions.paynow_sandbox",
)


def _in_new_process(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_registering_every_action_imports_no_http_web_or_database_library():
    out = _in_new_process(
        "import sys, actions\n"
        "from engine.registry import registry\n"
        "actions.load_all()\n"
        "print(' '.join(registry.names()))\n"
        f"print(' '.join('loaded:' + name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    assert {"omari.initiate", "omari.confirm", "paynow.start", "booking.lookup", "core.set"} <= set(out)
    assert [word for word in out if word.startswith("loaded:")] == []


def test_a_provider_still_builds_its_sandbox_and_reconcile_its_database_when_used():
    out = _in_new_process(
        "import sys\n"
        "from actions import providers\n"
        "client = providers.load().get('omari').sandbox_client()\n"
        "from actions.reconcile import reconcile\n"
        "print(type(client).__name__, type(client.session).__module__.split('.')[0])\n"
    )
    assert out == ["OmariClient", "requests"]
