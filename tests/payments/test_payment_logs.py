"""Log lines about a payment written outside a customer's turn, by the workers' housekeeping (an expiry's
void) and by reconcile: they name the payment, as a turn's lines do, and leave nothing tagged behind on the
thread, whose next lines are about something else."""

from __future__ import annotations

import json

import pytest

from actions.reconcile import reconcile
from storage import logs

from payment_kit import Shop


@pytest.fixture
def shop(db):
    return Shop()


def omari_lines(json_logs) -> list[dict]:
    return [line for line in map(json.loads, json_logs.getvalue().splitlines()) if line["logger"] == "convoflow.omari"]


def test_an_expirys_void_is_logged_with_the_payment_and_its_conversation(shop, json_logs):
    shop.pay_until_otp()
    shop.clock.advance(minutes=11)
    json_logs.seek(0), json_logs.truncate()  # the lines written from here on
    assert shop.expire_due() == 1
    (void,) = omari_lines(json_logs)
    assert void["message"].startswith("omari POST /void")
    assert void["payment"] == shop.transaction().reference
    assert void["contact"] == "2637****4567" and void["flow"] == "omari_payment"
    assert logs.current() == {}


def test_reconcile_logs_each_query_with_its_payment(shop, json_logs):
    shop.pay_until_otp()
    shop.lose_the_otp_answer()
    json_logs.seek(0), json_logs.truncate()  # the lines written from here on
    reconcile(shop.sandbox.client(), now=shop.clock())
    (query,) = omari_lines(json_logs)
    assert query["message"].startswith("omari GET /query/")
    assert query["payment"] == shop.transaction().reference
    assert logs.current() == {}
