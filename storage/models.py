"""Peewee models. Money is integer minor units (cents) plus a currency code; Decimal in Python.

Timestamps are naive UTC datetimes.
"""

from __future__ import annotations

import peewee as pw

from .db import database


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Contact(BaseModel):
    key = pw.CharField(max_length=128, unique=True)  # chosen at first contact (user_id, else wa_id); never changes
    wa_id = pw.CharField(max_length=32, null=True, unique=True)  # the phone number, when Meta sends one
    profile_name = pw.CharField(max_length=256, null=True)
    created_at = pw.DateTimeField()
    last_seen_at = pw.DateTimeField(null=True)
    # Meta's business-scoped user id (BSUID), its parent id across a business portfolio, and the username
    user_id = pw.CharField(max_length=128, null=True, unique=True)
    parent_user_id = pw.CharField(max_length=128, null=True)
    username = pw.CharField(max_length=128, null=True)


class FlowVersion(BaseModel):
    name = pw.CharField(max_length=64)
    version = pw.IntegerField()
    content_hash = pw.CharField(max_length=64)
    source = pw.TextField()
    file = pw.CharField(max_length=512)
    loaded_at = pw.DateTimeField()

    class Meta:
        indexes = ((("name", "version"), True),)


class Session(BaseModel):
    """One contact's conversation; one row per contact (the live one), rewritten each turn."""

    contact = pw.ForeignKeyField(Contact, unique=True, on_delete="CASCADE")
    flow = pw.CharField(max_length=64, null=True)
    flow_version = pw.IntegerField(null=True)
    step = pw.CharField(max_length=128, null=True)
    vars = pw.TextField(default="{}")  # JSON
    attempts = pw.IntegerField(default=0)
    status = pw.CharField(max_length=16, default="ended")  # active | ended | expired (session_active: active ones)
    started_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField(null=True)
    expires_at = pw.DateTimeField(null=True)  # not indexed: a turn moves it (expiry_check_at, below)
    # When the expiry sweep should look at this session next: a lower bound of expires_at (never later than it
    # while the conversation is active), indexed where set. A turn that pushes expires_at later leaves it
    # alone, so the index is written when a conversation starts or its expiry comes nearer, not on every
    # turn; the sweep moves it up to expires_at, or clears it, when it finds the session not due (see
    # storage/sessions.py, due_for_expiry).
    expiry_check_at = pw.DateTimeField(null=True)
    # The claim (lease) that serialises one contact's turns without holding a database lock across an
    # action's HTTP call: see storage/sessions.py.
    claimed_by = pw.CharField(max_length=128, null=True)
    claimed_until = pw.DateTimeField(null=True)
    # Counts the saves of the state (storage/sessions.py): a turn run on a state read without a claim is saved
    # only while the count is as it read it, one integer compared instead of every state column.
    revision = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])


# Expiry takes the sessions whose expiry_check_at has come (active ones of a flow with an expiry, and ones
# that ended since their last check); `flows list`, `flows load` and load_flowset() count active
# conversations per flow version from session_active alone. Partial, so a turn writes neither unless the
# value moves: SQLite rewrites an index whose column a turn sets, and a NULL one is in neither.
Session.add_index(
    Session.index(Session.expiry_check_at, name="session_expiry_check").where(Session.expiry_check_at.is_null(False))
)
Session.add_index(
    Session.index(Session.flow, Session.flow_version, name="session_active").where(Session.status == "active")
)


class InboxMessage(BaseModel):
    channel_message_id = pw.CharField(max_length=256, unique=True)
    # No index on contact_id: each query by contact is of unhandled messages (the partial indexes below), and
    # no contact is ever deleted (a cascade, if one were, would scan).
    contact = pw.ForeignKeyField(Contact, on_delete="CASCADE", index=False)
    payload = pw.TextField()  # JSON: the parsed Inbound (and the raw channel message)
    sent_at = pw.DateTimeField()  # the channel's timestamp: order of handling within a contact
    received_at = pw.DateTimeField()
    processed_at = pw.DateTimeField(null=True)
    error = pw.TextField(null=True)
    # turns that failed on this message (a worker gives up at a cap); a database default, since the inbox
    # is written with plain SQL
    attempts = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])


# Workers look for the oldest unprocessed message, of any contact and of one contact; partial indexes keep
# those lookups the size of the backlog, not of the millions of processed rows kept for audit, and a
# message handled as it arrives (stored processed) is written into neither.
InboxMessage.add_index(
    InboxMessage.index(InboxMessage.sent_at, name="inbox_message_pending").where(InboxMessage.processed_at.is_null())
)
InboxMessage.add_index(
    InboxMessage.index(InboxMessage.contact, InboxMessage.sent_at, name="inbox_message_pending_contact").where(
        InboxMessage.processed_at.is_null()
    )
)


class OutboxMessage(BaseModel):
    contact = pw.ForeignKeyField(Contact, on_delete="CASCADE", index=False)  # pending rows: indexed below
    payload = pw.TextField()  # JSON: Outbound.as_dict()
    status = pw.CharField(max_length=16, default="pending")  # pending | sent | failed
    attempts = pw.IntegerField(default=0)
    next_attempt_at = pw.DateTimeField()
    channel_message_id = pw.CharField(max_length=256, null=True)  # the wamid returned; receipts find rows by it
    delivery_status = pw.CharField(max_length=16, null=True)  # sent | delivered | read | failed
    error = pw.TextField(null=True)
    created_at = pw.DateTimeField()
    sent_at = pw.DateTimeField(null=True)


