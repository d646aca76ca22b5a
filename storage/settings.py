"""Configuration from the environment, also read from a `.env` file in the working directory.

Every setting is one field of `Settings`, declared with `setting(...)`: its environment variable, its
default, how its text is parsed and checked, a one-line help and whether it is a secret. `from_env` reads
them all in one pass and names the variable in any error; secrets are kept out of repr() and never reach a
log line or an error message.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

# Meta keeps a Graph API version about two years: v25.0 (February 2026) is served until July 2028. Moving
# on is this one setting; docs/deploying.md says how.
DEFAULT_WHATSAPP_API_URL = "https://graph.facebook.com/v25.0"


# HTTP_THREADS when unset. On SQLite every delivery's write takes its turn at one writer lock, so threads
# beyond a few only wait there, each woken at a cost: with 4 instead of 8 the server's CPU a message end to
# end was 0.89-0.93x (bench/peer.py --against), and 200 clients on 1,000 connections waited no longer
# (bench/connections.py). On PostgreSQL more threads hide the database's round trips.
HTTP_THREADS_SQLITE = 4
HTTP_THREADS_POSTGRES = 8


class SettingsError(ValueError):
    """A missing or inconsistent setting; the message names it and never shows a secret."""


def setting(default: Any, env: str, help: str, parse: Callable[[str], Any] = str, secret: bool = False) -> Any:
    """Declare one setting: a dataclass field carrying its variable name, parser, help line and secrecy."""
    return field(
        default=default, repr=not secret, metadata={"env": env, "help": help, "parse": parse, "secret": secret}
    )


def one_of(*choices: str) -> Callable[[str], str]:
    """A parser for a word out of `choices` (any case in, upper or as listed out)."""

    def parse(text: str) -> str:
        for choice in choices:
            if text.upper() == choice.upper():
                return choice
        raise ValueError(f"must be one of {', '.join(choices)} (got '{text}')")

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number (got '{text}')") from None
    if value <= 0:
        raise ValueError(f"must be greater than 0 (got {value})")
    return value


def url(text: str) -> str:
    return text.rstrip("/")


def folder(text: str) -> str:
    if not os.path.isdir(text):
        raise ValueError(f"must be an existing folder (got '{text}')")
    return text


def time_zone(text: str) -> str:
    """An IANA time zone name, e.g. Africa/Harare."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(text)
    except (KeyError, ValueError):
        raise ValueError(f"must be a time zone name like Africa/Harare (got '{text}')") from None
    return text


def prefixes(text: str) -> str:
    """Two-digit prefixes separated by commas, e.g. 71,73,77,78 (returned without spaces)."""
    found = [p.strip() for p in text.split(",") if p.strip()]
    if not found or not all(p.isascii() and p.isdigit() and len(p) == 2 for p in found):
        raise ValueError(f"must be two-digit prefixes separated by commas, e.g. 71,73,77,78 (got '{text}')")
    return ",".join(found)


