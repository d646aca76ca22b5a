"""Bookings: find (ignoring case and surrounding space), add, list, import from CSV.

A booking's reference is kept as typed; `reference_key` (stripped, upper-cased) is unique and is what
lookups use, so "bk-1 " finds "BK-1" through the index. Amounts are cents in the database.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterator, TextIO

import peewee

from .db import execute, utcnow, write_transaction
from .models import Booking
from .money import CURRENCIES, MoneyError, format_amount, from_minor, parse_amount, to_minor

UNPAID, PARTIAL, PAID = "UNPAID", "PARTIAL", "PAID"
CSV_COLUMNS = ("reference", "customer", "tour", "total", "paid", "currency")
_REQUIRED_COLUMNS = ("reference", "customer", "tour", "total")
_BATCH = 500
_FIND_SQL = (
    "SELECT "
    + ", ".join('"%s"' % f.column_name for f in Booking._meta.sorted_fields)
    + ' FROM "booking" WHERE "reference_key" = ?'
)


class BookingError(ValueError):
    """A booking that cannot be stored as given; the message names the field."""


class BookingExists(BookingError):
    """A booking with that reference (ignoring case and surrounding space) is already stored."""


@dataclass(frozen=True)
class ImportProblem:
    line: int  # the line of the CSV file (1 is the header)
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class BookingImportError(BookingError):
    """A CSV file with bad rows: nothing was imported. Carries every problem, by line."""

    def __init__(self, problems: list[ImportProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def reference_key(reference: str) -> str:
    return (reference or "").strip().upper()


def payment_status(total_minor: int, paid_minor: int) -> str:
    """UNPAID, PARTIAL or PAID from the amounts in cents."""
    if paid_minor <= 0:
        return UNPAID
    return PAID if paid_minor >= total_minor else PARTIAL


def find_booking(reference: str) -> Booking | None:
    """The booking with this reference, ignoring case and surrounding space (unique index lookup)."""
    key = reference_key(reference)
    if not key:
        return None
    # A lookup runs on most payment turns: fixed SQL and the row made into a Booking here, as peewee's
    # cursor wrapper would, cost a quarter of Booking.raw (which resolves its columns on every call).
    row = execute(_FIND_SQL, (key,)).fetchone()  # unique key: one row at most, the cursor is done
    if row is None:
        return None
    booking = Booking(__no_default__=1, **{f.name: f.python_value(v) for f, v in zip(Booking._meta.sorted_fields, row)})
    booking._dirty.clear()
    return booking


@dataclass(frozen=True)
class NewBooking:
    """A checked booking, ready to insert."""

    reference: str
    customer: str
    tour: str
    currency: str
    total_minor: int
    paid_minor: int

    def row(self, now: datetime) -> dict:
        return {
            "reference": self.reference,
            "reference_key": reference_key(self.reference),
            "customer": self.customer,
            "tour": self.tour,
            "currency": self.currency,
            "total_minor": self.total_minor,
            "paid_minor": self.paid_minor,
            "payment_status": payment_status(self.total_minor, self.paid_minor),
            "created_at": now,
            "updated_at": now,
        }


def check_booking(
    reference: str,
    customer: str,
    tour: str,
    total: str | Decimal,
    paid: str | Decimal | None = None,
    currency: str | None = None,
) -> NewBooking:
    """Check a booking's fields (amounts as typed or as Decimals); raise BookingError naming the field."""
    reference = (reference or "").strip()
    if not reference:
        raise BookingError("reference is empty")
    if len(reference) > Booking.reference.max_length or any(ch.isspace() for ch in reference):
        raise BookingError(
            f"reference '{reference}' must be at most {Booking.reference.max_length} characters, without spaces"
        )
    customer, tour = (customer or "").strip(), (tour or "").strip()
    if not customer:
        raise BookingError("customer is empty")
    if not tour:
        raise BookingError("tour is empty")
    currency = (currency or "USD").strip().upper() or "USD"
    if currency not in CURRENCIES:
        raise BookingError(f"currency '{currency}' is not one of {', '.join(CURRENCIES)}")
    try:
        total_minor = to_minor(total if isinstance(total, Decimal) else parse_amount(total))
        paid_raw = paid if paid not in (None, "") else Decimal(0)
        paid_minor = to_minor(paid_raw if isinstance(paid_raw, Decimal) else parse_amount(paid_raw))
    except MoneyError as e:
        raise BookingError(str(e)) from None
    if total_minor <= 0:
        raise BookingError("total must be more than 0")
    if paid_minor < 0:
        raise BookingError("paid cannot be negative")
    if paid_minor > total_minor:
        raise BookingError(
            f"paid {format_amount(from_minor(paid_minor))} is more than the total "
            f"{format_amount(from_minor(total_minor))}"
        )
    return NewBooking(reference, customer, tour, currency, total_minor, paid_minor)


def add_booking(
    reference: str,
    customer: str,
    tour: str,
    total: str | Decimal,
    paid: str | Decimal | None = None,
    currency: str | None = None,
    now: datetime | None = None,
) -> Booking:
    """Store one booking; raise BookingExists when its reference is taken, BookingError when a field is bad."""
    booking = check_booking(reference, customer, tour, total, paid, currency)
    try:
        with write_transaction():
            return Booking.create(**booking.row(now or utcnow()))
    except peewee.IntegrityError:
        raise BookingExists(f"booking '{booking.reference}' already exists") from None


