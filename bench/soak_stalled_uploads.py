"""Soak: chunk uploads that stall after their first bytes (issue 20, finding 2).

Several users each open more stalled uploads than they may have in flight: each sends its
form fields and 4 KiB of audio, then nothing. The server must refuse the uploads past the
per-user cap at once, answer every admitted one by the body deadline, and keep no temp file.
Prints, against their bounds: stalls admitted (users times cap) and refused, seconds until the last
admitted stall was answered (deadline + 2 s), temp files left (0), server RSS before/after.

    .venv/bin/python bench/soak_stalled_uploads.py [--users 6] [--per-user 12]

Bounded: every socket has a deadline; the server and Redis started here are stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import procstat

from common import servers

DEADLINE_S = 3.0
IN_FLIGHT = 8


def rss_mb(pid: int) -> float:
    return procstat.rss_kib(pid) / 1024


def token_for(user: str) -> str:
    return servers.mint_token(user)


async def stall(port: int, token: str, session_id: str) -> tuple[int, float]:
    """One stalled upload: its answer's status and when it came (seconds after sending)."""
    fields = "".join(
        f'--xyz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("session_id", session_id), ("start_ms", 0), ("end_ms", 500), ("duration_ms", 500))
    )
    head = (
        f"POST /voicebot/chunks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {1024 * 1024}\r\n\r\n"
    )
    part = '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.webm"\r\n\r\n'
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(head.encode() + fields.encode() + part.encode() + b"\x1a\x45\xdf\xa3" + b"\0" * 4096)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), DEADLINE_S + 30)
        return int(line.split()[1]), time.monotonic() - started
    finally:
        writer.close()


async def run(port: int, users: list[tuple[str, str]], per_user: int) -> list[tuple[int, float]]:
    tasks = [stall(port, token, session_id) for token, session_id in users for _ in range(per_user)]
    return await asyncio.gather(*tasks)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--per-user", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sessionhub-soak-stalls-") as tmp:
        workdir = Path(tmp)
        redis, url = servers.start_redis(workdir)
        server = None
        try:
            settings = {
                "SESSIONHUB_VOICE_UPLOAD_DEADLINE_S": str(DEADLINE_S),
                "SESSIONHUB_VOICE_UPLOADS_IN_FLIGHT": str(IN_FLIGHT),
            }
            server = servers.start_sessionhub(workdir, url, settings=settings)
            users = []
            for n in range(args.users):
                token = token_for(f"staller{n}")
                users.append((token, servers.create_session(server.port, token)))
            before = rss_mb(server.child.pid)
            results = asyncio.run(run(server.port, users, args.per_user))
            after = rss_mb(server.child.pid)
            incoming = [p for p in workdir.glob("data-*/blobs/.incoming/*")]
        finally:
            if server is not None:
                server.child.stop()
            redis.stop()
    admitted = [seconds for status, seconds in results if status == 400]
    refused = sum(1 for status, _ in results if status == 429)
    expected = args.users * min(IN_FLIGHT, args.per_user)
    slowest = max(admitted, default=0.0)
    print(f"stalls admitted {len(admitted)} (bound {expected}), refused at once {refused}")
    print(f"last admitted stall answered after {slowest:.2f} s (bound {DEADLINE_S + 2:.1f} s)")
    print(f"temp files left {len(incoming)} (bound 0); server RSS {before:.0f} -> {after:.0f} MB")
    ok = len(admitted) <= expected and slowest <= DEADLINE_S + 2 and not incoming
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