@dataclass(frozen=True)
class Settings:
    database_url: str = setting(
        "sqlite:///convoflow.db",
        "DATABASE_URL",
        "sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname",
    )
    flows_dir: str = setting("flows", "FLOWS_DIR", "the folder holding the flow YAML files")
    omari_api_base_url: str | None = setting(None, "OMARI_API_BASE_URL", "O'mari merchant API base URL", url)
    omari_merchant_key: str | None = setting(None, "OMARI_MERCHANT_KEY", "O'mari merchant key", secret=True)
    omari_channel: str = setting("WEB", "OMARI_CHANNEL", "the channel O'mari records: WEB or POS", one_of("WEB", "POS"))
    whatsapp_access_token: str | None = setting(
        None, "WHATSAPP_ACCESS_TOKEN", "Graph API access token (system user)", secret=True
    )
    whatsapp_phone_number_id: str | None = setting(
        None, "WHATSAPP_PHONE_NUMBER_ID", "the business phone number's id from Meta"
    )
    whatsapp_app_secret: str | None = setting(
        None, "WHATSAPP_APP_SECRET", "the Meta app secret that signs webhook bodies", secret=True
    )
    whatsapp_verify_token: str | None = setting(
        None, "WHATSAPP_VERIFY_TOKEN", "the token Meta echoes when the webhook is verified", secret=True
    )
    whatsapp_api_url: str = setting(
        DEFAULT_WHATSAPP_API_URL, "WHATSAPP_API_URL", "Graph API base URL, with its version", url
    )
    paynow_integration_id: str | None = setting(
        None, "PAYNOW_INTEGRATION_ID", "Paynow integration id (from the merchant dashboard)"
    )
    paynow_integration_key: str | None = setting(
        None, "PAYNOW_INTEGRATION_KEY", "Paynow integration key: signs every message both ways", secret=True
    )
    paynow_auth_email: str | None = setting(
        None, "PAYNOW_AUTH_EMAIL", "the email Paynow's express checkout requires (the merchant's, in test mode)"
    )
    paynow_api_url: str = setting(
        "https://www.paynow.co.zw/interface", "PAYNOW_API_URL", "Paynow interface base URL", url
    )
    paynow_result_url: str | None = setting(
        None, "PAYNOW_RESULT_URL", "where Paynow posts status updates (optional: convoflow polls)"
    )
    paynow_return_url: str | None = setting(
        None, "PAYNOW_RETURN_URL", "where Paynow sends a web payer back (unused by express checkout)"
    )
    paynow_currency: str = setting(
        "USD", "PAYNOW_CURRENCY", "the currency of the Paynow integration: USD or ZWG", one_of("USD", "ZWG")
    )
    payment_starts_per_contact: int = setting(
        3,
        "PAYMENT_STARTS_PER_CONTACT",
        "payments one WhatsApp contact may start per PAYMENT_STARTS_WINDOW_MINUTES",
        positive_int,
    )
    payment_starts_per_wallet: int = setting(
        5,
        "PAYMENT_STARTS_PER_WALLET",
        "payments one wallet number may be asked for per PAYMENT_STARTS_WINDOW_MINUTES",
        positive_int,
    )
    payment_starts_window_minutes: int = setting(
        15, "PAYMENT_STARTS_WINDOW_MINUTES", "the window, in minutes, of the payment start limits", positive_int
    )
    whatsapp_max_message_age_days: int = setting(
        7,
        "WHATSAPP_MAX_MESSAGE_AGE_DAYS",
        "refuse webhook messages older than this many days (replays; Meta retries for 7)",
        positive_int,
    )
    log_level: str = setting(
        "INFO",
        "LOG_LEVEL",
        "least severe log lines written: DEBUG, INFO, WARNING or ERROR",
        one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    log_format: str = setting(
        "text", "LOG_FORMAT", "log lines as text (for people) or json (one object a line)", one_of("text", "json")
    )
    prometheus_multiproc_dir: str | None = setting(
        None,
        "PROMETHEUS_MULTIPROC_DIR",
        "an empty folder the processes of one server share, so /metrics sums them (gunicorn -w 2+); unset: one process",
        folder,
    )
    whatsapp_send_rate: int = setting(
        80,
        "WHATSAPP_SEND_RATE",
        "messages per second one process sends to the Graph API (Meta allows 80 per number, more after an upgrade)",
        positive_int,
    )
    business_timezone: str = setting(
        "Africa/Harare",
        "BUSINESS_TIMEZONE",
        "the business's time zone: what day 'today' is in `expect: date`",
        time_zone,
    )
    zw_mobile_prefixes: str = setting(
        "71,73,77,78",
        "ZW_MOBILE_PREFIXES",
        "mobile network prefixes after 263 that `expect: phone_zw` accepts",
        prefixes,
    )
    database_wait: int = setting(
        5,
        "DATABASE_WAIT",
        "seconds a request waits for the database before giving up "
        "(the webhook then answers 503 and Meta delivers again)",
        positive_int,
    )
    http_threads: int | None = setting(
        None,
        "HTTP_THREADS",
        f"threads answering HTTP in `flows serve` (unset: {HTTP_THREADS_SQLITE} on SQLite, "
        f"{HTTP_THREADS_POSTGRES} on PostgreSQL)",
        positive_int,
    )
    http_connection_limit: int = setting(
        1000,
        "HTTP_CONNECTION_LIMIT",
        "open HTTP connections `flows serve` accepts at once (waitress's own default is 100)",
        positive_int,
    )
    http_channel_timeout: int = setting(
        60, "HTTP_CHANNEL_TIMEOUT", "seconds an idle keep-alive HTTP connection stays open", positive_int
    )
    http_backlog: int = setting(
        2048, "HTTP_BACKLOG", "connections the kernel queues before `flows serve` accepts them", positive_int
    )

    def serving_threads(self) -> int:
        """The threads answering HTTP: HTTP_THREADS, else the default for the database (see its help)."""
        if self.http_threads:
            return self.http_threads
        return HTTP_THREADS_SQLITE if self.database_url.startswith("sqlite") else HTTP_THREADS_POSTGRES

    @classmethod
    def from_env(cls, environ: dict | None = None, dotenv: bool = True) -> "Settings":
        """Read settings from os.environ (after loading ./.env, which never overrides the environment).

        An empty variable counts as unset. Raises SettingsError naming the variable when a value does not
        parse; a secret's value is never repeated.
        """
        if environ is None:
            path = os.path.join(os.getcwd(), ".env")
            if dotenv and os.path.isfile(path):  # python-dotenv (a few ms to import) only for a file to read
                from dotenv import load_dotenv

                load_dotenv(path, override=False)
            environ = dict(os.environ)
        values = {}
        for f in dataclasses.fields(cls):
            text = (environ.get(f.metadata["env"]) or "").strip()
            if not text:
                continue
            try:
                values[f.name] = f.metadata["parse"](text)
            except ValueError as e:
                reason = "is not valid" if f.metadata["secret"] else str(e)
                raise SettingsError(f"{f.metadata['env']} {reason}") from None
        return cls(**values)

    def described(self) -> Iterator[tuple[str, str, str]]:
        """(variable, shown value, help) for every setting, secrets masked: what `flows config` prints."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = "" if value is None else ("********" if f.metadata["secret"] else str(value))
            yield f.metadata["env"], shown, f.metadata["help"]


def env_example() -> str:
    """The text of `.env.example`: every setting with its one-line help and default, every value left blank.

    The repository's `.env.example` and the one `flows init` writes are this text; regenerate the former
    with `flows config --env-example > .env.example`.
    """
    lines = [
        "# convoflow settings: copy this file to .env and fill in what you need. The environment overrides",
        "# .env; an empty value means the default. Generated by `flows config --env-example`.",
        "",
    ]
    for f in dataclasses.fields(Settings):
        notes = [f"default: {f.default}"] if f.default is not None else []
        notes += ["secret: keep it out of git"] if f.metadata["secret"] else []
        # Left empty, so a copied file never pins a default (a later release's, or a container's own).
        lines += [f"# {f.metadata['help']}" + (f" ({'; '.join(notes)})" if notes else ""), f"{f.metadata['env']}=", ""]
    return "\n".join(lines)
