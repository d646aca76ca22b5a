"""Claiming a contact for a turn (see storage/sessions.py for the claim and its lease): the claim token,
claim-or-wait, and giving a claim back on a clean stop or after a database outage.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time

from engine.context import TurnContext
from storage import sessions
from storage.contacts import contact_id as find_contact
from storage.db import unavailable, write_transaction

# How long a caller waits for another worker to release a contact before giving up: a little more than
# the lease, so a claim left by a crashed process is taken over rather than reported busy.
WAIT = sessions.LEASE.total_seconds() + 10

# How long a turn thread whose turn a database outage cut short keeps trying to give its claim back.
GIVE_BACK_PATIENCE = 20.0


def token(worker_id: str | None) -> str:
    """A claim token unique per claim: the worker (or host, process and thread) plus a random part."""
    who = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    # 48 random bits from `random`, not os.urandom's system call (every turn makes a token): unguessability
    # is not needed, only uniqueness, and `random` is seeded afresh in each process, a forked one too.
    return "%s:%012x" % (who, random.getrandbits(48))  # printf-style: cheaper than an f-string's `:012x` spec


def claim_contact(
    contact: str,
    claim_token: str,
    ctx: TurnContext,
    wait: float,
    *,
    wa_id: str | None = None,
    profile_name: str | None = None,
) -> sessions.Claim:
    """Claim the contact, creating it when new (created and claimed in one commit); while another worker
    holds it, wait up to `wait` seconds. Raises sessions.ContactBusy when the wait runs out."""
    now = ctx.clock()
    with write_transaction():
        contact_id = find_contact(contact, now, wa_id=wa_id, profile_name=profile_name)
        claim = sessions.try_claim(contact_id, claim_token, now)
    return claim or _wait_for_claim(contact_id, claim_token, ctx, wait)


def _wait_for_claim(contact_id: int, claim_token: str, ctx: TurnContext, wait: float) -> sessions.Claim:
    deadline = time.monotonic() + wait
    pause = 0.0005
    while True:
        # Jitter: waiters on one contact should not wake in lockstep and collide again.
        time.sleep(pause * (0.5 + random.random()))
        claim = sessions.try_claim(contact_id, claim_token, ctx.clock())
        if claim is not None:
            return claim
        if time.monotonic() >= deadline:
            raise sessions.ContactBusy(f"contact {contact_id} stayed claimed by another worker for {wait:.0f} s")
        pause = min(pause * 2, 0.05)


# Ctrl-C and SIGTERM (which flows serve turns into SystemExit): a clean stop, not a crash.
STOPS = (KeyboardInterrupt, SystemExit)


class released_on_stop:
    """Ctrl-C or SIGTERM mid-turn is a clean stop, not a crash (STOPS): give the claim back at once so the
    contact is not held for the rest of the lease. (After a committed save the release matches no row.) A
    class, not a generator: it wraps every turn. (The optimistic turn, which has a try of its own around its
    turn, gives its claim back in an `except STOPS` clause instead: channels/optimistic.py.)
    """

    __slots__ = ("claim",)

    def __init__(self, claim: sessions.Claim) -> None:
        self.claim = claim

    def __enter__(self) -> None:
        pass

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and issubclass(exc_type, STOPS):
            sessions.release(self.claim)


def give_back(claim: sessions.Claim, patience: float = GIVE_BACK_PATIENCE) -> None:
    """Release a claim whose turn the database cut short, as soon as the database answers again (within
    `patience` seconds), so the contact's message runs again within seconds of the database's return
    rather than after the lease. Past that, the lease frees the contact."""
    deadline = time.monotonic() + patience
    while True:
        try:
            sessions.release(claim)
            return
        except Exception as error:
            if not unavailable(error) or time.monotonic() >= deadline:
                return
            time.sleep(0.25)
