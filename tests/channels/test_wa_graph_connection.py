"""The sender's own HTTP/1.1 exchange with the Graph API (channels.sender.GraphConnection), against a
loopback server that answers with scripted bytes: the answer shapes a server may use (a length, chunks,
a body that ends at close, an informational answer first), a connection the server says it closes, and
answers cut short. No database: Sender.deliver posts and reads, recording is tested elsewhere.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from channels.sender import Sender, SendPolicy
from storage.outbox import Claimed
from storage.settings import Settings

import whatsapp_fakes as wa

OK = json.dumps({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OK1"}]}).encode()


class Scripted:
    """A server on 127.0.0.1 that reads one request at a time and writes the next scripted answer; an
    answer ending in None closes the connection after it. Notes every request and every connection."""

    def __init__(self, answers: list[tuple[bytes, bool]]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v21.0"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            conn, _ = self.listener.accept()
            self.connections += 1
            with conn:
                while self.answers:
                    request = self._request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    answer, close = self.answers.pop(0)
                    conn.sendall(answer)
                    if close:
                        break

    @staticmethod
    def _request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += conn.recv(65536)
        return data

    def close(self) -> None:
        self.listener.close()


def sender_for(url: str) -> Sender:
    settings = Settings(
        whatsapp_access_token=wa.ACCESS_TOKEN,
        whatsapp_phone_number_id=wa.PHONE_NUMBER_ID,
        whatsapp_api_url=url,
        whatsapp_send_rate=1000,
    )
    return Sender(settings, policy=SendPolicy(connect_timeout=2, read_timeout=2), parallel=1)


def row(text: str = "hello") -> Claimed:
    return Claimed(1, "263771234567", "263771234567", json.dumps({"to": "263771234567", "text": text}), 0)


def answer(status: str, headers: list[str], body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def start(*answers: tuple[bytes, bool]) -> Scripted:
        servers.append(Scripted(list(answers)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_the_request_carries_the_message_the_token_and_its_length(scripted):
    server = scripted((answer("200 OK", [f"Content-Length: {len(OK)}"], OK), False))
    sender = sender_for(server.url)
    try:
        assert sender.deliver(row("hello there")).wamid == "wamid.OK1"
    finally:
        sender.close()
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"POST /v21.0/{wa.PHONE_NUMBER_ID}/messages HTTP/1.1"
    assert f"Authorization: Bearer {wa.ACCESS_TOKEN}" in lines and "Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}" in lines and f"Host: 127.0.0.1:{server.listener.getsockname()[1]}" in lines
    assert json.loads(body)["text"]["body"] == "hello there"


def test_chunked_and_informational_answers_are_read_and_the_connection_kept(scripted):
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (10, OK[:10], len(OK) - 10, OK[10:])
    server = scripted(
        (answer("100 Continue", [], b"") + answer("200 OK", ["Transfer-Encoding: chunked"], chunked), False),
        (answer("200 OK", [f"Content-Length: {len(OK)}"], OK), False),
    )
    sender = sender_for(server.url)
    try:
        assert [sender.deliver(row()).wamid for _ in range(2)] == ["wamid.OK1", "wamid.OK1"]
    finally:
        sender.close()
    assert server.connections == 1


def test_an_answer_that_closes_the_connection_makes_the_next_post_open_a_new_one(scripted):
    server = scripted(
        (answer("200 OK", [f"Content-Length: {len(OK)}", "Connection: close"], OK), True),
        (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK, True),
        (answer("200 OK", [f"Content-Length: {len(OK)}"], OK), False),
    )
    sender = sender_for(server.url)
    try:
        # the second answer has no length: its body is what comes until the server closes
        assert [sender.deliver(row()).ok for _ in range(3)] == [True, True, True]
    finally:
        sender.close()
    assert server.connections == 3


@pytest.mark.parametrize(
    "broken",
    [
        answer("200 OK", ["Content-Length: 500"], OK),  # fewer bytes than it said, then closed
        b"HTTP/1.1 2xx Fine\r\n\r\n",  # no status code
        b"",  # closed without a word
    ],
)
def test_an_answer_cut_short_or_garbled_is_a_retry_and_the_next_post_reconnects(scripted, broken):
    server = scripted((broken, True), (answer("200 OK", [f"Content-Length: {len(OK)}"], OK), False))
    sender = sender_for(server.url)
    try:
        first = sender.deliver(row())
        assert not first.ok and first.retry and first.reason.startswith("no answer from the Graph API (")
        assert wa.ACCESS_TOKEN not in first.reason
        assert sender.deliver(row()).wamid == "wamid.OK1"
    finally:
        sender.close()
    assert server.connections == 2


def test_a_graph_error_answer_is_read_as_before(scripted):
    error = json.dumps({"error": {"message": "(#131047) Re-engagement message", "code": 131047}}).encode()
    server = scripted((answer("400 Bad Request", [f"Content-Length: {len(error)}"], error), False))
    sender = sender_for(server.url)
    try:
        attempt = sender.deliver(row())
    finally:
        sender.close()
    assert (attempt.ok, attempt.retry, attempt.code) == (False, False, 131047)
    assert attempt.reason == "HTTP 400, code 131047: (#131047) Re-engagement message"
