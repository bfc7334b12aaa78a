"""The transcription command never outlives its run: a ``kill -9`` of the process that started it
(a ``serve`` with in-process workers) kills it too, and a cancelled job kills its whole process
group. Each command here records its pid and waits; the test waits for the record, not a time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.transcription import transcribe

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0  # bounds only: each loop ends as soon as what it waits for is there


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet has ended: PID 1 of a container may not reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _pid_in(path: Path) -> int:
    async with asyncio.timeout(WAIT_S):
        while not (text := path.read_text() if path.exists() else "").endswith("\n"):
            await asyncio.sleep(0.02)
    return int(text)


async def _gone(pid: int) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_S):
            while _alive(pid):
                await asyncio.sleep(0.02)
    return not _alive(pid)


def _waiting_command(pid_file: Path) -> str:
    """A command that writes its own pid, then waits (as a stuck transcriber would)."""
    return f"sh -c 'echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file} && exec sleep 600'"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_the_command_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "command.pid"
    runner = (
        "import asyncio, sys; from pathlib import Path; from jobs.transcription import transcribe;"
        f" asyncio.run(transcribe(sys.argv[1], Path({str(tmp_path / 'chunk.webm')!r}), 'audio/webm', timeout_s=600))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", runner, _waiting_command(pid_file)], cwd=ROOT, env=env)
    command = 0
    try:
        command = await _pid_in(pid_file)
        assert _alive(command)
        parent.send_signal(signal.SIGKILL)  # as `kill -9` of serve: no clean-up of its own runs
        await asyncio.to_thread(parent.wait)
        assert await _gone(command), f"the transcription command {command} outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if command and _alive(command):
            os.kill(command, signal.SIGKILL)


async def test_a_cancelled_run_kills_the_commands_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The command starts a program of its own (a shell's background job), then waits for it.
    command = f"sh -c 'sleep 600 & echo $! > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; wait'"
    run = asyncio.create_task(transcribe(command, tmp_path / "chunk.webm", "audio/webm", timeout_s=600))
    child = await _pid_in(pid_file)
    try:
        run.cancel()  # a worker stopping
        with pytest.raises(asyncio.CancelledError):
            await run
        assert await _gone(child), f"the command's own child {child} outlived the cancelled job"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
