"""What asyncio's machinery costs one event: a task with a chain of coroutines, or a callback.

A pipelined event runs in a task of its own through about ten nested coroutines (the guard,
the handler, the repository, the event log, the script call, the Redis link) down to a future
the Redis reply completes. This prints what that costs per event with nothing else done, in
batches as a busy loop iteration sees them, against a future completed with a callback (what
an event path driven by callbacks would pay instead).

    .venv/bin/python bench/asyncio_cost.py
    .venv/bin/python bench/asyncio_cost.py --events 50000 --batch 50

Bounded: ``--events`` in total, in batches of ``--batch``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import time
from typing import Any


async def _leaf(future: asyncio.Future[int]) -> int:
    return await future


async def _chain(future: asyncio.Future[int], depth: int) -> int:
    if depth == 0:
        return await _leaf(future)
    return await _chain(future, depth - 1)


async def tasks_us(events: int, batch: int, depth: int) -> float:
    """µs per event: a task (with a context of its own) awaiting a future ``depth`` calls down."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for _ in range(events // batch):
        futures = [loop.create_future() for _ in range(batch)]
        tasks = [loop.create_task(_chain(f, depth), context=contextvars.copy_context()) for f in futures]
        await asyncio.sleep(0)  # each task runs down to its future
        for future in futures:
            future.set_result(1)
        await asyncio.sleep(0)  # the wake-ups are scheduled
        await asyncio.sleep(0)  # and run
        if not all(task.done() for task in tasks):
            raise RuntimeError("a task did not finish in its batch")
    return (time.perf_counter() - started) / events * 1e6


async def callbacks_us(events: int, batch: int) -> float:
    """µs per event: a future completed with a done callback."""
    loop = asyncio.get_running_loop()
    done: list[Any] = []
    started = time.perf_counter()
    for _ in range(events // batch):
        futures = [loop.create_future() for _ in range(batch)]
        for future in futures:
            future.add_done_callback(done.append)
        for future in futures:
            future.set_result(1)
        await asyncio.sleep(0)
    if len(done) != events // batch * batch:
        raise RuntimeError("a callback did not run")
    return (time.perf_counter() - started) / events * 1e6


async def main(args: argparse.Namespace) -> None:
    for depth in (0, 4, 9):
        cost_us = await tasks_us(args.events, args.batch, depth)
        print(f"task, {depth + 1:2d} coroutines deep: {cost_us:5.2f} µs per event")
    print(f"future + callback:          {await callbacks_us(args.events, args.batch):5.2f} µs per event")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
