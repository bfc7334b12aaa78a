"""Soak: `kill -9` of `sessionhub serve` with its embedded Redis, round after round (issue 6, item 2).

Each round starts `serve` on the same data folder, creates a session, and kills `serve` with
SIGKILL. It prints, per round and in total: the redis-servers working in the folder right after
the start (two means two servers writing one append-only file) and one second after the kill
(orphans), and at the end how many of the created sessions a final `serve` still finds.

    .venv/bin/python bench/soak_faults_ops.py [--rounds 5]

Bounded: every wait has a deadline, every process started here (and every redis-server found
in the soak's own temporary folder) is stopped here, by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common.servers import mint_token, start_server


def redis_servers_in(data_dir: Path) -> list[int]:
    """Pids of processes working in the folder's redis/ (redis-server chdirs to its dir)."""
    folder = (data_dir / "redis").resolve()
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)) == folder:
                found.append(int(cwd.parent.name))
        except OSError:
            pass
    return found


def start_serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``serve`` without REDIS_URL (it starts the folder's own redis-server), ready; its process and URL."""
    server = start_server(data_dir, None, data_dir=data_dir, inherit_settings=False)
    return server.child.process, server.url


def request(method: str, url: str, token: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def mint() -> str:
    from auth.claims import Permission

    return mint_token("soak", (Permission.READ_OWN, Permission.CREATE))


def soak(rounds: int) -> int:
    token = mint()
    with tempfile.TemporaryDirectory(prefix="sessionhub-soak-ops-") as tmp:
        data_dir = Path(tmp)
        created: list[str] = []
        most_on_folder = orphans_total = 0
        try:
            for number in range(1, rounds + 1):
                proc, url = start_serve(data_dir)
                on_folder = len(redis_servers_in(data_dir))
                status, body = request("POST", f"{url}/voicebot/create_session", token)
                if status == 201:
                    created.append(str(body["session_id"]))
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                time.sleep(1.0)
                orphans = len(redis_servers_in(data_dir))
                most_on_folder = max(most_on_folder, on_folder)
                orphans_total += orphans
                print(
                    f"round {number}: redis-servers on the folder after start {on_folder}, 1 s after kill -9 {orphans}"
                )
            proc, url = start_serve(data_dir)
            try:
                most_on_folder = max(most_on_folder, len(redis_servers_in(data_dir)))
                found = sum(1 for sid in created if request("GET", f"{url}/voicebot/sessions/{sid}", token)[0] == 200)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        finally:
            for pid in redis_servers_in(data_dir):  # ours: they work in this soak's temporary folder
                os.kill(pid, signal.SIGTERM)
    print(
        f"rounds {rounds}: most redis-servers on one folder {most_on_folder} (1 is right), "
        f"orphans after kill -9 {orphans_total} (0 is right), sessions kept {found}/{len(created)}"
    )
    return 0 if most_on_folder == 1 and orphans_total == 0 and found == len(created) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    return soak(min(max(parser.parse_args().rounds, 1), 50))


if __name__ == "__main__":
    raise SystemExit(main())
