"""How SQLite stores a datetime parameter: the text peewee reads back, whatever order values come in (the
adapter keeps the texts of the last few seconds, storage/db.py); and None, which has an adapter of its own."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from storage.db import execute, is_postgres, stored_time, time_param


def test_datetime_parameters_are_stored_as_their_own_text_however_they_repeat_and_interleave(sqlite_db):
    execute('CREATE TABLE "t" ("n" INTEGER, "at" TEXT)')
    start = datetime(2026, 1, 5, 9, 14, 3, 120000)
    values = [start + timedelta(microseconds=i % 7 * 250_001) for i in range(60)]
    values += [values[3]] * 5 + [start.replace(microsecond=0)]  # one object again and again; no fraction
    values += [values[10], values[11], values[10], values[12], values[11], values[10]]  # two kept, a third

    def write(offset: int) -> None:
        for n, value in enumerate(values):
            execute('INSERT INTO "t" VALUES (?, ?)', (offset + n, value))

    in_four_threads(write, [k * 1000 for k in range(4)])

    rows = execute('SELECT "n", "at" FROM "t"').fetchall()
    assert len(rows) == 4 * len(values)
    for n, text in rows:
        assert text == values[n % 1000].isoformat(" ") and stored_time(text) == values[n % 1000]


def test_more_values_than_the_adapter_keeps_come_back_as_their_own_text(sqlite_db):
    execute('CREATE TABLE "t" ("n" INTEGER, "at" TEXT)')
    start = datetime(2026, 1, 5, 9, 14, 3, 120000)
    values = [start + timedelta(seconds=i) for i in range(6)]
    order = [0, 1, 2, 3, 4, 5, 0, 5, 1, 4, 2, 3, 0, 0, 5]
    for n, i in enumerate(order):
        execute('INSERT INTO "t" VALUES (?, ?)', (n, values[i]))

    rows = execute('SELECT "n", "at" FROM "t" ORDER BY "n"').fetchall()
    assert [stored_time(text) for _, text in rows] == [values[i] for i in order]
    assert [text for _, text in rows] == [values[i].isoformat(" ") for i in order]


def test_times_in_more_seconds_than_the_adapter_keeps_interleaved_in_threads_keep_their_own_text(sqlite_db):
    # a store's three seconds (sent_at, now, now less a minute), then a second the adapter has to forget others for
    execute('CREATE TABLE "t" ("n" INTEGER, "at" TEXT)')
    start = datetime(2026, 1, 5, 9, 14, 3, 120000)
    values = [start + timedelta(seconds=i % 5 - 60 * (i % 3), microseconds=i * 1_001) for i in range(40)]
    values += [start.replace(microsecond=0) - timedelta(seconds=i) for i in range(12)]  # whole seconds

    def write(k: int) -> None:  # each thread from another place in the list
        for j in range(len(values)):
            execute('INSERT INTO "t" VALUES (?, ?)', (k * 1000 + j, values[(j + k) % len(values)]))

    in_four_threads(write, list(range(4)))

    rows = execute('SELECT "n", "at" FROM "t"').fetchall()
    assert len(rows) == 4 * len(values)
    for n, text in rows:
        value = values[(n % 1000 + n // 1000) % len(values)]
        assert text == value.isoformat(" ") and stored_time(text) == value


def test_the_adapter_writes_isoformat_s_text_across_seconds_days_and_going_back(sqlite_db):
    start = datetime(2026, 12, 31, 23, 59, 58, 999_999)
    values = [start + timedelta(microseconds=i) for i in (0, 1, 2, 1_000_000, 2_000_000, 2_000_001)]
    values += [start, start.replace(microsecond=0), start.replace(microsecond=1), values[2], values[-1]]
    values += [datetime(999, 1, 2, 3, 4, 5, 6), datetime(999, 1, 2, 3, 4, 5), datetime.min, datetime.max]
    values += [start.replace(tzinfo=timezone.utc), start.replace(tzinfo=timezone(timedelta(hours=2)), microsecond=0)]
    values += [datetime(2026, 1, 5, 9, 14, 3, 120_000, fold=1)]

    assert [execute("SELECT ?", (value,)).fetchone()[0] for value in values] == [v.isoformat(" ") for v in values]


def test_none_parameters_are_stored_as_null_and_compare_as_null(sqlite_db):
    execute('CREATE TABLE "t" ("a" TEXT, "b" INTEGER)')
    execute('INSERT INTO "t" VALUES (?, ?)', (None, None))

    assert execute('SELECT typeof("a"), typeof("b"), "a" IS ?, "b" = ? FROM "t"', (None, None)).fetchone() == (
        "null",
        "null",
        1,
        None,
    )


def test_a_time_made_once_as_a_parameter_is_stored_and_read_back_as_that_time(db):
    execute('CREATE TABLE "t" ("n" INTEGER, "at" TIMESTAMP)')
    value = datetime(2026, 1, 5, 9, 14, 3, 120000)
    param = time_param(value)
    for n in range(3):  # one parameter, made once, passed by several statements (a save's now)
        execute('INSERT INTO "t" VALUES (?, ?)', (n, param))

    rows = execute('SELECT "n", "at" FROM "t" ORDER BY "n"').fetchall()
    assert [(n, stored_time(at)) for n, at in rows] == [(0, value), (1, value), (2, value)]
    if not is_postgres():  # the text a datetime parameter is stored as, which peewee reads back
        assert [at for _, at in rows] == [value.isoformat(" ")] * 3


def in_four_threads(write, args: list[int]) -> None:
    """write(arg) for each of the four args, each on its own thread, all at once; back when all are done."""
    threads = [threading.Thread(target=write, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
