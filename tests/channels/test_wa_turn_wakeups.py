"""The turn threads' wake-ups with groups (SQLite): a thread that takes several contacts' messages at once
is not woken for each, and still no message waits for the poll: a contact's next message, stored while a
thread held that contact, is looked for by that thread once its group is saved."""

from __future__ import annotations

import os
import threading

from channels.worker import WorkerOptions

import whatsapp_fakes as wa
from channel_harness import FLOWS, Channel, store_flows


def test_a_burst_from_many_contacts_is_answered_without_the_poll(sqlite_db, settings, graph):
    store_flows(os.path.join(FLOWS, "echo.yaml"))
    channel = Channel(settings)
    # A poll far longer than the wait below: a message whose wake-up was lost would not be answered in time.
    channel.workers.options = WorkerOptions(threads=2, poll_interval=120)
    channel.start()
    try:
        contacts = [f"2637712{i:05d}" for i in range(12)]
        said = ["start", "one", "two", "three"]

        def client(mine: list[str]) -> None:
            for k, words in enumerate(said):
                for wa_id in mine:
                    assert channel.say(wa_id, wa.text(wa_id, words, ts=wa.TS + k)).status_code == 200

        clients = [threading.Thread(target=client, args=(contacts[i::3],)) for i in range(3)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=60)
        sent = graph.wait_for(len(contacts) * len(said), timeout=60)
        assert len(sent) == len(contacts) * len(said)
        for wa_id in contacts:
            assert graph.texts_to(wa_id) == [
                "Say something.",
                "You said one. Say something.",
                "You said two. Say something.",
                "You said three. Say something.",
            ]
    finally:
        channel.close()
