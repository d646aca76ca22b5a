"""`flows payments`: list, show and reconcile payments (O'mari, Paynow)."""

from __future__ import annotations

import click

from storage.payment_states import STATUSES as PAYMENT_STATUSES  # the one list, without the database

from .base import CliError, database


@click.group()
def payments() -> None:
    """Payments (O'mari, Paynow): list them, show one, settle the unfinished ones (reconcile)."""


@payments.command("list")
@click.option(
    "--status", type=click.Choice(PAYMENT_STATUSES, case_sensitive=False), help="Only payments in this status."
)
@click.option("--needs-person", is_flag=True, help="Only payments marked as needing a person.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many (newest first).")
@click.option("--json", "as_json", is_flag=True, help='A JSON list, amounts as "50.00" strings.')
def payments_list(status: str | None, needs_person: bool, limit: int | None, as_json: bool) -> None:
    """Payments, newest first; a payment that needs a person says so (NEEDS A PERSON: why)."""
    import json

    from storage import payments as store

    database()
    rows = [store.as_dict(row) for row in store.list_payments(status, limit, needing_person=needs_person)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        which = " ".join(
            filter(
                None,
                [
                    f"with status {status.upper()}" if status else "",
                    "marked as needing a person" if needs_person else "",
                ],
            )
        )
        click.echo("no payments" + (f" {which}" if which else ""))
        return
    for p in rows:
        mark = f"  NEEDS A PERSON: {p['needs_person']}" if p["needs_person"] else ""
        click.echo(
            f"{p['created_at']}  {p['reference']}  {p['booking']:<24} {p['amount']:>10} {p['currency']}  "
            f"{p['provider']:<6} {p['wallet']:<9} {p['status']:<9} {p['response_code'] or '':<4} {p['error_message'] or ''}{mark}".rstrip()
        )


@payments.command("show")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help='One JSON object, amounts as "50.00" strings.')
def payments_show(reference: str, as_json: bool) -> None:
    """One payment by its reference (our UUID): its fields and its status history."""
    import json

    from storage import payments as store

    database()
    row = store.get(reference)
    if row is None:
        raise CliError(f"no payment with reference '{reference.strip()}' (see `flows payments list`)")
    p = store.as_dict(row)
    if as_json:
        click.echo(json.dumps(p, indent=2, ensure_ascii=False))
        return
    for key, value in p.items():
        if key != "status_history":
            click.echo(f"{key + ':':<19}{'' if value is None else value}")
    click.echo("history:")
    for entry in p["status_history"]:
        click.echo(f"  {entry['at']}  {entry['status']}")


@payments.command("reconcile")
@click.option("--limit", type=click.IntRange(1), default=None, help="Settle at most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: every payment checked and the counts.")
def payments_reconcile(limit: int | None, as_json: bool) -> None:
    """Ask each payment's provider (O'mari /query, Paynow's poll URL) about PENDING payments and OTP_SENT
    ones past the payer's 10 minutes.

    Paid ones become SUCCESS and are applied to their booking once; refused ones FAILED (a stale OTP_SENT:
    EXPIRED); the customer is told through the outbox. No answer: left for the next run. An answer that
    cannot be believed (an unknown status word, another amount) leaves the payment PENDING and marks it as
    needing a person. Safe from cron, twice at once, and after a crash. Exit 0 when it ran and nothing
    needs a person, 1 when something does (or the settings are missing).
    """
    import json
    import logging

    from actions.providers import providers
    from actions.reconcile import reconcile
    from storage.db import utcnow
    from storage.settings import Settings, SettingsError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    database()
    try:
        clients, missing = providers.clients(Settings.from_env())
    except SettingsError as e:
        clients, missing = {}, {"settings": str(e)}
    if not clients:
        raise CliError(
            f"{'; '.join(missing.values())}: reconcile needs a payment provider's API (see docs/operations.md)"
        )
    report = reconcile(clients, now=utcnow(), limit=limit)
    counts = report.summary()
    if as_json:
        click.echo(
            json.dumps(
                {"settlements": [s.as_dict() for s in report.settlements], "summary": counts},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for kind, title in (("settled", "settled"), ("pending", "still pending"), ("needs_person", "needs a person")):
            for s in report.of_kind(kind):
                change = f"{s.before} → {s.after}" if s.after != s.before else f"{s.before} (unchanged)"
                told = "  customer told" if s.notified else ""
                click.echo(f"{title + ':':<16}{s.reference}  {change:<22} {s.note}{told}")
        click.echo(
            f"{counts['checked']} checked: {counts['settled']} settled ({counts['paid']} paid, {counts['failed']} failed, "
            f"{counts['expired']} expired), {counts['still_pending']} still pending, "
            f"{counts['needs_person']} need a person"
        )
    if counts["needs_person"]:
        raise CliError(
            f"{counts['needs_person']} payment(s) need a person: see `flows payments list --needs-person` "
            "and docs/operations.md"
        )


@payments.command("settle")
@click.argument("reference")
@click.option("--paid", "outcome", flag_value="paid", help="The money moved: SUCCESS, and credit the booking once.")
@click.option("--failed", "outcome", flag_value="failed", help="The money did not move: FAILED.")
@click.option("--why", required=True, help="What you checked (kept in the audit log), e.g. a support ticket.")
@click.option("--by", default=None, help="Who settles it (default: $USER).")
@click.option("--no-tell", is_flag=True, help="Do not message the customer about it.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def payments_settle(reference: str, outcome: str | None, why: str, by: str | None, no_tell: bool, yes: bool) -> None:
    """Settle an unfinished payment by hand (INITIATED, OTP_SENT or PENDING, e.g. one that needs a person),
    after checking with the provider what really happened. --paid credits the booking once; --failed
    fails it. Either clears the needs-a-person mark, tells the customer (unless --no-tell) and writes a
    `payment.settled_by_hand` audit event with who and why.
    """
    import getpass

    from actions.reconcile import CannotSettle, settle_by_hand
    from storage import payments as store
    from storage.db import utcnow

    if outcome is None:
        raise CliError("say how it ended: --paid or --failed", exit_code=2)
    if not why.strip():
        raise CliError("--why must say what you checked", exit_code=2)
    database()
    row = store.get(reference)
    if row is not None and row.status not in store.FINAL and not yes:
        p = store.as_dict(row)
        what = f"credit {p['amount']} {p['currency']} to booking {p['booking']}" if outcome == "paid" else "fail it"
        click.confirm(f"Payment {row.reference} is {row.status}. Settle it as {outcome} and {what}?", abort=True)
    try:
        s = settle_by_hand(
            reference, outcome == "paid", by=by or getpass.getuser(), why=why.strip(), now=utcnow(), tell=not no_tell
        )
    except CannotSettle as e:
        raise CliError(str(e)) from None
    told = "  customer told" if s.notified else ""
    click.echo(f"settled by hand: {s.reference}  {s.before} → {s.after}  {s.note}{told}")