def list_bookings(status: str | None = None) -> Iterator[Booking]:
    """Every booking by reference, streamed from the database rather than loaded at once."""
    query = Booking.select().order_by(Booking.reference_key)
    if status is not None:
        query = query.where(Booking.payment_status == status)
    return query.iterator()


def as_dict(booking: Booking) -> dict:
    """The JSON shape of `flows bookings show --json`: amounts as strings with two decimals."""
    return {
        "reference": booking.reference,
        "customer": booking.customer,
        "tour": booking.tour,
        "currency": booking.currency,
        "total_amount": format_amount(from_minor(booking.total_minor)),
        "amount_paid": format_amount(from_minor(booking.paid_minor)),
        "balance_due": format_amount(from_minor(max(booking.total_minor - booking.paid_minor, 0))),
        "payment_status": booking.payment_status,
    }


class _Rollback(Exception):
    pass


def _csv_columns(reader) -> list[str]:
    """The header row's column names; BookingImportError (line 1) when it is missing or wrong."""
    header = next(reader, None)
    if header is None:
        raise BookingImportError(
            [ImportProblem(1, "the file is empty; expected a header row: " + ",".join(CSV_COLUMNS))]
        )
    columns = [h.strip().lower() for h in header]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
    if unknown or missing or len(set(columns)) != len(columns):
        what = "; ".join(
            filter(
                None,
                [
                    f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                    f"missing column(s) {', '.join(missing)}" if missing else "",
                    "a column appears twice" if len(set(columns)) != len(columns) else "",
                ],
            )
        )
        raise BookingImportError([ImportProblem(1, f"{what}; expected: {','.join(CSV_COLUMNS)}")])
    return columns


class _CsvImport:
    """One import's rows checked and inserted in batches, with every problem by line."""

    def __init__(self, columns: list[str], stamp: datetime) -> None:
        self.columns, self.stamp = columns, stamp
        self.problems: list[ImportProblem] = []
        self.seen: dict[str, int] = {}  # reference key -> line, to report duplicates within the file
        self.batch: list[tuple[int, NewBooking]] = []
        self.count = 0

    def add(self, line: int, record: list[str]) -> None:
        if len(record) != len(self.columns):
            self.problems.append(ImportProblem(line, f"expected {len(self.columns)} fields, found {len(record)}"))
            return
        fields = dict(zip(self.columns, record))
        try:
            booking = check_booking(
                fields["reference"],
                fields["customer"],
                fields["tour"],
                fields["total"],
                fields.get("paid"),
                fields.get("currency"),
            )
        except BookingError as e:
            self.problems.append(ImportProblem(line, str(e)))
            return
        key = reference_key(booking.reference)
        if key in self.seen:
            self.problems.append(
                ImportProblem(line, f"reference '{booking.reference}' is also on line {self.seen[key]}")
            )
            return
        self.seen[key] = line
        self.batch.append((line, booking))
        self.count += 1
        if len(self.batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        keys = [reference_key(b.reference) for _, b in self.batch]
        taken = {k for (k,) in Booking.select(Booking.reference_key).where(Booking.reference_key.in_(keys)).tuples()}
        for line, b in self.batch:
            if reference_key(b.reference) in taken:
                self.problems.append(ImportProblem(line, f"booking '{b.reference}' already exists"))
        if not self.problems:
            Booking.insert_many([b.row(self.stamp) for _, b in self.batch]).execute()
        self.batch.clear()


def import_csv(source: TextIO | str, now: datetime | None = None, max_problems: int = 50) -> int:
    """Import bookings from CSV text or an open file (header: reference,customer,tour,total,paid,currency;
    paid and currency may be left out). All or nothing: any bad row -> BookingImportError with every
    problem by line (up to max_problems), and nothing stored. Returns the number imported.

    Rows are checked and inserted in batches inside one transaction, so a large file is never held in memory.
    """
    stream = io.StringIO(source) if isinstance(source, str) else source
    reader = csv.reader(stream)
    run = _CsvImport(_csv_columns(reader), now or utcnow())
    try:
        with write_transaction():
            for record in reader:
                if any(cell.strip() for cell in record):
                    run.add(reader.line_num, record)
                if len(run.problems) >= max_problems:
                    break
            if run.batch:
                run.flush()
            if run.problems:
                raise _Rollback
    except _Rollback:
        raise BookingImportError(sorted(run.problems, key=lambda p: p.line)[:max_problems]) from None
    return run.count


def add_to_paid(booking_id: int, amount_minor: int, now: datetime) -> Booking:
    """Add a payment to a booking's amount paid in one statement, which takes the row's write lock, so two
    payers never lose an update; sets UNPAID/PARTIAL/PAID. Call inside the transaction that records the
    payment (storage.payments.record_success does).
    """
    paid = Booking.paid_minor + amount_minor
    Booking.update(
        paid_minor=paid,
        payment_status=peewee.Case(None, [(paid >= Booking.total_minor, PAID), (paid > 0, PARTIAL)], UNPAID),
        updated_at=now,
    ).where(Booking.id == booking_id).execute()
    return Booking.get_by_id(booking_id)
