"""HTML building blocks of the report: number formatting, tables, the page and its style."""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import input_error


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise input_error(path, f"not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise input_error(path, "expected a JSON object")
    return data


def fmt(value: object, pattern: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return pattern.format(value)


def mean_and_spread(values: Sequence[float]) -> str | float | None:
    """`mean ± sample standard deviation` of runs with different seeds; the value itself for
    one run, None for none."""
    if len(values) < 2:
        return values[0] if values else None
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def key_value_table(facts: dict[str, str], code: bool = False) -> str:
    wrap = (lambda s: f"<code>{s}</code>") if code else (lambda s: s)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{wrap(html.escape(str(v)))}</td></tr>"
        for k, v in facts.items()
    )
    return f'<table class="facts">{rows}</table>'


STYLE = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2.5rem;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.8rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem}
table.metrics{font-size:.9rem}table.metrics td{text-align:right}
table.metrics td:first-child{text-align:left}
table.facts th{text-align:left;background:#f4f4f4}img{max-width:100%}
pre{background:#f6f6f6;padding:.8rem;overflow-x:auto}.note{color:#555;font-size:.9rem}
"""


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def metrics_table(rows: list[dict]) -> str:
    """Rows of equal keys as a table: the keys are the header, numbers right-aligned."""
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(row[c]))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f'<table class="metrics"><tr>{head}</tr>{body}</table>'
