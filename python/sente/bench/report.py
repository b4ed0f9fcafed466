"""The fan-out benchmark's output: JSON lines (one record per peer and phase), a markdown table, ratios and a PNG.

Records are plain dicts (see :meth:`sente.bench.run.Bench.measure`): ``kind`` is ``connect`` (connection rate,
idle RSS) or ``burst``/``rate`` (deliveries/s, latency percentiles, lost, server CPU). ``sente bench
--report results.jsonl`` re-renders the table and chart from a saved file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _fmt(value: Any, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per peer and phase, connection figures joined onto each peer's rows."""
    connect = {r["peer"]: r for r in records if r["kind"] == "connect"}
    lines = [
        "| peer | mode | N | events | offered/s | deliveries/s | p50 ms | p99 ms | p999 ms | lost | "
        "server CPU s | CPU µs/delivery | events/frame | peak RSS MB | KB/idle conn | conn/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if r["kind"] == "connect":
            continue
        c = connect.get(r["peer"], {})
        offered = r.get("offered_per_s")
        lines.append(
            f"| {r['peer']} | {r['kind']} | {r['n']} | {r['events']} | {_fmt(offered, ',.0f', 'max')} | "
            f"{_fmt(r['deliveries_per_s'], ',.0f')} | {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} | "
            f"{_fmt(r['p999_ms'])} | {r['lost']} | {_fmt(r['server_cpu_s'], '.3f')} | "
            f"{_fmt(r['cpu_us_per_delivery'])} | {_fmt(r.get('events_per_frame'), '.1f')} | "
            f"{_fmt(r.get('peak_rss_mb'), '.1f')} | {_fmt(c.get('rss_kb_per_conn'), '.1f')} | "
            f"{_fmt(c.get('conn_per_s'), ',.0f')} |"
        )
    return "\n".join(lines)


def ratios(records: Sequence[dict[str, Any]]) -> str:
    """For each csente row: how many times less server CPU per delivery than each peer, in the same mode."""
    rows = [r for r in records if r["kind"] != "connect" and r.get("cpu_us_per_delivery")]
    out = []
    for r in rows:
        if not r["peer"].startswith("csente"):
            continue
        parts = []
        for other in rows:
            if other["kind"] == r["kind"] and other["peer"] != r["peer"] and not other["peer"].startswith("csente"):
                times = other["cpu_us_per_delivery"] / r["cpu_us_per_delivery"]
                parts.append(f"{times:.1f}× less than {other['peer']}" if times >= 1
                             else f"{1 / times:.1f}× more than {other['peer']}")
        if parts:
            out.append(f"* {r['peer']} {r['kind']}: server CPU per delivery " + ", ".join(parts))
    out += _against_broadcast_all(rows)
    return "\n".join(out)


UID_PUSH_PEERS = ("csente-uids", "csente-send", "csente-ref")
"""Peers whose events reach clients through a uid list or per-uid sends, the way Sente apps push."""


def _against_broadcast_all(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per-uid pushes against ``broadcast(event)`` (peer ``csente``) in the same mode: CPU per delivery and p99."""
    base = {r["kind"]: r for r in rows if r["peer"] == "csente"}
    out = []
    for r in rows:
        b = base.get(r["kind"])
        if r["peer"] in UID_PUSH_PEERS and b is not None:
            cpu = r["cpu_us_per_delivery"] / b["cpu_us_per_delivery"]
            p99 = f", p99 {r['p99_ms'] / b['p99_ms']:.2f}×" if r.get("p99_ms") and b.get("p99_ms") else ""
            out.append(f"* {r['peer']} {r['kind']} against csente's broadcast(event): {cpu:.2f}× the CPU per "
                       f"delivery{p99}")
    return out


def chart(records: Sequence[dict[str, Any]], path: Path) -> bool:
    """Two panels: server CPU µs per delivery (log scale) and p99 latency, per peer and mode. False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in records if r["kind"] != "connect"]
    labels = [f"{r['peer']}\n{r['kind']}" for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(rows) * 2), 4.5))
    cpu = [r["cpu_us_per_delivery"] or 0 for r in rows]
    ax1.bar(labels, cpu, color=["tab:blue" if r["peer"].startswith("csente") else "tab:gray" for r in rows])
    ax1.set_yscale("log")
    ax1.set_ylabel("server CPU µs per delivery (log)")
    ax1.set_title("fan-out cost")
    for i, v in enumerate(cpu):
        ax1.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)
    p99 = [r["p99_ms"] or 0 for r in rows]
    ax2.bar(labels, p99, color=["tab:orange" if r["peer"].startswith("csente") else "tab:gray" for r in rows])
    ax2.set_ylabel("p99 end-to-end latency, ms")
    ax2.set_title("latency")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=7)
    n = rows[0]["n"] if rows else 0
    fig.suptitle(f"broadcast to N={n} WebSocket clients")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
