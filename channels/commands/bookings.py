"""`flows bookings`: add, import, list and show the bookings customers pay for."""

from __future__ import annotations

import click

from .base import CliError, database


@click.group()
def bookings() -> None:
    """Add, import, list and show the bookings customers pay for."""


def _booking_line(b) -> str:
    from storage.bookings import as_dict

    d = as_dict(b)
    return (
        f"{d['reference']:<28} {d['payment_status']:<8} {d['currency']} total {d['total_amount']:>10}  "
        f"paid {d['amount_paid']:>10}  due {d['balance_due']:>10}  {d['customer']} — {d['tour']}"
    )


@bookings.command("add")
@click.argument("reference")
@click.option("--customer", required=True, help="The customer's name.")
@click.option("--tour", required=True, help="The tour booked.")
@click.option("--total", required=True, help="The total price, e.g. 300 or 300.00.")
@click.option("--paid", default="0", show_default=True, help="Already paid.")
@click.option("--currency", type=click.Choice(["USD", "ZWG"], case_sensitive=False), default="USD", show_default=True)
def bookings_add(reference: str, customer: str, tour: str, total: str, paid: str, currency: str) -> None:
    """Add one booking (its REFERENCE is unique, ignoring case)."""
    from storage.bookings import BookingError, add_booking

    database()
    try:
        booking = add_booking(reference, customer, tour, total, paid=paid, currency=currency.upper())
    except BookingError as e:
        raise CliError(str(e)) from None
    click.echo(f"added {_booking_line(booking)}")


@bookings.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def bookings_import(file) -> None:
    """Import bookings from a CSV FILE with the header reference,customer,tour,total,paid,currency.

    All or nothing: a bad row is reported by its line number and nothing is imported (exit 1).
    """
    from storage.bookings import BookingImportError, import_csv

    database()
    try:
        count = import_csv(file)
    except BookingImportError as e:
        for problem in e.problems:
            click.echo(f"{file.name}:{problem.line}: {problem.message}", err=True)
        click.echo(f"{file.name}: {len(e.problems)} bad row(s): nothing imported", err=True)
        raise CliError() from None
    click.echo(f"imported {count} booking{'s' if count != 1 else ''} from {file.name}")


@bookings.command("list")
@click.option(
    "--status",
    type=click.Choice(["UNPAID", "PARTIAL", "PAID"], case_sensitive=False),
    help="Only bookings with this payment status.",
)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the objects `bookings show --json` prints.")
def bookings_list(status: str | None, as_json: bool) -> None:
    """Every booking, by reference."""
    import json

    from storage.bookings import as_dict, list_bookings

    database()
    found = list(list_bookings(status.upper() if status else None))
    if as_json:
        click.echo(json.dumps([as_dict(b) for b in found], indent=2, ensure_ascii=False))
        return
    for booking in found:
        click.echo(_booking_line(booking))
    if not found:
        click.echo("no bookings")


@bookings.command("show")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (amounts as strings with two decimals).")
def bookings_show(reference: str, as_json: bool) -> None:
    """One booking by REFERENCE (any case, surrounding space ignored)."""
    import json

    from storage.bookings import as_dict, find_booking

    database()
    booking = find_booking(reference)
    if booking is None:
        raise CliError(f"no booking with reference '{reference.strip()}'")
    d = as_dict(booking)
    if as_json:
        click.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    for key in (
        "reference",
        "customer",
        "tour",
        "currency",
        "total_amount",
        "amount_paid",
        "balance_due",
        "payment_status",
    ):
        click.echo(f"{key.replace('_', ' ') + ':':<16} {d[key]}")
