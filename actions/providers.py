"""Payment providers behind one interface: O'mari (`actions/omari*.py`), Paynow (`actions/paynow*.py`).

A provider is the one place that knows a gateway. Everything else works through this interface and the
`provider` column of the payment row: storage/payments.py (the row, its statuses, applying money once),
reconcile (`actions/reconcile.py`, written once), the services the actions receive and `flows payments`.

A provider class, registered with ``@providers.register``, wraps the gateway's protocol client (what
``services[name]`` holds) and answers four calls, each an ``Answer``:

- ``start(row)``: ask the gateway to take the payment (O'mari /auth texts an OTP; Paynow's express
  checkout prompts the payer's phone). A refused start fails the payment. So does an unknown answer when
  no money can move before a confirm (O'mari); where the payer may pay right after the start
  (``start_moves_money``, Paynow) an unknown answer leaves it PENDING and marked for a person.
- ``confirm(row, code)``: complete it with what the payer typed (O'mari /request); a provider whose payer
  approves on their phone has nothing to confirm and answers unknown, so the caller asks ``query``.
- ``query(row)``: what the gateway knows now (O'mari /query, Paynow's poll URL).
- ``void(row)``: cancel an unfinished payment, best effort.

What counts as success or unknown is the provider's: an Answer's outcome is ``success`` (the gateway said
yes, in a shape we can read and trust), ``failed`` (it clearly said no) or ``unknown`` (no answer, or one
we cannot read or verify — never a failure, since the money may have moved). ``verdict(answer)`` reads a
status query into a ``Verdict`` reconcile acts on, and ``wording(code)`` gives the payer words for a code.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping

if TYPE_CHECKING:
    import requests

SUCCESS, FAILED, UNKNOWN = "success", "failed", "unknown"

# What a status query says, once the provider has read it (reconcile acts on these alone):
PAID = "paid"  # the money moved: credit it (when the amount and currency are ours)
WAITING = "waiting"  # the payer has not acted yet: leave it, until the payer's time is up
EXPIRED = "expired"  # the payer's time ran out at the gateway
FAILED_VERDICT = "failed"  # refused, cancelled or voided: no money moved
NOT_PAID = "not_paid"  # no money moved; EXPIRED for a payer who never acted (OTP_SENT), else FAILED
DOUBT = "doubt"  # an answer we cannot believe: left PENDING and marked for a person
IGNORE = "ignore"  # the gateway refused the query itself (e.g. a bad key): decide nothing, ask next run


def mask_msisdn(msisdn: str | None) -> str:
    """`263771234567` -> `2637****4567`: enough to tell numbers apart in a log, not enough to call."""
    if not msisdn:
        return ""
    digits = str(msisdn)
    if len(digits) <= 8:
        return "*" * len(digits)
    return f"{digits[:4]}{'*' * (len(digits) - 8)}{digits[-4:]}"


class ProviderConfigError(ValueError):
    """A provider cannot be built from the settings; the message names the setting, never a secret."""


class ProviderMissing(LookupError):
    """No client for a payment's provider in the services (it is not configured in this process)."""


@dataclass(frozen=True)
class Answer:
    """One gateway answer, reduced to what the payment code decides on.

    message/response_code are the gateway's own words when it answered; for an unknown outcome message
    says what went wrong on the way (e.g. "timed out after 30 s") and response_code is None.
    """

    outcome: str  # success | failed | unknown
    http_status: int | None = None
    response_code: str | None = None
    message: str | None = None
    otp_reference: str | None = None  # O'mari: the code shown beside the OTP request
    payment_reference: str | None = None  # the gateway's own reference for the payment
    debit_reference: str | None = None
    status: str | None = None  # a status query's status word, as the gateway wrote it
    amount: Decimal | None = None  # a status query's amount
    currency: str | None = None
    created: str | None = None
    poll_url: str | None = None  # Paynow: where this payment's status is asked

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


def new_session() -> requests.Session:
    """A gateway client's own HTTP session."""
    import requests  # here, not at the top: `flows validate` imports the actions and needs no HTTP

    return requests.Session()


def send(
    session: requests.Session, method: str, url: str, gateway: str, *, timeout: tuple[float, float], **kwargs
) -> requests.Response | Answer:
    """One HTTP call to a gateway: its response, or the unknown Answer a transport failure makes (the
    money may have moved). The exception's text may echo the request, so only its type is kept."""
    import requests

    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        return Answer(
            UNKNOWN, message=f"no answer within the timeout ({timeout[0]:g} s connect, {timeout[1]:g} s read)"
        )
    except requests.ConnectionError:
        return Answer(UNKNOWN, message=f"could not connect to {gateway}")
    except requests.RequestException as e:
        return Answer(UNKNOWN, message=f"request failed ({type(e).__name__})")


