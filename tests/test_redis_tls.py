"""A Redis that accepts TLS only, as managed Redis services do (`rediss://`, a private CA).

README says how: redis-py's URL options (`?ssl_ca_certs=`). Over TLS the lean link is not used
(storage.lean_redis): every command and the bus go through redis-py's own connections. The
certificates are made here, for a redis-server the test starts on a free loopback port.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import Redis as SyncRedis

from tests.conftest import start_server
from tests.helpers import CHILD_TEST_TIMEOUT_S, SECRET, Client, free_port, redis_binary

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "tls-only-secret"


@dataclass
class TlsRedis:
    port: int
    ca: Path
    other_ca: Path  # a CA that signed nothing of this server's

    def url(self, ca: Path | None = None) -> str:
        return f"rediss://:{PASSWORD}@localhost:{self.port}/0?ssl_ca_certs={ca or self.ca}"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _certificates(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a server certificate it signed (for localhost and 127.0.0.1) and its key, and another CA."""
    now = datetime.datetime.now(datetime.UTC)
    made: list[Path] = []
    ca_key = _key()
    for name, key in (("ca", ca_key), ("other-ca", _key())):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sessionhub test {name}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        made.append(_write_pem(folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)))
    server_key = _key()
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sessionhub test ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_cert = _write_pem(folder / "redis.crt", cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return made[0], made[1], server_cert, _write_pem(folder / "redis.key", key_pem)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    ca, other_ca, cert, key = _certificates(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            redis_binary(),
            *("--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)),
            *("--tls-auth-clients", "no", "--requirepass", PASSWORD),
            *("--dir", str(tmp_path), "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = SyncRedis(host="localhost", port=port, password=PASSWORD, ssl=True, ssl_ca_certs=str(ca))
    deadline = time.monotonic() + 60  # a bound for a server that never starts, not a wait
    try:
        while True:
            try:
                assert int(probe.info("server")["process_id"]) == process.pid, "another redis-server answered"
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)
        yield TlsRedis(port=port, ca=ca, other_ca=other_ca)
    finally:
        probe.close()
        process.terminate()
        process.wait(10)


async def test_two_nodes_on_a_tls_only_redis_share_changes(
    tls_redis: TlsRedis, tmp_path: Path, clients: list[Client]
) -> None:
    """A change made through one node reaches a client of the other: the store, the scripts, the
    start checks and the bus over TLS."""
    one = await start_server(tls_redis.url(), tmp_path / "one")
    two = await start_server(tls_redis.url(), tmp_path / "two")
    try:
        session_id = await two.create_session("alice")
        watcher = await one.subscriber(clients, session_id)
        changer = Client(two.url, two.token("alice"))
        clients.append(changer)
        await changer.connect()
        ack = await changer.call("set_session_status", {"session_id": session_id, "status": "recording"})
        assert ack["ok"], ack
        await watcher.wait_for(lambda: [e["data"]["status"] for e in watcher.named("session_status")] == ["recording"])
    finally:
        await two.stop()
        await one.stop()


async def _cli(*args: str, redis_url: str) -> tuple[int, str]:
    env = {**os.environ, "SESSIONHUB_JWT_SECRET": SECRET, "REDIS_URL": redis_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), CHILD_TEST_TIMEOUT_S / 3)
    return int(process.returncode or 0), err.decode()


async def test_a_certificate_that_does_not_verify_stops_a_start_on_one_line(tls_redis: TlsRedis) -> None:
    """The wrong CA, or a plain `redis://` to the TLS port: one line naming it, no password, no
    traceback; the right CA works."""
    code, err = await _cli("admin", "grant", "someone", redis_url=tls_redis.url())
    assert code == 0, err
    for url in (tls_redis.url(tls_redis.other_ca), f"redis://:{PASSWORD}@localhost:{tls_redis.port}/0"):
        code, err = await _cli("admin", "grant", "someone", redis_url=url)
        assert code == 1, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "cannot reach Redis" in err and PASSWORD not in err, err
