"""Process tuning of ``serve``: the garbage collector's thresholds and the open-files limit."""

from __future__ import annotations

import resource
import subprocess
import sys

from server.process import GEN1_EVERY, GEN2_EVERY, raise_open_files_limit


def test_tune_gc_freezes_start_up_objects_and_sets_the_thresholds() -> None:
    # In a child: freezing is process-wide and would change this test process's collector.
    code = (
        "import gc; from server.process import tune_gc; tune_gc(12345); "
        "print(gc.get_threshold(), gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"(12345, {GEN1_EVERY}, {GEN2_EVERY}) True"


def test_tune_gc_zero_keeps_the_defaults() -> None:
    code = (
        "import gc; before = gc.get_threshold(); from server.process import tune_gc; tune_gc(0); "
        "print(gc.get_threshold() == before, gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True 0"


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        assert raise_open_files_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# What a young collection may examine with the server's thresholds: at about 0.5 us an object
# on a busy host, ~30 ms of the event loop (issue 20, finding 3).
YOUNG_COLLECTION_BOUND = 60_000

_EXAMINED = """
import gc
from server.process import tune_gc
from server.settings import Settings
tune_gc(Settings.model_fields["gc_gen0_threshold"].default)
examined = [0]
def watch(phase, info):
    if phase == "start" and info["generation"] < 2:
        size = sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1))
        examined[0] = max(examined[0], size)
gc.callbacks.append(watch)
kept = [[n] for n in range(1_500_000)]  # what many connections keep: it all survives
print(examined[0])
"""


def test_a_young_collection_examines_a_bounded_number_of_objects() -> None:
    # The survivors of a burst of connections were all examined again in one young
    # collection (up to gen0 x 21 of them: ~1 M with 50,000 and 20), holding the loop for it.
    out = subprocess.run([sys.executable, "-c", _EXAMINED], capture_output=True, text=True, check=True).stdout
    assert 0 < int(out) <= YOUNG_COLLECTION_BOUND, f"a young collection examined {out.strip()} objects"


_CHURN = """
import asyncio, gc, sys
from server.process import YoungSweep, tune_gc
from server.settings import Settings
tune_gc(Settings.model_fields["gc_gen0_threshold"].default)
examined = [0]
collections = [0]
def watch(phase, info):
    if phase == "start" and info["generation"] < 2:
        collections[0] += 1
        size = sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1))
        examined[0] = max(examined[0], size)
gc.callbacks.append(watch)
old = [[n] for n in range(300_000)]  # the last run's connections
gc.collect()
examined[0] = 0  # what building them took does not count
async def main():
    sweep = YoungSweep(every_s=0.005).start() if sys.argv[1] == "sweep" else None
    new = []
    for turn in range(40):  # the next run's connections are built while the last's are freed
        for n in range(5_000):
            old.pop()
            new.append([n])
        if sweep is not None:  # a turn of the loop long enough for the sweep's timer
            before = collections[0]
            while collections[0] == before:
                await asyncio.sleep(0.001)
    gc.collect(0)  # the young collection that comes at last
    print(examined[0])
asyncio.run(main())
"""


def test_young_objects_made_while_old_ones_are_freed_are_collected_in_small_steps() -> None:
    # Frees count against allocations in the collector's trigger: a reconnect (old connections
    # freed while new ones are made) piled 200,000 objects into one young collection.
    def examined(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True)
        return int(run.stdout)

    assert examined("none") > 150_000  # CPython's own trigger never fired during the churn
    assert 0 < examined("sweep") <= YOUNG_COLLECTION_BOUND
