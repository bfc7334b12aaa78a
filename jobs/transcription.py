"""The transcription hook: runs the configured command once per audio chunk.

``SESSIONHUB_VOICE_TRANSCRIBE_COMMAND`` is split like a shell line (no shell runs it); the
chunk's file path is substituted for ``{path}`` and its type for ``{mime}``, or the path is
appended when neither placeholder appears. The command's standard output (UTF-8, at most
64 KiB, trimmed) is the transcript. A non-zero exit or a run longer than
``SESSIONHUB_VOICE_TRANSCRIBE_TIMEOUT_S`` marks that chunk's ``transcript_error``; the other
chunks go on. With no command set, nothing runs and the job says so.

The command never outlives its run: it gets a process group of its own, killed whole when the
run times out or the job is cancelled (a worker stopping), and on Linux it is killed when the
process that started it dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of ``serve`` does not leave
it running while the job is handed to another worker, which runs it again. A command that starts
programs of its own should ``exec`` the last one (a wrapper script): the kernel's signal reaches
the command's own process only.
"""

from __future__ import annotations

import asyncio
import logging
import contextlib
import os
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

from server.child_process import die_with_parent

MAX_TRANSCRIPT_BYTES = 64 * 1024
NOT_CONFIGURED = "not configured: no transcription command is set (SESSIONHUB_VOICE_TRANSCRIBE_COMMAND)"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Transcript:
    """One run's outcome: the text, or why there is none."""

    text: str = ""
    error: str = ""


def command_line(template: str, path: Path, mime: str) -> list[str]:
    """The argv for one chunk."""
    argv = shlex.split(template)
    if not any("{path}" in a or "{mime}" in a for a in argv):
        return [*argv, str(path)]
    return [a.replace("{path}", str(path)).replace("{mime}", mime) for a in argv]


async def transcribe(template: str, path: Path, mime: str, *, timeout_s: float) -> Transcript:
    """Run the command on one file."""
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *command_line(template, path, mime),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed whole below
            # Forked from the event loop's thread, which lives as long as the process.
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
    )
    try:
        # Shielded: a start cancelled before its pipes were connected waits forever for them
        # (CPython 3.11 closes the transport and awaits pipes it never had; a CI run hung there,
        # on a busy machine). Cancelled meanwhile, the start completes, and the group is ended.
        process = await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await _end(await starting)
        raise
    except OSError as exc:
        log.warning("the transcription command %r cannot be run: %s", template, exc)
        return Transcript(error=f"cannot run the transcription command: {exc.strerror or 'refused'}")
    # Read behind a shield: a timeout or a cancellation kills the process group first (_end),
    # which closes the pipes, and the reading then ends by itself. Cancelled directly, the read
    # waited on pipes the command's own children still held open (a CI run hung on one).
    reading = asyncio.ensure_future(process.communicate())
    try:
        out, err = await asyncio.wait_for(asyncio.shield(reading), timeout_s)
    except TimeoutError:
        return Transcript(error=f"the transcription command ran longer than {round(timeout_s, 1):g} s")
    finally:
        await _end(process)
        reading.cancel()  # done by now (the pipes closed with the group); never left running
    if process.returncode != 0:
        # Its own words (stderr: paths, hosts, what it was given) are the operator's, in the log:
        # the chunk's transcript_error goes to every client of the session (audit "verify47").
        detail = err.decode("utf-8", "replace").strip()[-300:]
        log.warning("the transcription command exited with %s on %s: %s", process.returncode, path.name, detail)
        return Transcript(
            error=f"the transcription command exited with {process.returncode} (the server's log says why)"
        )
    return Transcript(text=out[:MAX_TRANSCRIPT_BYTES].decode("utf-8", "replace").strip())


async def _end(process: asyncio.subprocess.Process) -> None:
    """Kill the command's process group (what it started too) while it still runs (a timeout, or
    the job cancelled), and reap it, even while being cancelled."""
    if process.returncode is not None:
        return  # exited and reaped: its pid, and group id, may be another's by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await asyncio.shield(process.wait())
