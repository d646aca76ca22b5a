"""Webhook and end-to-end figures for `flows serve`, on SQLite and on PostgreSQL.

    python bench/webhook.py                               # SQLite; PostgreSQL too when TEST_DATABASE_URL is set
    python bench/webhook.py --graph-latency-ms 150        # Meta's real answer time: the sender's pipeline
    python bench/webhook.py --only postgres --processes 3 --send-rate 1000 --graph-latency-ms 150
    python bench/webhook.py --acks 0 --only postgres --processes 3 --send-rate 1000 --graph-latency-ms 150 \
        --runs 1 --statements [--checkout /path/to/another/checkout]

For each database it starts `flows serve` as real subprocesses on 127.0.0.1 and measures:
- acks: signed webhook POSTs (one new message each) from several client threads on keep-alive
  connections, against a server with --workers 0 (only the webhook): acknowledgements per second and
  p50/p99 latency of each POST as the client saw it;
- end-to-end: the same POSTs against servers with their turn threads and sender, running the four-step
  conversation of bench/flows/four_steps.yaml, every message answered; the Graph API stand-in answers
  after --graph-latency-ms. Two loads: a burst (every message posted as fast as the clients can: the
  messages/s from the first POST until the last reply reached the stand-in is the capacity), and a
  steady load offered at --offered messages/s (p50/p99 of each message's time from its POST to its
  reply reaching the stand-in). With --processes N (PostgreSQL) N servers share the database and the
  number, each sending at --send-rate / N (WHATSAPP_SEND_RATE; Meta allows 80/s a number, up to 1,000
  after an upgrade);
- where the burst's CPU went, per message (from /proc): the servers, on PostgreSQL the backends of the
  benchmark's database and the server's background processes, this process (the clients and the Graph
  stand-in), and the whole machine's busy time (other work on the machine included);
- idle RSS: the resident memory of a serving process (with workers) once the load is over and idle;
- with --statements (PostgreSQL): the servers' SQL statements a message, by kind (picks, empty picks,
  message reads, saves, sender claims and empty claims, marks, BEGIN/COMMIT, …) for each load, run by run,
  counted in the servers by bench/statements.py: a figure the machine's load does not move, unlike the
  rates and CPU times; and the servers' CPU a message by thread (turn threads, the sender's loop and its
  sending threads, waitress's request threads and socket loop, …), read from /proc in each server.
  --checkout DIR serves another checkout's code (alternate it with this one). --warm N posts N messages
  (answered, not measured) before each burst, so the burst leaves out each server's first messages (its
  database connections and their backends' first statements, its caches), which a burst of 1,200 pays once
  a process: with more processes, more of it.
Each figure is the median of --runs runs, with the spread (min–max). Loops are bounded by counts.

Goals (issues 5 and 14): ≥ 1,000 acks/s with p99 < 20 ms; ≥ 300 end-to-end messages/s; with the Graph
API at 150 ms one process ≥ 80 messages/s with p99 < 1 s, several processes on PostgreSQL ≥ 300/s;
idle RSS < 100 MB.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import itertools
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, os.path.join(REPO, "tests", "channels")]

import whatsapp_fakes as wa  # noqa: E402  (the payload builders and the signing the tests use)
import statements  # noqa: E402  (bench/statements.py: --statements)
from benchkit import proc_cpu  # noqa: E402

FLOW = os.path.join(HERE, "flows", "four_steps.yaml")
SCRIPT = ("start", "Tendai {c}", "BK-{c:05d}", "50")  # what each contact says, over and over


_SERVER = f"{BaseHTTPRequestHandler.server_version} {BaseHTTPRequestHandler.sys_version}"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def message_end(buf: bytes) -> tuple[int, int] | None:
    """Where the first HTTP message in buf has its body and where it ends, once it is whole (its body's
    size from Content-Length, none without one); None until then. The benchmarks' client and Graph API
    stand-in read their requests and answers with it instead of parsing headers (http.client's and
    http.server's way), as their CPU is shared with what they measure."""
    head = buf.find(b"\r\n\r\n")
    if head < 0:
        return None
    length = _CONTENT_LENGTH.search(buf, 0, head + 2)
    end = head + 4 + (int(length[1]) if length else 0)
    return (head + 4, end) if len(buf) >= end else None


class TimedGraph:
    """The benchmarks' Graph API stand-in: accepts every message with a fresh wamid, answering after
    `latency` seconds, and notes when each recipient's messages arrived.

    The load generator's CPU shares the machine's cores with what it measures, so this one is light: one
    thread serves every connection (a selector; answers due later wait on a heap, not in a sleeping thread
    a connection), reads `Content-Length` and the recipient with regular expressions, and answers from a
    template: the status line, headers and JSON the tests' wa.GraphStandIn answers, byte for byte but the
    wamid's number and the date, so a server under test reads the same answer. wa.GraphStandIn
    (http.server: a thread a connection, its header parsing, JSON both ways) costs about 431k instructions
    a request answering http.client as the sender uses it, this one about 41k (cachegrind)."""

    _TO = re.compile(rb'"to"\s*:\s*"([^"]*)"')

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency = latency_ms / 1000
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.count = 0  # messages accepted so far
        self._awaited = 0  # the count wait_for waits for: one wake-up when it is reached, not one a message
        self._arrived = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v21.0"
        self._wake, self._woken = socket.socketpair()
        self._closing = False
        self._second, self._head = 0, b""
        self._thread = threading.Thread(target=self._serve, name="graph-stand-in", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._woken, selectors.EVENT_READ)
        pending: dict[socket.socket, bytes] = {}  # each connection's bytes not yet a whole request
        due: list[tuple[float, int, socket.socket, bytes]] = []  # (when, order, connection, answer)
        order = itertools.count()
        while not self._closing:
            timeout = max(0.0, due[0][0] - time.perf_counter()) if due else None
            for key, _ in selector.select(timeout):
                sock = key.fileobj
                if sock is self._woken:
                    continue
                if sock is self._listener:
                    try:
                        conn, _ = self._listener.accept()
                    except OSError:  # the connection went before it was taken
                        continue
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    selector.register(conn, selectors.EVENT_READ)
                    pending[conn] = b""
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:  # reset by a sender that dropped its connection: closed, as below
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    del pending[sock]
                    continue
                buf = pending[sock] + data
                while whole := message_end(buf):
                    answer = self._accept(buf[whole[0] : whole[1]])
                    buf = buf[whole[1] :]
                    if self.latency:
                        heapq.heappush(due, (time.perf_counter() + self.latency, next(order), sock, answer))
                    else:
                        self._send(sock, answer)
                pending[sock] = buf
            now = time.perf_counter()
            while due and due[0][0] <= now:
                _, _, sock, answer = heapq.heappop(due)
                self._send(sock, answer)
        selector.close()
        for sock in pending:
            sock.close()

    def _accept(self, body: bytes) -> bytes:
        """Note the message's arrival; the answer the Graph API gives it."""
        arrived = time.perf_counter()
        to = self._TO.search(body)
        to = to[1].decode() if to else ""
        with self._arrived:
            self.arrivals[to].append(arrived)
            self.count += 1
            wamid = self.count
            if wamid == self._awaited:
                self._arrived.notify_all()
        data = (  # json.dumps's spacing, as wa.GraphStandIn answers
            f'{{"messaging_product": "whatsapp", "contacts": [{{"input": "{to}", "wa_id": "{to}"}}], '
            f'"messages": [{{"id": "wamid.out.{wamid}"}}]}}'
        ).encode()
        return b"%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (self._status(), len(data), data)

    def _status(self) -> bytes:
        """The status line and the headers wa.GraphStandIn's http.server wrote before its own (the same
        answer for the sender to read), the date formatted once a second."""
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._head = f"HTTP/1.1 200 OK\r\nServer: {_SERVER}\r\nDate: {formatdate(second, usegmt=True)}\r\n".encode()
        return self._head

    @staticmethod
    def _send(sock: socket.socket, answer: bytes) -> None:
        try:
            sock.sendall(answer)
        except OSError:
            pass  # the sender closed its connection meanwhile: it counts that send as failed and tries again

    def wait_for(self, n: int, timeout: float = 20.0) -> int:
        """Block until at least n messages were accepted (bounded by timeout); returns how many were."""
        with self._arrived:
            self._awaited = n
            self._arrived.wait_for(lambda: self.count >= n, timeout)
            return self.count

    def close(self) -> None:
        self._closing = True
        self._wake.send(b"x")
        self._thread.join(10)
        for sock in (self._listener, self._wake, self._woken):
            sock.close()


def prepare(url: str) -> None:
    """A fresh schema with the four-step flow stored, as `flows db upgrade` + `flows load` would leave it."""
    from benchkit import fresh_database
    from storage import flowstore

    db = fresh_database(url)
    with open(FLOW, encoding="utf-8") as f:
        flowstore.store("four_steps", f.read(), FLOW, datetime(2026, 1, 1))
    db.close()


class Server:
    """A server subprocess (`flows serve`, or the peer bot) on a free port; waits until /healthz answers."""

    def __init__(self, args: list[str], graph_url: str, env: dict[str, str] | None = None, cwd: str = REPO) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        full_env = {
            **os.environ,
            "WHATSAPP_APP_SECRET": wa.SECRET,
            "WHATSAPP_VERIFY_TOKEN": wa.VERIFY_TOKEN,
            "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
            "WHATSAPP_API_URL": graph_url,
            **(env or {}),
        }
        full_env.pop("OMARI_MERCHANT_KEY", None)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, *args, "--port", str(self.port)],
            cwd=cwd,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError(f"{args} did not start:\n" + self.log.read().decode(errors="replace"))

    @classmethod
    def flows_serve(
        cls, url: str, graph_url: str, workers: int, send_rate: float = 80, cwd: str = REPO, counts: str | None = None
    ) -> Server:
        """`flows serve` of the checkout at cwd (this one by default: `python -m cli` runs the cwd's code);
        counts: a file where bench/statements.py writes the process's statements."""
        env = {"DATABASE_URL": url, "WHATSAPP_SEND_RATE": str(max(1, round(send_rate)))}
        if counts:
            env["CONVOFLOW_BENCH_STATEMENTS"] = counts
        start = statements.boot() if counts else ["-m", "cli"]
        return cls([*start, "serve", "--workers", str(workers), "--sandbox"], graph_url, env, cwd)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy so far (all but idle and I/O wait), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """Where the CPU of a load goes: the servers, the PostgreSQL backends serving this database, the rest of
    the PostgreSQL server (its background processes: shared with any other database on it), this process
    (the clients and the Graph stand-in) and the whole machine (anything else running shares it)."""

    def __init__(self, url: str, servers: list[Server]) -> None:
        self.url, self.servers = url, servers
        self.before = self._snapshot()

    def _backends(self) -> dict[str, dict[int, float]]:
        if not self.url.startswith("postgres"):
            return {}
        import psycopg2

        conn = psycopg2.connect(self.url)
        try:
            cur = conn.cursor()
            cur.execute("SELECT pid, datname = current_database() FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
            rows = cur.fetchall()
        finally:
            conn.close()
        ours = {pid: proc_cpu(pid) for pid, mine in rows if mine}
        background = {pid: proc_cpu(pid) for pid, mine in rows if mine is None}
        return {"backends": ours, "postgres background": background}

    def _snapshot(self) -> dict[str, dict[int, float]]:
        own = os.times()
        return {
            "servers": {s.proc.pid: s.cpu_seconds() for s in self.servers},
            **self._backends(),
            "bench process": {0: own.user + own.system},
            "machine busy": {0: machine_busy()},
        }

    def per_message(self, messages: int) -> dict[str, float]:
        """CPU ms per message of each part since construction (a backend that started meanwhile from 0)."""
        after = self._snapshot()
        out = {}
        for part, now in after.items():
            was = self.before.get(part, {})
            out[part] = sum(cpu - was.get(pid, 0.0) for pid, cpu in now.items()) / messages * 1000
        return out


def wa_id(c: int) -> str:
    return f"2637{c:08d}"


def bodies(n: int, contacts: int, tag: str) -> list[list[bytes]]:
    """n signed webhook bodies, split per contact (each contact's messages in timestamp order); message i
    is contact i % contacts's (i // contacts)-th, saying the next line of SCRIPT."""
    per: list[list[bytes]] = [[] for _ in range(contacts)]
    for i in range(n):
        c = i % contacts
        words = SCRIPT[len(per[c]) % len(SCRIPT)].format(c=c)
        item = wa.text(wa_id(c), words, ts=wa.TS + i, mid=f"wamid.bench.{tag}.{i}")
        per[c].append(wa.body_of(wa.envelope([item], [wa.contact(wa_id(c), "Bench")])))
    return per


def deliveries(n: int, contacts: int, tag: str) -> list[list[bytes]]:
    """bodies(n, contacts, tag) as whole signed HTTP requests, built before a load starts: the load's own
    CPU is then only its sockets' (building and signing a body costs about 17 µs a message here)."""
    return [
        [
            b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\nContent-Length: %d\r\n"
            b"Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n\r\n%s"
            % (len(body), wa.sign(body).encode(), body)
            for body in mine
        ]
        for mine in bodies(n, contacts, tag)
    ]


class Client:
    """A keep-alive HTTP/1.1 connection that sends whole requests (deliveries(): the headers http.client
    sends, but the port in Host) and reads each answer to its Content-Length. http.client's request and
    response, its header parsing above all, cost about 369k instructions a POST; this about 23k
    (cachegrind), a server's side of the request unchanged."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, request: bytes) -> int:
        """Send the request; its answer's status once the whole answer is read."""
        self.sock.sendall(request)
        buf = self._recv()
        while not message_end(buf):
            buf += self._recv()
        return int(buf[9:12])

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def post_all(
    ports: list[int], per_contact: list[list[bytes]], threads: int, offered: float | None = None
) -> tuple[float, list[float], dict[int, list[float]]]:
    """Post every request (deliveries()); each thread owns some contacts and posts their messages in order,
    message i to ports[i % len(ports)] over a keep-alive connection to each: spread evenly over the
    servers, as a load balancer in front of them spreads Meta's deliveries, whatever the number of threads
    (one port per thread gave one of three servers half the load with four threads, and the others chased
    its backlog). offered: messages per second (message i no earlier than i / offered s after the start);
    None: at once. Returns (wall seconds, POST latencies in seconds, the start time of each contact's POSTs)."""
    contacts = len(per_contact)
    latencies: list[float] = []
    posted: dict[int, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[str] = []
    start = time.perf_counter() + 0.05

    def run(t: int) -> None:
        conns = [Client(port) for port in ports]
        mine: list[float] = []
        # The thread's contacts, message by message in global order: each keeps its order, contacts alternate.
        queue = sorted(
            (k * contacts + c, c, request)
            for c in range(t, contacts, threads)
            for k, request in enumerate(per_contact[c])
        )
        for i, c, request in queue:
            if offered:
                time.sleep(max(0.0, start + i / offered - time.perf_counter()))
            sent = time.perf_counter()
            status = conns[i % len(conns)].post(request)
            mine.append(time.perf_counter() - sent)
            with lock:
                posted[c].append(sent)
            if status != 200:
                errors.append(str(status))
        for conn in conns:
            conn.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} POSTs were not answered 200: {sorted(set(errors))}")
    return wall, latencies, posted


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def reply_latencies(graph: TimedGraph, posted: dict[int, list[float]], before: dict[str, int]) -> list[float]:
    """Each message's time from its POST to its reply reaching the stand-in (one reply per message)."""
    out = []
    for c, times in posted.items():
        arrivals = graph.arrivals[wa_id(c)][before.get(wa_id(c), 0) :]
        out += [arrived - sent for sent, arrived in zip(times, arrivals)]
    return out


def end_to_end(
    ports: list[int], graph: TimedGraph, per: list[list[bytes]], threads: int, offered: float | None
) -> tuple[float, list[float]]:
    """Post every body and wait for every reply: (messages/s from the first POST to the last reply,
    each message's POST-to-reply latency)."""
    n = sum(len(p) for p in per)
    before = {k: len(v) for k, v in graph.arrivals.items()}
    expected = graph.count + n
    start = time.perf_counter()
    _, _, posted = post_all(ports, per, threads, offered)
    got = graph.wait_for(expected, timeout=300)
    elapsed = time.perf_counter() - start
    if got < expected:
        raise RuntimeError(f"only {got - expected + n} of {n} replies arrived")
    return n / elapsed, reply_latencies(graph, posted, before)


def bench_acks(url: str, graph: TimedGraph, n: int, threads: int, run: int) -> tuple[float, float, float]:
    prepare(url)
    server = Server.flows_serve(url, graph.url, workers=0)
    try:
        post_all([server.port], deliveries(200, 50, f"warm{run}"), threads)  # connections, caches, first inserts
        wall, lat, _ = post_all([server.port], deliveries(n, 200, f"acks{run}"), threads)
    finally:
        server.stop()
    return n / wall, pct(lat, 50) * 1000, pct(lat, 99) * 1000


def bench_e2e(url: str, graph: TimedGraph, args: argparse.Namespace, run: int, processes: int) -> dict[str, float]:
    """Capacity (burst), latency at the offered load, and the idle RSS, with `processes` servers."""
    prepare(url)
    counted = args.statements and url.startswith("postgres")
    counts = [tempfile.mktemp(prefix="convoflow-statements-") if counted else None for _ in range(processes)]
    servers = [
        Server.flows_serve(url, graph.url, args.workers, args.send_rate / processes, args.checkout, c) for c in counts
    ]
    try:
        ports = [s.port for s in servers]
        if args.warm:  # each server's first messages: its connections, backends and caches, left out
            end_to_end(ports, graph, deliveries(args.warm, args.contacts, f"warm{run}"), args.threads, None)
        # Built before the CPU is read: the requests, not their building, are the load.
        burst_load = deliveries(args.messages, args.contacts, f"burst{run}")
        steady_load = deliveries(args.messages, args.contacts, f"steady{run}")
        split = CpuSplit(url, servers)
        before = statement_counts(counts)
        burst, _ = end_to_end(ports, graph, burst_load, args.threads, None)
        cpu = split.per_message(args.messages)
        after_burst = statement_counts(counts)
        steady, lat = end_to_end(ports, graph, steady_load, args.threads, args.offered * processes)
        after_steady = statement_counts(counts)
        time.sleep(1.0)  # let the process go idle before reading its memory
        rss = servers[0].rss_mb()
    finally:
        for s in servers:
            s.stop()
        for c in counts:
            for path in (c, f"{c}.tmp", f"{c}.ask") if c else ():
                if os.path.exists(path):
                    os.remove(path)
    per_message = {}
    if counted:
        for load, (was, now) in (("burst", (before, after_burst)), ("steady", (after_burst, after_steady))):
            for kind in now:
                per_message[f"sql:{load}:{kind}"] = (now[kind] - was.get(kind, 0)) / args.messages
    return {
        "burst": burst,
        "steady": steady,
        "p50": pct(lat, 50) * 1000,
        "p99": pct(lat, 99) * 1000,
        "rss": rss,
        "cpu": cpu["servers"],
        **{f"cpu:{part}": ms for part, ms in cpu.items()},
        **per_message,
    }


def statement_counts(paths: list[str | None]) -> dict[str, float]:
    """The servers' statements so far by kind, summed, and their threads' CPU seconds by what they do
    ("thread: …"; bench/statements.py), read once the load has settled:
    a send's mark follows the Graph API's answer, and the counts are written every statements.STEP s."""
    if not any(paths):
        return {}
    time.sleep(0.5)
    asks = [f"{path}.ask" for path in paths if path]
    for ask in asks:
        open(ask, "w").close()
    deadline = time.monotonic() + 5
    while any(os.path.exists(ask) for ask in asks) and time.monotonic() < deadline:
        time.sleep(statements.STEP / 2)
    total: dict[str, float] = defaultdict(int)
    for path in paths:
        for kind, n in statements.read(path).items():
            total[kind] += n
    total["all"] = sum(n for kind, n in total.items() if not kind.startswith("thread: "))
    return dict(total)


def summary(name: str, values: list[float], unit: str, fmt: str = "{:.0f}") -> str:
    return (
        f"{name}: median {fmt.format(statistics.median(values))} {unit} (spread {fmt.format(min(values))}–"
        f"{fmt.format(max(values))}, {len(values)} runs)"
    )


def report_e2e(label: str, results: list[dict[str, float]], offered: float) -> None:
    def col(key: str) -> list[float]:
        return [r[key] for r in results]

    print("  " + summary(f"{label}: capacity (burst)", col("burst"), "messages/s"))
    print("  " + summary(f"{label}: server CPU per message (burst)", col("cpu"), "ms", "{:.2f}"))
    for key in [k for k in results[0] if k.startswith("cpu:") and k != "cpu:servers"]:
        print("    " + summary(f"CPU per message, {key[4:]}", col(key), "ms", "{:.2f}"))
    print("  " + summary(f"{label}: steady load offered at {offered:.0f}/s", col("steady"), "messages/s"))
    print("  " + summary(f"{label}: POST-to-reply p50", col("p50"), "ms"))
    print("  " + summary(f"{label}: POST-to-reply p99", col("p99"), "ms"))
    for load in ("burst", "steady"):
        kinds = sorted({k for r in results for k in r if k.startswith(f"sql:{load}:") and r[k]}, key=_statement_order)
        if kinds:
            print(f"    statements a message, {load} (bench/statements.py), run by run:")
        for key in [k for k in kinds if not k.split(":", 2)[2].startswith("thread: ")]:
            print(f"      {key.split(':', 2)[2]:<22} " + " / ".join(f"{r.get(key, 0.0):.3f}" for r in results))
        threads = sorted(
            (k for k in kinds if k.split(":", 2)[2].startswith("thread: ")), key=lambda k: -results[0].get(k, 0.0)
        )
        if threads:
            print(f"    the servers' CPU a message by thread, {load}, ms (bench/statements.py), run by run:")
        for key in threads:
            name = key.split(":", 2)[2][len("thread: ") :]
            print(f"      {name:<30} " + " / ".join(f"{1000 * r.get(key, 0.0):.3f}" for r in results))


def _statement_order(key: str) -> tuple[int, str]:
    kind = key.split(":", 2)[2]
    return (kind == "all", kind)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--acks", type=int, default=3000, help="POSTs per ack run (0: skip the ack runs)")
    parser.add_argument("--messages", type=int, default=1200, help="messages per end-to-end load")
    parser.add_argument("--contacts", type=int, default=100, help="contacts in the end-to-end run")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    parser.add_argument("--workers", type=int, default=2, help="turn threads of each server in the end-to-end run")
    parser.add_argument("--graph-latency-ms", type=float, default=0.0, help="how long the Graph API takes to answer")
    parser.add_argument("--send-rate", type=float, default=80, help="the number's messages/s, shared by the processes")
    parser.add_argument("--offered", type=float, default=80, help="steady load per process, messages/s")
    parser.add_argument("--processes", type=int, default=1, help="servers sharing the PostgreSQL database")
    parser.add_argument(
        "--statements", action="store_true", help="PostgreSQL: count the servers' statements a message, by kind"
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        help="messages each end-to-end run posts and waits for before its burst, not measured "
        "(4 per contact keep each conversation's script whole)",
    )
    parser.add_argument("--checkout", default=REPO, help="serve this checkout's code (default: this one)")
    args = parser.parse_args()
    args.checkout = os.path.abspath(args.checkout)
    return args


def main() -> None:
    args = arguments()
    targets = []
    tmp = tempfile.mkdtemp(prefix="convoflow-bench-")
    if args.only in (None, "sqlite"):
        targets.append(("SQLite", f"sqlite:///{os.path.join(tmp, 'bench.db')}"))
    pg = os.environ.get("TEST_DATABASE_URL")
    if args.only in (None, "postgres"):
        if pg:
            targets.append(("PostgreSQL", pg))
        else:
            print("PostgreSQL: skipped (set TEST_DATABASE_URL, e.g. inside `bash .ci/run`'s cluster)")
    print(
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start: other work on the machine "
        f"shares them), Python {sys.version.split()[0]}, {args.threads} client threads; "
        f"acks: {args.acks} POSTs/run, end-to-end: {args.messages} messages from {args.contacts} contacts/load, "
        f"Graph API answering in {args.graph_latency_ms:.0f} ms, send rate {args.send_rate:.0f}/s a number"
    )
    graph = TimedGraph(args.graph_latency_ms)
    try:
        for name, url in targets:
            acks, p50, p99, one, many = [], [], [], [], []
            for run in range(args.runs):
                if args.acks:
                    a, l50, l99 = bench_acks(url, graph, args.acks, args.threads, run)
                    acks.append(a), p50.append(l50), p99.append(l99)
                one.append(bench_e2e(url, graph, args, run, 1))
                if args.processes > 1 and name == "PostgreSQL":
                    many.append(bench_e2e(url, graph, args, run, args.processes))
            print(f"\n{name} (load average {os.getloadavg()[0]:.1f} at the end)")
            if acks:
                print("  " + summary("webhook acks", acks, "acks/s"))
                print("  " + summary("ack latency p50", p50, "ms", "{:.2f}"))
                print("  " + summary("ack latency p99", p99, "ms", "{:.2f}"))
            report_e2e("end-to-end, 1 process", one, args.offered)
            if many:
                report_e2e(f"end-to-end, {args.processes} processes", many, args.offered * args.processes)
            print("  " + summary(f"idle RSS (serve, {args.workers} workers)", [r["rss"] for r in one], "MB", "{:.1f}"))
    finally:
        graph.close()


if __name__ == "__main__":
    main()
