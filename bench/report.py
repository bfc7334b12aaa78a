"""The benchmark's tables and its verdict on the issue's targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SATURATION_RATIO_TARGET = 3.0
FIXED_P99_TARGET_MS = 50.0
RSS_TARGET_KIB = 30.0
CONNECT_TARGET_S = 2.0
TARGET_N = 1000
GEN_BUSY_PCT = 90.0


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _lat(block: dict[str, Any], key: str, which: str) -> str:
    return _fmt((block.get(key) or {}).get(which), ".1f")


def _row(cells: list[str], widths: list[int]) -> str:
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in pairs)


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [title, _row(header, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in rows]
    return "\n".join(lines)


# A column: its header and how to read its cell from one phase's figures.
Column = tuple[str, Callable[[dict[str, Any]], str]]


def _key(name: str, spec: str = "") -> Callable[[dict[str, Any]], str]:
    return lambda block: _fmt(block.get(name), spec)


def _latency(kind: str, which: str) -> Callable[[dict[str, Any]], str]:
    return lambda block: _lat(block, kind, which)


CONNECT_COLUMNS: list[Column] = [
    ("subscribed", _key("subscribed")),
    ("connect s", _key("connect_s", ".3f")),
    ("RSS0 KiB", _key("rss_before_kib")),
    ("RSS1 KiB", _key("rss_after_kib")),
    ("KiB/client", _key("rss_per_client_kib", ".1f")),
]
SATURATION_COLUMNS: list[Column] = [
    ("deliv/s", _key("deliveries_per_s", ".0f")),
    ("events/s", _key("events_per_s", ".1f")),
    ("ack p50", _latency("ack", "p50_ms")),
    ("ack p99", _latency("ack", "p99_ms")),
    ("dlv p50", _latency("delivery", "p50_ms")),
    ("dlv p99", _latency("delivery", "p99_ms")),
    ("missing", _key("missing")),
    ("srv CPU%", _key("server_cpu_pct", ".0f")),
    ("gen CPU%", _key("gen_cpu_pct", ".0f")),
    ("redis CPU%", _key("redis_cpu_pct", ".0f")),
]
FIXED_COLUMNS: list[Column] = [
    ("rate", _key("rate", ".0f")),
    ("events/s", _key("events_per_s", ".1f")),
    ("deliv/s", _key("deliveries_per_s", ".0f")),
    ("dlv p50", _latency("delivery", "p50_ms")),
    ("dlv p99", _latency("delivery", "p99_ms")),
    ("dlv max", _latency("delivery", "max_ms")),
    ("ack p50", _latency("ack", "p50_ms")),
    ("ack p99", _latency("ack", "p99_ms")),
    ("missing", _key("missing")),
    ("srv CPU%", _key("server_cpu_pct", ".0f")),
    ("gen CPU%", _key("gen_cpu_pct", ".0f")),
]


def _phase_table(title: str, phase: str, columns: list[Column], results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        block = r.get(phase) or {}
        rows.append([r["server"], str(r["n"]), *(cell(block) for _, cell in columns)])
    return _table(title, ["server", "N", *(header for header, _ in columns)], rows)


def connect_table(results: list[dict[str, Any]]) -> str:
    """Connect+subscribe time and memory per client."""
    return _phase_table("CONNECT + SUBSCRIBE (all N clients; server RSS before/after)", "connect", CONNECT_COLUMNS, results)


def saturation_table(results: list[dict[str, Any]]) -> str:
    """Saturation: deliveries/s, latencies, loss, CPU."""
    return _phase_table("SATURATION (latencies in ms)", "saturation", SATURATION_COLUMNS, results)


def fixed_table(results: list[dict[str, Any]]) -> str:
    """Fixed rate: latencies, loss, CPU."""
    return _phase_table("FIXED RATE (latencies in ms)", "fixed", FIXED_COLUMNS, results)


def _find(results: list[dict[str, Any]], server: str, n: int) -> dict[str, Any] | None:
    return next((r for r in results if r["server"] == server and r["n"] == n), None)


def verdict(results: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Lines judging each target at N=1000, and the same as a dict for the JSON file."""
    lines: list[str] = []
    checks: dict[str, Any] = {}
    hub, stock = _find(results, "sessionhub", TARGET_N), _find(results, "stock", TARGET_N)
    if hub and stock and hub.get("saturation") and stock.get("saturation"):
        ratio = hub["saturation"]["deliveries_per_s"] / max(1.0, stock["saturation"]["deliveries_per_s"])
        checks["saturation_ratio"] = round(ratio, 2)
        lines.append(
            _check(
                f"deliveries/s at N={TARGET_N}, saturation, sessionhub/stock = {ratio:.2f}x",
                ratio >= SATURATION_RATIO_TARGET,
                f">= {SATURATION_RATIO_TARGET:.0f}x",
            )
        )
    if hub and hub.get("fixed"):
        f = hub["fixed"]
        p99 = f["delivery"]["p99_ms"]
        sustained = f["events_per_s"] >= 0.95 * f["rate"] and f["missing"] == 0
        ok = p99 is not None and p99 <= FIXED_P99_TARGET_MS and sustained
        checks["fixed_delivery_p99_ms"] = p99
        text = (
            f"{f['rate']:.0f} events/s to {TARGET_N}: {f['events_per_s']:.1f} events/s, "
            f"delivery p99 {p99} ms, missing {f['missing']}"
        )
        lines.append(_check(text, ok, f"p99 <= {FIXED_P99_TARGET_MS:.0f} ms"))
    if hub and hub.get("connect"):
        c = hub["connect"]
        checks["rss_per_client_kib"] = c["rss_per_client_kib"]
        checks["connect_s"] = c["connect_s"]
        lines.append(
            _check(
                f"server memory {c['rss_per_client_kib']:.1f} KiB per subscribed client",
                c["rss_per_client_kib"] <= RSS_TARGET_KIB,
                f"<= {RSS_TARGET_KIB:.0f} KiB",
            )
        )
        fast = c["connect_s"] < CONNECT_TARGET_S and c["subscribed"] == TARGET_N
        text = f"{c['subscribed']} clients connected and subscribed in {c['connect_s']:.3f} s"
        lines.append(_check(text, fast, f"< {CONNECT_TARGET_S:.0f} s"))
    for r in results:
        for phase in ("saturation", "fixed"):
            block = r.get(phase) or {}
            if (block.get("gen_cpu_pct") or 0) >= GEN_BUSY_PCT:
                lines.append(
                    f"  WARNING  load generator at {block['gen_cpu_pct']}% of its core "
                    f"({r['server']}, N={r['n']}, {phase}): it may be the bottleneck"
                )
            if block.get("missing") or block.get("stalled"):
                why = (
                    "still arriving when the drain ended: late, not lost"
                    if block.get("drain_cut")
                    else "deliveries had stopped: lost"
                )
                lines.append(
                    f"  WARNING  {r['server']} N={r['n']} {phase}: {block.get('missing')} deliveries missing "
                    f"({why}), {block.get('stalled') or 0} events stalled"
                )
    return lines, checks


def _check(text: str, ok: bool, target: str) -> str:
    return f"  {'PASS' if ok else 'FAIL'}  {text}  (target {target})"