# Senders take a contact's message only when no earlier one of that contact is still pending; this partial
# index makes that check one lookup per row even with a backlog of thousands (Graph down for an hour), and
# the claim finds the pending rows themselves in it (the backlog, never the sent history).
OutboxMessage.add_index(
    OutboxMessage.index(OutboxMessage.contact, OutboxMessage.id, name="outbox_message_pending_contact").where(
        OutboxMessage.status == "pending"
    )
)
# /metrics counts the outbox by status: the sent and failed rows here (the sender writes it, a turn does not),
# the pending ones in outbox_message_pending_contact.
OutboxMessage.add_index(
    OutboxMessage.index(OutboxMessage.status, name="outbox_message_done").where(OutboxMessage.status != "pending")
)
# Receipts find a sent message by its wamid; a reply is inserted without one, so a partial index is not
# written on the insert of every turn (only when the sender records the wamid).
OutboxMessage.add_index(
    OutboxMessage.index(OutboxMessage.channel_message_id, name="outbox_message_wamid").where(
        OutboxMessage.channel_message_id.is_null(False)
    )
)


class Booking(BaseModel):
    reference = pw.CharField(max_length=64)
    reference_key = pw.CharField(max_length=64, unique=True)  # reference upper-cased and stripped
    customer = pw.CharField(max_length=256)
    tour = pw.CharField(max_length=256)
    currency = pw.CharField(max_length=3, default="USD")
    total_minor = pw.BigIntegerField()
    paid_minor = pw.BigIntegerField(default=0)
    payment_status = pw.CharField(max_length=8, default="UNPAID")  # UNPAID | PARTIAL | PAID
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()


class PaymentTransaction(BaseModel):
    reference = pw.CharField(max_length=36, unique=True)  # our UUID, sent to O'mari
    booking = pw.ForeignKeyField(Booking, backref="transactions", on_delete="RESTRICT")
    contact_key = pw.CharField(max_length=128, null=True)
    msisdn = pw.CharField(max_length=12)
    amount_minor = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    wallet = pw.CharField(max_length=32)  # what the customer picked: ecocash | onemoney | zimswitch
    channel = pw.CharField(max_length=8)  # the API channel: WEB | POS
    status = pw.CharField(max_length=12, index=True)
    otp_reference = pw.CharField(max_length=64, null=True)
    otp_attempts = pw.IntegerField(default=0)
    payment_reference = pw.CharField(max_length=128, null=True)
    debit_reference = pw.CharField(max_length=128, null=True)
    response_code = pw.CharField(max_length=16, null=True)
    error_message = pw.TextField(null=True)
    idempotency_key = pw.CharField(max_length=256, unique=True)
    status_history = pw.TextField(default="[]")  # JSON list of {status, at}
    applied_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()
    completed_at = pw.DateTimeField(null=True)
    # Set when O'mari's answer could not be believed (an unknown status word, another amount): the payment
    # waits for a person, with the reason; cleared when a later answer settles it.
    review_reason = pw.TextField(null=True)
    review_at = pw.DateTimeField(null=True)
    # Which payment provider takes it (actions/providers.py): "omari" (every row before 0011) or "paynow";
    # poll_url is where that provider answers its status (Paynow's pollurl; None for O'mari).
    provider = pw.CharField(max_length=32, default="omari", constraints=[pw.SQL("DEFAULT 'omari'")])
    poll_url = pw.TextField(null=True)


class ActionResult(BaseModel):
    """The stored result of an action call, so a repeated call with the same key does not act twice."""

    idempotency_key = pw.CharField(max_length=256, unique=True)
    action = pw.CharField(max_length=128)
    outcome = pw.CharField(max_length=64)
    data = pw.TextField(default="null")  # JSON
    created_at = pw.DateTimeField()


class Event(BaseModel):
    """Audit log: turns' events, payment status changes, operator actions."""

    at = pw.DateTimeField(index=True)
    kind = pw.CharField(max_length=64)
    contact_key = pw.CharField(max_length=128, null=True)
    subject = pw.CharField(max_length=128, null=True, index=True)  # e.g. a transaction reference
    detail = pw.TextField(default="{}")  # JSON, never a secret


class DeadLetter(BaseModel):
    """A webhook delivery, or one message of it, that could never be stored: kept as received for a person
    (storage/deadletters.py); Meta was answered 200 so that it does not retry it for days."""

    received_at = pw.DateTimeField(index=True)
    reason = pw.TextField()
    item = pw.CharField(max_length=256, null=True)  # the message id that failed, "statuses", or None: the whole body
    body = pw.BlobField()  # the POST body, byte for byte
    digest = pw.CharField(max_length=64, unique=True)  # sha256 of body and item: a redelivery adds no row


class EarlyReceipt(BaseModel):
    """A delivery receipt that named a wamid no outbox row holds yet: Meta can report "sent" before the
    sender has recorded the id its post returned. Kept (the highest status only) until the sweep finds the
    row (storage/outbox.py, apply_early_receipts), or for EARLY_RECEIPT_KEEP when no row ever takes it (a
    message sent from outside convoflow on the same number)."""

    channel_message_id = pw.CharField(max_length=256, unique=True)
    status = pw.CharField(max_length=16)  # sent | delivered | read | failed
    error = pw.TextField(null=True)
    received_at = pw.DateTimeField(index=True)


class Heartbeat(BaseModel):
    """One row per serving process, rewritten by each readiness check (/readyz): proof that a write commits."""

    process = pw.CharField(max_length=128, unique=True)  # host:pid
    checked_at = pw.DateTimeField()


ALL_MODELS = [
    Contact,
    FlowVersion,
    Session,
    InboxMessage,
    OutboxMessage,
    Booking,
    PaymentTransaction,
    ActionResult,
    Event,
    DeadLetter,
    EarlyReceipt,
    Heartbeat,
]
