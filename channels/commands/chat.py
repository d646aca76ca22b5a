"""`flows chat` and `flows demo`: conversations in this terminal, payments on the built-in sandboxes."""

from __future__ import annotations

import sys

import click

from .base import CliError, load_actions


DEMO_BOOKING = ("BK-SLYKER-TECH-20251023", "Slyker Tech", "Victoria Falls 3-day safari", "300.00")
DEMO_CONTACT = "263771234567"


@click.command()
@click.argument("flow", required=False)
@click.option(
    "--contact",
    default="263770000000",
    show_default=True,
    metavar="ID",
    help="The phone number the conversation is with (vars.contact in templates).",
)
@click.option("--reset", is_flag=True, help="Start over: forget the conversations this chat left open.")
@click.option(
    "--store",
    default=None,
    metavar="FILE",
    help="The chat's own SQLite file (default: convoflow-chat.db here); never DATABASE_URL.",
)
@click.option(
    "--real-omari",
    is_flag=True,
    help="Pay through the O'mari API configured (OMARI_API_BASE_URL, OMARI_MERCHANT_KEY), not the sandbox.",
)
def chat(flow: str | None, contact: str, reset: bool, store: str | None, real_omari: bool) -> None:
    """Try the flows on disk in this terminal, with the same runner WhatsApp uses. Never publishes.

    Runs the files in $FLOWS_DIR (default flows/) as they are now. The chat keeps its own copies of the
    flows and its own conversations in a separate file (convoflow-chat.db, or --store), never in
    DATABASE_URL: customers on WhatsApp see nothing of it, and `flows list` shows no new version. A chat
    left half-way picks up where it stopped; --reset starts over. Payments go to the built-in O'mari
    sandbox, which "texts" its code here; the demo booking BK-SLYKER-TECH-20251023 is there to pay.
    FLOW starts that flow directly; otherwise send a trigger phrase or `menu`. Buttons and list options
    are numbered: send the number, the title or the id. When standard input is not a terminal, each line
    is one message:

        printf 'pay\\nBK-1\\n' | flows chat
    """
    from dataclasses import replace

    from channels import turns as persisted
    from channels.flowcache import load_flowset
    from channels.terminal import CHAT_STORE, chat_loop
    from channels.worker import turn_context
    from engine.registry import registry
    from storage.settings import Settings

    settings = Settings.from_env()
    where, on_disk = _open_chat_store(settings, store or CHAT_STORE, reset)
    stored = load_flowset(registry)  # a flow whose file was deleted since the last chat is left out
    flows = replace(stored, versions={name: v for name, v in stored.versions.items() if name in on_disk})
    if flow is not None and flows.latest(flow) is None:
        import difflib

        close = difflib.get_close_matches(flow, list(flows.versions), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else f" (flows: {', '.join(sorted(flows.versions))})"
        raise click.UsageError(f"no flow named '{flow}'{hint}")
    ctx = turn_context(_chat_services(settings, real_omari))
    interactive = sys.stdin.isatty()
    if interactive:
        payments = "the O'mari API configured" if real_omari else "the O'mari sandbox"
        click.echo(
            f"Chatting as {contact} with the flows in {settings.flows_dir}: a preview, nothing is published.\n"
            f"Conversations are kept in {where} (--reset starts over); payments go to {payments}. "
            "Ctrl-D to leave.\n"
        )
    chat_loop(
        lambda inbound: persisted.handle_message(inbound, flows, ctx),
        contact,
        sys.stdin,
        sys.stdout,
        interactive=interactive,
        opening=(lambda: persisted.start_flow(contact, flow, flows, ctx)) if flow else None,
        events=sys.stderr,
    )


def _open_chat_store(settings, path: str, reset: bool) -> tuple[str, set[str]]:
    """Check the flow files, open the chat's own store (never DATABASE_URL), copy the flows into it as they
    are on disk, add the demo booking; with reset, forget its conversations. Returns the store's path and
    the names of the flows on disk.
    """
    from channels.terminal import forget_conversations
    from engine.load import load_paths
    from storage.bookings import BookingExists, add_booking
    from storage.db import utcnow
    from storage.flowstore import store

    report = load_paths([settings.flows_dir], load_actions())
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if not report.ok:
        click.echo(f"the flows in {settings.flows_dir} have errors: fix them (see `flows validate`)", err=True)
        raise CliError()
    if not report.flows:
        click.echo(f"no flow files (*.yaml, *.yml) in {settings.flows_dir}", err=True)
        raise CliError()
    open_own_store(path, settings.database_url, "the chat")
    if reset:
        forget_conversations()
    now = utcnow()
    for name, (file, text) in sorted(report.sources.items()):
        store(name, text, file, now)
    try:
        add_booking(*DEMO_BOOKING)
    except BookingExists:
        pass
    return path, set(report.sources)


def open_own_store(path: str, live_url: str, who: str) -> str:
    """Open the chat's or the demo's own SQLite file at path (never DATABASE_URL), its schema created or
    upgraded; its URL. The live database's file, or one that cannot be written: one line, no traceback."""
    from channels.terminal import ChatStoreError, chat_store_url
    from storage.db import open_database
    from storage.migrations import upgrade

    try:
        url = chat_store_url(path, live_url, who)
        upgrade(open_database(url))
    except ChatStoreError as e:
        raise click.BadParameter(str(e), param_hint="--store") from None
    except Exception as e:  # an unwritable folder: say which file, without a traceback
        raise click.ClickException(f"cannot use {who} store {path}: {type(e).__name__}: {e}") from None
    return url


def _chat_services(settings, real_omari: bool) -> dict:
    """The sandboxes (O'mari's SMS printed here), or with real_omari the payment APIs configured."""
    if not real_omari:
        return sandbox_services(settings)
    from actions.providers import providers

    clients, missing = providers.clients(settings)
    if "omari" in missing:
        raise click.ClickException(f"{missing['omari']}: --real-omari needs the O'mari API (see docs/operations.md)")
    return {**clients, "settings": settings}


def sandbox_services(settings, fixed_otp: str | None = None) -> dict:
    """Action services for a terminal chat: every payment provider is its in-process sandbox; O'mari's OTP
    texts are printed on stdout among the replies ("[O'mari sandbox SMS to 2637****4567] Your O'mari OTP is …").
    """
    from actions.omari_sandbox import sms_line
    from actions.providers import providers

    def sms(msisdn: str, text: str) -> None:
        click.echo(sms_line(msisdn, text))

    return providers.services(settings, sandbox=True, sms=sms, fixed_otp=fixed_otp)


def _demo_banner(path: str, loaded: list, booking, due: str, left_open: bool) -> str:
    """What `flows demo` says before the chat: its store, the flows, the booking and how to pay."""
    return (
        "convoflow demo: the O'mari payment conversation, in this terminal.\n"
        f"  store     {path} (its own SQLite file, never DATABASE_URL); flows: "
        + ", ".join(f"{s.name} v{s.version}" for s in loaded)
        + "\n"
        f"  booking   {booking.reference}, {booking.tour}: balance due {due}\n"
        "  payments  go to the built-in O'mari sandbox: nothing leaves this machine. When a payment starts,\n"
        '            the sandbox "texts" the one-time code here, on a line starting [O\'mari sandbox SMS …].\n'
        f"Try: pay → {booking.reference} → 50 → 1 (Ecocash) → {DEMO_CONTACT} → the code from the SMS line.\n"
        "Send cancel to stop a payment, menu for the menu"
        + (", Ctrl-D to leave.\n" if sys.stdin.isatty() else ".\n")
        + ("(The conversation you left open last time has been closed.)\n" if left_open else "")
    )


@click.command()
@click.option("--contact", default=DEMO_CONTACT, show_default=True, metavar="ID", help="The phone number you chat as.")
@click.option("--otp", metavar="CODE", help="Make the sandbox send this code every time (for scripts), e.g. 123456.")
@click.option(
    "--store",
    "store_file",
    default=None,
    metavar="FILE",
    help="The demo's own SQLite file (default: convoflow-demo.db here); never DATABASE_URL.",
)
def demo(contact: str, otp: str | None, store_file: str | None) -> None:
    """Pay for a demo booking in this terminal: no WhatsApp, no O'mari account needed.

    Works in a SQLite file of its own (convoflow-demo.db here, or --store), never in DATABASE_URL, so
    running it beside a real deployment publishes nothing and records no sandbox payment there: creates or
    upgrades that file, loads the shipped flows into it, adds the demo booking BK-SLYKER-TECH-20251023
    ($300.00) when missing, and opens the chat on the built-in O'mari sandbox, which "texts" the one-time
    code to this terminal. The staff commands read the demo's payments and bookings when pointed at the
    file (DATABASE_URL=sqlite:///convoflow-demo.db flows payments list). Scriptable: with standard input
    not a terminal, each line is one message; --otp fixes the code so a script can type it:

        printf 'pay\\nBK-SLYKER-TECH-20251023\\n50\\n1\\n263771234567\\n123456\\n' | flows demo --otp 123456
    """
    from importlib import resources

    from channels import turns as persisted
    from channels.flowcache import load_flowset
    from channels.terminal import DEMO_STORE, chat_loop
    from channels.worker import turn_context
    from engine.registry import registry
    from engine.templates import money
    from storage import payments as store
    from storage.bookings import BookingExists, add_booking, find_booking
    from storage.settings import Settings

    from .publishing import load_flows

    settings = Settings.from_env()
    path = store_file or DEMO_STORE
    url = open_own_store(path, settings.database_url, "the demo")
    with resources.as_file(resources.files("flows")) as shipped:  # package data: also in an installed wheel
        loaded = load_flows([str(shipped)], url=url)
    try:
        add_booking(*DEMO_BOOKING)
    except BookingExists:
        pass
    booking = find_booking(DEMO_BOOKING[0])
    flows = load_flowset(registry)

    if otp is not None and not (otp.isdigit() and 4 <= len(otp) <= 8):
        raise click.BadParameter("a code is 4 to 8 digits", param_hint="--otp")
    services = sandbox_services(settings, fixed_otp=otp)
    ctx = turn_context(services)
    # The sandbox starts empty each run: a payment left waiting for its code last time cannot finish now.
    left_open = persisted.close_conversation(contact, flows, ctx)
    due = money(store.balance_due(booking), booking.currency)
    click.echo(_demo_banner(path, loaded, booking, due, left_open))
    chat_loop(
        lambda inbound: persisted.handle_message(inbound, flows, ctx),
        contact,
        sys.stdin,
        sys.stdout,
        interactive=sys.stdin.isatty(),
        events=sys.stderr,
    )
