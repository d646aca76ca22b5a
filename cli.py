"""The `flows` command: the only place that prints for humans and picks exit codes.

Exit codes: 0 success, 1 invalid input or failed check, 2 usage error (click's own).
Imports of heavy modules happen inside commands so `flows --help` starts fast.
"""
from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="flows")
def main() -> None:
    """convoflow: WhatsApp conversations written as YAML.

    Start here: `flows demo` runs the payment conversation in this terminal on a local SQLite database
    and the built-in O'mari sandbox.
    """


# ── flows validate / flows chat (issue 2: the flow language) ────────────────────────────────────────

# ── flows db / flows load / flows list / flows bookings (issue 3: storage) ──────────────────────────

# ── flows payments / flows demo (issue 4: O'mari payments) ───────────────────────────────────────────

# ── flows serve / flows worker (issue 5: WhatsApp channel) ───────────────────────────────────────────


if __name__ == "__main__":
    sys.exit(main())
