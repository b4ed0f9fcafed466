"""``sente dashboard-snapshot``: the Grafana dashboard's panels, queried from Prometheus, drawn to one PNG.

Why: a picture of the dashboard for the README and for bug reports, without running Grafana. It reads the shipped
dashboard (``grafana/dashboards/sente.json``), runs every panel's PromQL over a time range through Prometheus'
HTTP API (``/api/v1/query_range``) after expanding Grafana's variables (``$__rate_interval``, ``$job``), and
draws each panel as a matplotlib line chart in the dashboard's grid order. Only the standard library talks HTTP;
matplotlib (the ``dev`` extra) is imported when drawing.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

_WHEEL_COPY = Path(__file__).resolve().parent / "grafana" / "sente.json"
_CHECKOUT_COPY = Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "sente.json"
DASHBOARD = _WHEEL_COPY if _WHEEL_COPY.is_file() else _CHECKOUT_COPY
"""The dashboard: the copy a wheel carries (setup.py puts it there), else the source checkout's grafana/."""

Series = list[tuple[str, list[tuple[float, float]]]]


def load_dashboard(path: str | Path = DASHBOARD) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(title, unit, [(expr, legend format)]) of every panel, in grid order (top to bottom, left to right)."""
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    return [
        (p["title"], p.get("fieldConfig", {}).get("defaults", {}).get("unit", "short"),
         [(t["expr"], t.get("legendFormat", "")) for t in p.get("targets", []) if t.get("expr")])
        for p in panels
    ]


def expand(expr: str, rate_interval: str = "30s", job: str = ".*") -> str:
    """Grafana's variables as Grafana would fill them for one job regex and one ``$__rate_interval``."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", job)


def _get(prometheus: str, path: str, params: dict[str, str], timeout: float) -> Any:
    url = prometheus.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus: {body.get('error', body)}")
    return body["data"]


def query(prometheus: str, expr: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    data = _get(prometheus, "/api/v1/query", {"query": expr}, timeout)
    result: list[dict[str, Any]] = data["result"]
    return result


def query_range(prometheus: str, expr: str, start: float, end: float, step: float,
                *, timeout: float = 10.0) -> list[dict[str, Any]]:
    data = _get(prometheus, "/api/v1/query_range",
                {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}, timeout)
    result: list[dict[str, Any]] = data["result"]
    return result


def legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def render(prometheus: str, out: str | Path, *, minutes: float = 5.0, end: float | None = None,
           rate_interval: str | None = None, job: str = ".*", dashboard: str | Path = DASHBOARD) -> Path:
    """Query every panel over the last ``minutes`` and write the PNG; its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time() if end is None else end
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    interval = rate_interval or f"{max(10, int(4 * step))}s"
    panels = panel_queries(load_dashboard(dashboard))
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.9 * rows), squeeze=False)
    for i, (ax, (title, unit, targets)) in enumerate(zip(axes.flat, panels, strict=False)):
        for expr, fmt in targets:
            for item in query_range(prometheus, expand(expr, interval, job), start, end, step):
                points = [(float(t), float(v)) for t, v in item["values"]]
                if points:
                    ax.plot([t - end for t, _ in points], [v for _, v in points], linewidth=1.2,
                            label=legend(fmt, item["metric"]))
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("seconds before the snapshot" if i >= (rows - 1) * cols else "", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if unit in ("s",):
            ax.set_ylabel("seconds", fontsize=8)
        elif unit in ("bytes", "Bps"):
            ax.set_ylabel("bytes" + ("/s" if unit == "Bps" else ""), fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Sente broker — last {minutes:g} min ({prometheus})", fontsize=12)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(prometheus: str, out: str, minutes: float, job: str, dashboard: str | None) -> int:
    """The command: prints the PNG's path."""
    path = render(prometheus, out, minutes=minutes, job=job, dashboard=dashboard or DASHBOARD)
    print(path)
    return 0
