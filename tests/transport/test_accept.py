"""server.transport.accept: ``/healthz`` answered in the turn its connection is accepted.

A probe of a node in a reconnect storm waited through the five loop turns a request takes
through asyncio and aiohttp (accept, transport, ``connection_made``, read, handler), each as
long as everything else that became ready meanwhile (issue 20, finding 3). The live test counts
turns, not time, so a loaded machine cannot fail it: the fixed answer must be in the client's
socket within two turns of the connection, where the same request with a query (which goes
the normal way) needs at least four. The parser is held to what it may take, and everything it
leaves goes to aiohttp intact.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from handlers.health import LIVE
from handlers.http_common import FixedAnswer, FrontAnswer
from server.app import SIO_KEY
from server.transport.accept import Acceptor, ConnectionPlaces, fixed_request
from tests.admin.test_http import admin_token
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.raw_wire import http_exchange, port_of
from tests.test_metrics import scrape_url, value


PATHS = {"/healthz": FixedAnswer("application/json; charset=utf-8", b'{"ok":true}')}
PROBE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\n\r\n"


def test_a_plain_probe_is_taken_with_its_request_id() -> None:
    assert fixed_request(PROBE, PATHS) is not None
    request = fixed_request(b"GET /healthz HTTP/1.0\r\nX-Request-Id: lb-7\r\nx-request-id: other\r\n\r\n", PATHS)
    assert request is not None and request.path == "/healthz" and request.request_id == "lb-7"
    assert fixed_request(b"GET /healthz HTTP/1.1\r\n\r\n", PATHS) is not None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(PROBE[:-2], id="incomplete"),
        pytest.param(PROBE + PROBE, id="a-second-request-behind-it"),
        pytest.param(PROBE + b"x", id="bytes-after-the-request"),
        pytest.param(PROBE.replace(b"/healthz", b"/healthz?x=1"), id="query"),
        pytest.param(PROBE.replace(b"/healthz", b"/readyz"), id="other-route"),
        pytest.param(PROBE.replace(b"/healthz", b"/healthz/"), id="sub-path"),
        pytest.param(PROBE.replace(b"GET ", b"HEAD "), id="head"),
        pytest.param(PROBE.replace(b"GET ", b"POST "), id="post"),
        pytest.param(PROBE.replace(b"HTTP/1.1", b"HTTP/2.0"), id="http-2"),
        pytest.param(PROBE.replace(b"Host: x", b"Content-Length: 0"), id="content-length"),
        pytest.param(PROBE.replace(b"Host: x", b"Transfer-Encoding: chunked"), id="chunked"),
        pytest.param(PROBE.replace(b"Host: x", b"Upgrade: h2c"), id="upgrade"),
        pytest.param(PROBE.replace(b"Host: x", b"Expect: 100-continue"), id="expect"),
        pytest.param(PROBE.replace(b"Host: x\r\n", b"Host: x\r\n folded\r\n"), id="folded-header"),
        pytest.param(PROBE.replace(b"Host: x", b"Host x"), id="no-colon"),
        pytest.param(PROBE.replace(b"Host: x", "Host: \u00e9".encode()), id="not-ascii"),
        pytest.param(PROBE.replace(b"Host: x", b"Host: x\x00"), id="control-character"),
        pytest.param(PROBE.replace(b"\r\n", b"\n"), id="bare-newlines"),
        pytest.param(PROBE.replace(b"Host: x", b"X-Pad: " + b"a" * 5000), id="long-head"),
    ],
)
def test_anything_else_goes_the_normal_way(data: bytes) -> None:
    assert fixed_request(data, PATHS) is None


def response_head(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    return {
        "status": head[0],
        **{name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])},
    }


async def turns_until_answered(port: int, request: bytes) -> tuple[int, bytes]:
    """Connect and send ``request`` in one go, then count loop turns until the answer is there."""
    probe = socket.create_connection(("127.0.0.1", port))  # the kernel completes it; the loop need not turn
    try:
        probe.sendall(request)
        answer = b""
        for turn in range(1, 50):
            await asyncio.sleep(0)  # exactly one turn of the loop (select, I/O callbacks, ready callbacks)
            try:
                answer += probe.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if b"\r\n\r\n" in answer:
                return turn, answer
        raise AssertionError("no answer within 50 turns")
    finally:
        probe.close()


async def test_a_probe_is_answered_in_the_turn_it_is_accepted(redis_process: Any, tmp_path: Any) -> None:
    srv: ServerUnderTest = await start_server(redis_process.url, tmp_path)
    try:
        port = port_of(srv.url)
        fixed_turns, fixed = await turns_until_answered(
            port, PROBE.replace(b"Accept", b"X-Request-Id: probe-1\r\nAccept")
        )
        normal_turns, normal = await turns_until_answered(port, PROBE.replace(b"/healthz", b"/healthz?via=aiohttp"))
        assert fixed_turns <= 2 < 4 <= normal_turns, (fixed_turns, normal_turns)
        # The same answer either way, with the headers every answer of the app carries.
        assert fixed.endswith(b"\r\n\r\n" + LIVE.body) and normal.endswith(b"\r\n\r\n" + LIVE.body)
        head, other = response_head(fixed), response_head(normal)
        assert head["status"] == other["status"] == "HTTP/1.1 200 OK"
        # Every header of the route's answer but the per-answer ones (Cache-Control: no-store too,
        # so that no cache in front answers a probe for a process that stopped).
        for name in set(other) - {"status", "date", "x-request-id", "connection", "keep-alive"}:
            assert head.get(name) == other[name], name
        assert head["x-request-id"] == "probe-1" and other["x-request-id"]
        assert head["connection"] == "close" and "date" in head
    finally:
        await srv.stop()


async def test_a_fixed_answer_is_counted_and_its_id_drawn_when_none_is_given(redis_process: Any, tmp_path: Any) -> None:
    srv: ServerUnderTest = await start_server(redis_process.url, tmp_path)
    try:
        port = port_of(srv.url)
        before = value(
            await scrape_url(srv.url, admin_token(srv)),
            "sessionhub_http_requests_total",
            route="/healthz",
            method="GET",
            status="200",
        )
        answers = [
            (await turns_until_answered(port, PROBE.replace(b"Host: x", b"X-Request-Id: not a token")))[1]
            for _ in range(3)
        ]
        ids = {response_head(answer)["x-request-id"] for answer in answers}
        assert len(ids) == 3 and "not a token" not in ids
        samples = await scrape_url(srv.url, admin_token(srv))
        assert (
            value(samples, "sessionhub_http_requests_total", route="/healthz", method="GET", status="200") == before + 3
        )
        assert value(samples, "sessionhub_http_request_seconds_count", route="/healthz") >= 3
        # Half a request at accept goes the normal way (peeking consumed nothing), and is answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(PROBE[:20])
            await writer.drain()
            for _ in range(6):  # the turns that accept it and read the half
                await asyncio.sleep(0)
            writer.write(PROBE[20:])
            async with asyncio.timeout(15):
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(len(LIVE.body))
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == LIVE.body
    finally:
        await srv.stop()


async def test_a_stopped_site_accepts_nothing(redis_process: Any, tmp_path: Any) -> None:
    # The acceptor reads the listening socket through a descriptor of its own: one left open
    # would keep the port accepting after the server stopped.
    srv: ServerUnderTest = await start_server(redis_process.url, tmp_path)
    port = port_of(srv.url)
    assert await http_exchange(port, PROBE) == (200, LIVE.body)
    await srv.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


class Counted(asyncio.Protocol):
    """Counts the connections it is made for."""

    made: ClassVar[list[asyncio.BaseTransport]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counted.made.append(transport)


async def test_out_of_descriptors_the_acceptor_pauses_and_then_takes_the_waiting_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # accept() failing with EMFILE leaves the connection queued and the listening socket ready:
    # an acceptor that kept its reader would spin the loop at 100% until a descriptor frees.
    listener = socket.create_server(("127.0.0.1", 0))
    acceptor = Acceptor(listener.fileno(), lambda place: Counted(), fixed={}, observers=[], backlog=16)
    acceptor.start()
    Counted.made = []
    clients = [socket.socket() for _ in range(3)]  # their descriptors exist before the limit drops
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = socket.socket()
    lowest_free = probe.fileno()
    probe.close()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor at all
        for client in clients:
            client.connect(listener.getsockname())  # the kernel queues it: no descriptor needed here
        for _ in range(20):  # twenty turns: a reader left in place would fail (and log) in each
            await asyncio.sleep(0)
        failures = [record for record in caplog.records if "not accepting for 1 s" in record.getMessage()]
        assert Counted.made == [] and len(failures) == 1, [record.getMessage() for record in caplog.records]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        async with asyncio.timeout(15):  # resumed after RETRY_AFTER_S
            while len(Counted.made) < 3:
                await asyncio.sleep(0.05)
    finally:
        for transport in Counted.made:
            transport.close()
        for client in clients:
            client.close()
        acceptor.stop()
        listener.close()


async def test_a_fixed_answer_is_counted_before_it_is_sent() -> None:
    # As aiohttp's middlewares do: with multiprocess metrics, a client holding its answer may
    # scrape another node at once, which must already see it (test_prometheus saw 1, not 2).
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    sent_before_counted: list[bool] = []

    def observe(answer: FrontAnswer) -> None:
        try:
            sent_before_counted.append(bool(client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)))
        except BlockingIOError:
            sent_before_counted.append(False)

    acceptor = Acceptor(
        listener.fileno(), lambda place: asyncio.Protocol(), fixed=PATHS, observers=[observe], backlog=16
    )
    acceptor.start()
    try:
        client.connect(listener.getsockname())
        client.sendall(PROBE)
        for _ in range(20):
            if sent_before_counted:
                break
            await asyncio.sleep(0)
        assert sent_before_counted == [False]
        client.settimeout(15)
        assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        client.close()
        acceptor.stop()
        listener.close()


HTTP_CAP = 4
NOT_FOUND = b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n"


def _places(srv: ServerUnderTest) -> dict[str, int]:
    """The plain HTTP connections the node counts per address now."""
    places: ConnectionPlaces = srv.app[SIO_KEY].http_places  # type: ignore[attr-defined]
    return places.open


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(15):  # a bound, not a wait: each give-back is a loop turn away
        while not condition():
            await asyncio.sleep(0.01)


async def _answered(reader: asyncio.StreamReader) -> bytes:
    """A response head, read while the connection stays open (keep-alive)."""
    async with asyncio.timeout(15):
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))
    return head


async def test_one_address_holds_at_most_its_plain_http_connections(
    redis: Any, redis_process: RedisProcess, tmp_path: Path
) -> None:
    # One address held 20,000 idle connections (every descriptor of the process) and the node
    # answered no one, /healthz included: past the cap a new connection is answered 429 and
    # closed in the turn it is accepted, not held for the idle timeout (two minutes here).
    srv = await start_server(
        redis_process.url, tmp_path, max_http_connections_per_address=HTTP_CAP, http_idle_timeout_s=120
    )
    port = port_of(srv.url)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    client: Client | None = None
    try:
        for _ in range(HTTP_CAP):
            held.append(await asyncio.open_connection("127.0.0.1", port))
        held[1][1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # trickling its headers
        held[2][1].write(NOT_FOUND)  # answered, then kept alive by aiohttp
        assert (await _answered(held[2][0])).startswith(b"HTTP/1.1 404")
        await _until(lambda: _places(srv).get("127.0.0.1") == HTTP_CAP)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(NOT_FOUND)
            async with asyncio.timeout(15):
                refused = await reader.read()  # to its end: the server closed it
        finally:
            writer.close()
        assert refused.startswith(b"HTTP/1.1 429 ") and b'"error":"rate_limited"' in refused, refused
        # Closed, a connection gives its place back: an idle one, and one aiohttp served.
        for _, closed in (held.pop(2), held.pop(0)):
            closed.close()
        await _until(lambda: _places(srv).get("127.0.0.1") == HTTP_CAP - 2)
        # A Socket.IO WebSocket holds a place only until the Engine.IO server takes it (its
        # own cap counts it from there): this one and two plain connections fit.
        client = await Client(srv.url, srv.token("alice")).connect(["websocket"])
        await _until(lambda: _places(srv).get("127.0.0.1") == HTTP_CAP - 2)
        for _ in range(2):
            held.append(await asyncio.open_connection("127.0.0.1", port))
            held[-1][1].write(NOT_FOUND)
            assert (await _answered(held[-1][0])).startswith(b"HTTP/1.1 404")
        if client is not None:
            await client.close()
        for _, writer in held:
            writer.close()
        await _until(lambda: _places(srv) == {})  # every place given back
        samples = await scrape_url(srv.url, admin_token(srv))
        assert value(samples, "sessionhub_connections_refused_total", reason="http_per_address_limit") == 1
    finally:
        if client is not None:
            await client.close()
        for _, writer in held:
            writer.close()
        await srv.stop()


async def test_behind_a_trusted_proxy_connections_are_not_counted_on_it(
    redis: Any, redis_process: RedisProcess, tmp_path: Path
) -> None:
    # Every connection's peer is the proxy then: a cap on it would be a cap on every client.
    srv = await start_server(redis_process.url, tmp_path, max_http_connections_per_address=1, trust_forwarded_for=True)
    held = [await asyncio.open_connection("127.0.0.1", port_of(srv.url)) for _ in range(3)]
    try:
        for reader, writer in held:
            writer.write(NOT_FOUND)
            assert (await _answered(reader)).startswith(b"HTTP/1.1 404")
    finally:
        for _, writer in held:
            writer.close()
        await srv.stop()


async def test_a_connection_accepted_as_the_acceptor_stops_is_closed_and_its_place_given_back() -> None:
    # A connection accepted in the acceptor's last turn has its transport made in a task of its
    # own; a server stopping in that same turn (shutdown while clients arrive) had the task
    # meet its stopped acceptor: an AssertionError logged as "Task exception was never
    # retrieved" at ERROR, the accepted socket left open until a garbage collection, and its
    # address's place never given back.
    listener = socket.create_server(("127.0.0.1", 0))
    places = ConnectionPlaces(4)
    acceptor = Acceptor(listener.fileno(), lambda place: Counted(), fixed={}, observers=[], places=places, backlog=16)
    acceptor.start()
    Counted.made = []
    client = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        acceptor._accept()  # the loop's reader, called now: accepted, its transport to be made
        opening = list(acceptor._opening)
        assert len(opening) == 1 and places.open == {"127.0.0.1": 1}
        acceptor.stop()  # before the opening task's first step
        await asyncio.gather(*opening)
        assert Counted.made == [] and places.open == {}
        assert client.recv(1) == b""  # closed: the client learns it at once
    finally:
        client.close()
        listener.close()
