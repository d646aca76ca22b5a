"""bench/webhook.py's load generator: the requests it builds, its client and its Graph API stand-in speak
the HTTP the servers under test speak (http.client as the sender uses it, requests as the peer does), and
every delivery reaches the server signed, whole and in its contact's order."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

import webhook as wb  # noqa: E402  (bench/webhook.py)


@pytest.fixture
def graph():
    stand_in = wb.TimedGraph(latency_ms=50)
    yield stand_in
    stand_in.close()


def _message(to: str, text: str) -> dict:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}}


def test_the_stand_in_answers_each_send_with_a_wamid_after_its_latency(graph):
    host, port = graph.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)  # the sender's client: one keep-alive connection
    started = time.perf_counter()
    answers = []
    for n in range(3):
        body = json.dumps(_message("263700000001", f"reply {n}")).encode()
        conn.request("POST", "/v21.0/1/messages", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answers.append((resp.status, resp.getheader("Content-Type"), json.loads(resp.read())))
    assert time.perf_counter() - started >= 3 * 0.05  # each answer waits for the latency
    peer = requests.post(f"{graph.url}/1/messages", json=_message("263700000002", "hi"), timeout=10)
    conn.close()

    assert [(status, kind) for status, kind, _ in answers] == [(200, "application/json")] * 3
    ids = [doc["messages"][0]["id"] for _, _, doc in answers] + [peer.json()["messages"][0]["id"]]
    assert len(set(ids)) == 4 and all(i.startswith("wamid.out.") for i in ids)
    assert answers[0][2]["contacts"] == [{"input": "263700000001", "wa_id": "263700000001"}]
    assert graph.wait_for(4, timeout=10) == 4
    assert {to: len(times) for to, times in graph.arrivals.items()} == {"263700000001": 3, "263700000002": 1}


def test_every_delivery_reaches_the_server_signed_and_in_its_contacts_order():
    seen = []

    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        seen.append((environ["HTTP_X_HUB_SIGNATURE_256"] == wb.wa.sign(body), json.loads(body)))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"OK"]

    server = wb.wa.ServerThread(app)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        _, latencies, posted = wb.post_all([port, port], wb.deliveries(12, 3, "t"), threads=2)
    finally:
        server.close()

    assert len(latencies) == 12 and sorted(len(times) for times in posted.values()) == [4, 4, 4]
    assert all(signed for signed, _ in seen)
    said: dict[str, list[str]] = {}
    for _, doc in seen:
        message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
        said.setdefault(message["from"], []).append(message["text"]["body"])
    assert said == {wb.wa_id(c): [line.format(c=c) for line in wb.SCRIPT] for c in range(3)}


def test_a_delivery_not_answered_200_fails_the_load():
    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("403 Forbidden", [("Content-Length", "0")])
        return [b""]

    server = wb.wa.ServerThread(app)
    try:
        with pytest.raises(RuntimeError, match=r"2 POSTs were not answered 200: \['403'\]"):
            wb.post_all([int(server.url.rsplit(":", 1)[1])], wb.deliveries(2, 1, "f"), threads=1)
    finally:
        server.close()


def test_the_stand_in_keeps_serving_after_a_sender_resets_its_connection(graph):
    import socket
    import struct

    host, port = graph.url.split("//")[1].split("/")[0].split(":")
    dropped = socket.create_connection((host, int(port)))
    dropped.sendall(b"POST /v21.0/1/messages HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")  # a send cut short
    dropped.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dropped.close()  # a reset, as a sender that gave up on its connection may leave

    answer = requests.post(f"{graph.url}/1/messages", json=_message("263700000003", "hi"), timeout=10)
    assert answer.status_code == 200 and answer.json()["messages"][0]["id"].startswith("wamid.out.")
