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
