"""docs/PROTOCOL.md states exactly the wire codes of protocol.errors.ErrorCode, with their statuses."""

from __future__ import annotations

import re
from pathlib import Path

from protocol.errors import ErrorCode

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| (\d{3}) \|", re.MULTILINE)


def test_the_error_table_is_the_enum() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    table = text[text.index("| code | HTTP | meaning |") :]
    table = table[: table.index("\n\n")]
    documented = {code: int(status) for code, status in _ROW.findall(table)}
    assert documented == {member.value: member.http_status for member in ErrorCode}