@dataclass(frozen=True)
class Verdict:
    """What a status query says (one of the constants above) and why, in the operator's words."""

    kind: str
    reason: str | None = None


class Provider:
    """The base of every provider: the interface, and the defaults a gateway may keep."""

    name: ClassVar[str]  # stored in payments.provider; also the key of its client in the services
    title: ClassVar[str]  # what the payer and the operator read: "O'mari", "Paynow"
    waiting_note: ClassVar[str] = "the payer has not finished paying yet"
    gave_up_note: ClassVar[str] = "the payer did not finish within the time allowed"
    default_wording: ClassVar[str] = "The payment could not be taken."
    start_call: ClassVar[str] = "start"  # how the log names the start call, e.g. "/auth"
    key_hint: ClassVar[str] = ""  # added to the log line of a start refused with HTTP 401/403
    voids: ClassVar[bool] = True  # False: a started payment cannot be called off at the gateway
    start_moves_money: ClassVar[bool] = False  # True: the payer may pay right after the start (no confirm)

    def __init__(self, client) -> None:
        self.client = client

    # Build the protocol client: from the settings (ProviderConfigError when not configured) or a sandbox.
    @classmethod
    def client_from_settings(cls, settings):
        raise NotImplementedError

    @classmethod
    def sandbox_client(cls, sms: Callable[[str, str], None] | None = None, fixed_otp: str | None = None):
        raise NotImplementedError

    @classmethod
    def refuse_start(cls, booking, settings) -> str | None:
        """Why this provider cannot take a payment for the booking (said to the payer), or None."""
        return None

    def start(self, row) -> Answer:
        raise NotImplementedError

    def confirm(self, row, code: str) -> Answer:
        return Answer(UNKNOWN, message=f"{self.title} has nothing to confirm: ask for the status")

    def query(self, row) -> Answer:
        raise NotImplementedError

    def void(self, row) -> Answer:
        return Answer(UNKNOWN, message=f"{self.title} has no void")

    @classmethod
    def verdict(cls, answer: Answer) -> Verdict:
        raise NotImplementedError

    @classmethod
    def wording(cls, code: str | None) -> str:
        return cls.default_wording


class ProviderRegistry:
    """The providers by name. A second registration of a name raises; tests may build their own."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Provider]] = {}

    def register(self, cls: type[Provider]) -> type[Provider]:
        if cls.name in self._by_name:
            raise ValueError(f"payment provider '{cls.name}' is registered twice")
        self._by_name[cls.name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> type[Provider]:
        if name not in self._by_name and self is providers:
            load()  # the shipped providers register when their modules are imported
        try:
            return self._by_name[name]
        except KeyError:
            raise ProviderMissing(f"no payment provider '{name}' (known: {', '.join(self.names())})") from None

    def for_payment(self, clients: Mapping, row) -> Provider:
        """The provider of a payment row, around its client from the services (ProviderMissing if none)."""
        cls = self.get(row.provider)
        client = clients.get(cls.name)
        if client is None:
            raise ProviderMissing(f"{cls.title} is not configured in this process")
        return cls(client)

    def clients(
        self,
        settings,
        *,
        sandbox: bool = False,
        sms: Callable[[str, str], None] | None = None,
        fixed_otp: str | None = None,
    ) -> tuple[dict, dict[str, str]]:
        """Every provider's client: the sandboxes, or those the settings configure. Returns (clients by
        name, why each unconfigured one is missing).
        """
        if self is providers:
            load()
        clients, missing = {}, {}
        for name in self.names():
            cls = self._by_name[name]
            if sandbox:
                clients[name] = cls.sandbox_client(sms=sms, fixed_otp=fixed_otp)
                continue
            try:
                clients[name] = cls.client_from_settings(settings)
            except ProviderConfigError as e:
                missing[name] = str(e)
        return clients, missing

    def services(
        self,
        settings,
        *,
        sandbox: bool = False,
        sms: Callable[[str, str], None] | None = None,
        fixed_otp: str | None = None,
    ) -> dict:
        """The services actions receive: {"settings": settings, "<provider>": its client, …}."""
        clients, _ = self.clients(settings, sandbox=sandbox, sms=sms, fixed_otp=fixed_otp)
        return {**clients, "settings": settings}


providers = ProviderRegistry()
register = providers.register


def load() -> ProviderRegistry:
    """The registry with every shipped provider registered (actions.load_all imports their modules)."""
    from . import load_all

    load_all()
    return providers
