"""The payment conversation harness: the shipped flows stored and loaded like `flows load` does, the
persisted turn path (channels/turns.handle_message), real storage and the in-process O'mari sandbox, all
on one movable clock.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from itertools import count
from pathlib import Path

from click.testing import CliRunner

import actions
from cli import main
from actions.omari_sandbox import OmariSandbox
from actions.paynow_sandbox import PaynowSandbox
from channels import expiry, flowcache, turns
from channels.terminal import render_outbound
from engine.context import TurnContext
from engine.load import load_paths
from engine.messages import Inbound, Outbound
from engine.registry import registry
from storage import flowstore, outbox, payments
from storage.bookings import add_booking, find_booking
from storage.models import Contact, PaymentTransaction, Session
from storage.settings import Settings
from clock import START, Clock  # noqa: F401  (re-exported for the tests that use this kit)

REPO = Path(__file__).resolve().parents[2]
PHONE = "263771234567"
REF = "BK-SLYKER-TECH-20251023"
TOUR = "Victoria Falls 3-day safari"


def store_shipped_flows(now: datetime) -> None:
    actions.load_all()
    report = load_paths([str(REPO / "flows")], registry)
    assert report.ok, [str(p) for p in report.problems]
    for name, (file, text) in report.sources.items():
        flowstore.store(name, text, file, now)


class Shop:
    """A booking, the shipped flows, the sandbox and a customer's phone."""

    def __init__(self, total: str = "300.00", paid: str | None = None) -> None:
        self.clock = Clock()
        self.sandbox = OmariSandbox(clock=self.clock)
        self.paynow = PaynowSandbox(clock=self.clock)
        store_shipped_flows(self.clock())
        add_booking(REF, "Tendai Moyo", TOUR, total, paid)
        self.flows = flowcache.load_flowset(registry)
        self.settings = Settings(omari_channel="WEB")
        self.ctx = TurnContext(
            registry=registry,
            clock=self.clock,
            services={"omari": self.sandbox.client(), "paynow": self.paynow.client(), "settings": self.settings},
        )
        self._ids = count(1)

    def send(
        self,
        text: str | None = None,
        *,
        kind: str = "text",
        reply_id: str | None = None,
        message_id: str | None = None,
        contact: str = PHONE,
    ) -> list[Outbound]:
        """One message from the customer through the persisted turn path; the replies it brought."""
        inbound = Inbound(
            contact=contact,
            message_id=message_id or f"wamid.{next(self._ids)}",
            text=text,
            kind=kind,
            reply_id=reply_id,
            timestamp=self.clock(),
        )
        return turns.handle_message(inbound, self.flows, self.ctx).outbound

    def say(self, text: str, **kw) -> str:
        """Send text; all replies as the customer reads them (buttons numbered), blank-line separated."""
        return "\n\n".join(render_outbound(o) for o in self.send(text, **kw))

    def pay_until_otp(self, amount: str = "50", wallet: str = "1", phone: str = PHONE) -> str:
        for text in ("pay", REF, amount, wallet):
            self.say(text)
        return self.say(phone)

    def lose_the_otp_answer(self, fault: str = "timeout_after") -> str:
        """Type the OTP while /request's answer is lost (O'mari took the money) and the /query asked at
        once cannot tell either (HTTP 500): the payment is left PENDING for reconcile.
        """
        self.sandbox.inject("request", fault)
        self.sandbox.inject("query", "http_500")
        return self.say(self.sandbox.last_otp(PHONE))

    def expire_due(self) -> int:
        return expiry.expire_due(self.ctx, self.flows, self.clock())

    # ── what the customer and the operator can see ─────────────────────────────────────────────────────

    def booking(self):
        return find_booking(REF)

    def paid(self) -> Decimal:
        from storage.money import from_minor

        return from_minor(self.booking().paid_minor)

    def transactions(self) -> list[PaymentTransaction]:
        return list(PaymentTransaction.select().order_by(PaymentTransaction.id))

    def transaction(self) -> PaymentTransaction:
        rows = self.transactions()
        assert len(rows) == 1, f"expected one transaction, found {len(rows)}"
        return rows[0]

    def statuses(self, row: PaymentTransaction | None = None) -> list[str]:
        return [h["status"] for h in payments.history(payments.get((row or self.transaction()).reference))]

    def session_status(self, contact: str = PHONE) -> str:
        return Session.select().join(Contact).where(Contact.key == contact).get().status

    def session_vars(self, contact: str = PHONE) -> str:
        return Session.select().join(Contact).where(Contact.key == contact).get().vars

    def outbox_texts(self, contact: str = PHONE) -> list[str]:
        contact_id = Contact.get(Contact.key == contact).id
        return [p["text"] for p in outbox.for_contact(contact_id)]


def flows(url: str, *args: str, input: str | None = None, **env: str):
    """Run `flows ARGS` as the operator does: DATABASE_URL=url, no O'mari API configured unless env says so."""
    env = {"DATABASE_URL": url, "OMARI_API_BASE_URL": "", "OMARI_MERCHANT_KEY": "", **env}
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)
