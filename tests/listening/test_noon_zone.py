"""The browser tests' zone pick: the test's first instant is at local noon, whatever the UTC hour."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime

import pytest

from tests.listening.support import noon_zone


@pytest.mark.parametrize("utc_hour", range(24))
def test_the_picked_zone_puts_the_instant_at_local_noon(utc_hour: int) -> None:
    instant = datetime(2026, 11, 25, utc_hour, 59, 29, tzinfo=UTC)
    zone = noon_zone(int(instant.timestamp() * 1000))
    local = instant.astimezone(zoneinfo.ZoneInfo(zone))
    assert local.hour == 12 and local.minute == 59, (zone, local)
