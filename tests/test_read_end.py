"""protocol.read_end: what a read puts off runs at the end of that read, in order, in levels."""

from __future__ import annotations

import asyncio

import pytest

from protocol import read_end


async def test_outside_a_read_soon_is_the_loops_next_turn() -> None:
    ran: list[str] = []
    read_end.soon(lambda: ran.append("soon"), asyncio.get_running_loop())
    assert ran == []
    await asyncio.sleep(0)
    assert ran == ["soon"]


async def test_inside_a_read_it_runs_at_its_end_before_the_loops_next_turn() -> None:
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    outer = read_end.begin()
    try:
        loop.call_soon(ran.append, "next turn")
        read_end.soon(lambda: ran.append("first"), loop)
        read_end.soon(lambda: ran.append("second"), loop)
        ran.append("the read")
    finally:
        read_end.end(outer)
    assert ran == ["the read", "first", "second"]
    await asyncio.sleep(0)
    assert ran[-1] == "next turn"


async def test_what_the_ends_callbacks_put_off_runs_after_all_of_them() -> None:
    """Acks written at a read's end release holds; the rounds those let go are written once
    every ack is out, together (one round per session, not one per release)."""
    loop = asyncio.get_running_loop()
    ran: list[str] = []

    def ack(name: str) -> None:
        ran.append(f"ack {name}")
        read_end.soon(lambda: ran.append(f"round after {name}"), loop)

    outer = read_end.begin()
    try:
        read_end.soon(lambda: ack("a"), loop)
        read_end.soon(lambda: ack("b"), loop)
    finally:
        read_end.end(outer)
    assert ran == ["ack a", "ack b", "round after a", "round after b"]


async def test_a_failing_callback_is_said_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("a bug")

    outer = read_end.begin()
    try:
        read_end.soon(boom, loop)
        read_end.soon(lambda: ran.append("after"), loop)
    finally:
        read_end.end(outer)
    assert ran == ["after"]
    assert "a callback at the end of a read failed" in caplog.text


async def test_callbacks_that_keep_putting_off_go_to_the_loop_after_a_few_levels() -> None:
    loop = asyncio.get_running_loop()
    levels: list[int] = []

    def again(level: int) -> None:
        levels.append(level)
        if level < 20:
            read_end.soon(lambda: again(level + 1), loop)

    outer = read_end.begin()
    try:
        read_end.soon(lambda: again(1), loop)
    finally:
        read_end.end(outer)
    assert levels == list(range(1, read_end.LEVELS + 1))  # the read's share, then the loop's
    for _ in range(40):
        await asyncio.sleep(0)
    assert levels == list(range(1, 21))
