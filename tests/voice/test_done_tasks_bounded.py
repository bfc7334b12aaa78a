"""A Done over a session full of task lines (load audit, finding a18): the job stops building
tasks once MAX_TASKS are kept and hands the event loop back between slices, so a client of the
same node is served while it runs; the stored tasks are the first MAX_TASKS as before."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from jobs.voice_digest import MAX_TASKS
from storage.jobs import Job
from tests.helpers import ServerUnderTest
from tests.voice.test_processing import run_jobs

MATERIALS = 1500
TEXT = ("TODO a\n" * 585)[:4095]  # every line a task, within the 4096-char limit
# Generous: the unbounded job held the loop for seconds; a bounded slice takes milliseconds.
MAX_WAIT_S = 1.0


async def _fill(server: ServerUnderTest, session_id: str) -> None:
    async def add(i: int) -> None:
        material = {"material_id": f"m{i:05d}", "kind": "text", "text": TEXT, "added_at": i}
        await server.services.voice.add_material(session_id, material, max_count=MATERIALS)

    for start in range(0, MATERIALS, 100):
        await asyncio.gather(*(add(i) for i in range(start, min(start + 100, MATERIALS))))


async def _slowest_answer_while(server: ServerUnderTest, job: asyncio.Task[None]) -> tuple[float, int]:
    """The longest wait of an unrelated client's requests sent one after another until ``job`` ends."""
    slowest_s, answered = 0.0, 0
    async with aiohttp.ClientSession() as http:
        while not job.done():
            started = time.monotonic()
            async with http.get(f"{server.url}/voicebot/fab/config") as resp:
                assert resp.status == 200
                await resp.read()
            slowest_s = max(slowest_s, time.monotonic() - started)
            answered += 1
    return slowest_s, answered


async def test_done_over_a_session_of_task_lines_keeps_the_loop_serving(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    await _fill(server, session_id)
    await server.services.jobs.enqueue(Job(type="DONE_MULTIPROMPT", session_id=session_id, performer_id="alice"))
    job = asyncio.create_task(run_jobs(server))
    slowest_s, answered = await asyncio.wait_for(_slowest_answer_while(server, job), timeout=60)
    await job
    assert slowest_s < MAX_WAIT_S, f"a client waited {slowest_s:.2f} s while the job ran"
    assert answered >= 1
    session = await server.services.voice.get(session_id)
    assert session is not None and session.tasks is not None and session.digest is not None
    # As documented: the first MAX_TASKS tasks, in material and line order.
    assert [(t["chunk_id"], t["line"]) for t in session.tasks] == [("m00000", n) for n in range(1, MAX_TASKS + 1)]
    assert session.digest["material_count"] == MATERIALS and session.digest["texts_total"] == MATERIALS
