"""The WhatsApp path's CPU a message, in one process and one thread, for instruction counts: each signed
webhook body (bench/webhook.py's, the four-step conversation of 100 contacts) goes through the webhook's
WSGI entry (channels/whatsapp.py: signature, parse, the store; no waitress), then a turn thread's round
(channels/worker.py Workers.run_turn: process_inbox's pick, turns and save), then the sender's round
(channels/sender.py: the record of the finished sends and the claim in one transaction, each claimed row's
payload read and its Cloud API body built and encoded, then the post itself cut out: a stand-in answer
with a wamid). Messages go in rounds of --round (8: a turn thread's group on SQLite), so every stage sees
the sizes it sees under a burst.

    python bench/wa_path.py [--messages 1200] [--stages store,turns,send] [--runs 3]   # µs, one process
    python bench/wa_path.py --instructions [--against DIR]   # instructions a message by stage (cachegrind)

--stages cuts the path after a stage (store: the inbox fills; store,turns: the outbox fills, nothing
sent), so the counts of store, store+turns and all three split a message's instructions by stage.
--instructions counts each under valgrind's cachegrind (PYTHONHASHSEED=0) at 300 and 1,300 messages and
prints the difference / 1,000: deterministic, unlike timings on a shared machine; --against DIR counts
another checkout the same way (its own bench/wa_path.py: copy this one into an older checkout first). No threads but the caller's: waitress's loop, the wake-ups between
threads and the GIL hand-offs are not in these figures (bench/serve_split.py has them by thread).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import webhook as wb  # noqa: E402  (the bodies, the flow, prepare)

STAGES = ("store", "turns", "send")


def _settings():
    from storage.settings import Settings

    wa = wb.wa
    return Settings(
        whatsapp_access_token=wa.ACCESS_TOKEN,
        whatsapp_phone_number_id=wa.PHONE_NUMBER_ID,
        whatsapp_app_secret=wa.SECRET,
        whatsapp_verify_token=wa.VERIFY_TOKEN,
        whatsapp_api_url="http://127.0.0.1:9/v21.0",  # never reached: the post is cut out
        whatsapp_send_rate=1_000_000,  # the limiter's bookkeeping stays, its waits go
    )


def run(path: str, messages: int, stages: tuple[str, ...], round_size: int = 8) -> float:
    """CPU µs a message of `messages` through `stages` on a fresh SQLite file at path."""
    import actions
    from channels import sender as sender_mod
    from channels import whatsapp, worker
    from channels.metrics import Metrics
    from storage.db import open_database

    actions.load_all()
    url = f"sqlite:///{path}"
    wb.prepare(url)
    open_database(url)
    settings = _settings()
    metrics = Metrics()
    send = sender_mod.Sender(settings, metrics=metrics, parallel=round_size)
    wamids = itertools.count()
    send._post = lambda message: sender_mod.Attempt(ok=True, wamid=f"wamid.out.{next(wamids)}", reason=None)
    workers = worker.Workers(
        worker.build_services(settings, sandbox=True), sender=send, metrics=metrics, options=worker.WorkerOptions()
    )
    workers.refresh_flows()
    app = whatsapp.create_app(settings, metrics=metrics).wsgi_app
    per = wb.bodies(messages, 100, "path")
    bodies = [per[i % 100][i // 100] for i in range(messages)]  # message i: contact i % 100's (i // 100)-th
    answers: list[str] = []
    started = time.process_time()
    for first in range(0, messages, round_size):
        for body in bodies[first : first + round_size]:
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/webhook",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body),
                "HTTP_X_HUB_SIGNATURE_256": wb.wa.sign(body),
                "REMOTE_ADDR": "127.0.0.1",
            }
            app(environ, lambda status, headers: answers.append(status))
        if "turns" in stages:
            while workers.run_turn("bench:0"):
                pass
        if "send" in stages:
            _send_round(send)
    cpu = time.process_time() - started
    assert answers.count("200 OK") == messages, answers[:3]
    if "send" in stages:
        assert metrics.messages_out.value() == messages, "every reply sent"
    send.close()
    return cpu / messages * 1e6


def _send_round(send) -> None:
    """The sender's pump in this thread: record the finished sends and claim in one transaction, then each
    claimed row sent (its payload read, its body built, the post cut out), until nothing is left."""
    while True:
        recorded, claimed = send._record(tries=1, claim=send.batch)
        for row in claimed:
            send._send(row)
        if not recorded and not claimed:
            return


def instructions(checkout: str, stages: str, messages: int) -> int:
    """Instructions (cachegrind's I refs) of this script's run of `messages` through `stages` in checkout."""
    script = os.path.join(checkout, "bench", "wa_path.py")
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable]
        + [script, "--messages", str(messages), "--stages", stages],
        cwd=checkout,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": checkout},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)[1].replace(",", ""))


def by_stage(checkout: str) -> None:
    """Instructions a message by stage in checkout: each cut's count at 1,300 less at 300, / 1,000."""
    cuts = [(",".join(STAGES[:n]), size) for n in range(1, len(STAGES) + 1) for size in (300, 1300)]
    with ThreadPoolExecutor(2) as pool:  # two valgrinds at once: each is one thread
        counts = list(pool.map(lambda cut: instructions(checkout, *cut), cuts))
    totals = [(counts[i + 1] - counts[i]) / 1000 for i in range(0, len(counts), 2)]
    parts = [totals[0]] + [b - a for a, b in zip(totals, totals[1:])]
    print(
        f"{checkout}: {totals[-1] / 1000:.1f}k instructions a message: "
        + ", ".join(f"{stage} {part / 1000:.1f}k" for stage, part in zip(STAGES, parts))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1200)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--round", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--instructions", action="store_true", help="count instructions by stage (cachegrind)")
    parser.add_argument("--against", help="with --instructions: another checkout counted the same way")
    args = parser.parse_args()
    if args.instructions:
        for checkout in [os.path.dirname(HERE)] + ([os.path.abspath(args.against)] if args.against else []):
            by_stage(checkout)
        return
    stages = tuple(s for s in args.stages.split(",") if s)
    assert set(stages) <= set(STAGES), stages
    folder = tempfile.mkdtemp(prefix="convoflow-wapath.")
    for n in range(args.runs):
        us = run(os.path.join(folder, f"run{n}.db"), args.messages, stages, args.round)
        print(f"{'+'.join(stages)}: {us:.0f} µs a message ({args.messages} messages, {datetime.now():%H:%M:%S})")


if __name__ == "__main__":
    main()
