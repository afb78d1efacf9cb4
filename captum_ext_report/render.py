"""Write the report: Markdown, a self-contained HTML page (figures embedded) and a JSON file."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captum_ext_report.context import Section

_VERDICT = {True: "confirmed", False: "not confirmed", None: "shown (no claim tested)"}


def _verdict(section: Section) -> str:
    return "error: " + section.error if section.error else _VERDICT[section.confirmed]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_markdown(path: Path, sections: Sequence[Section], header: dict[str, Any]) -> None:
    lines = ["# captum-ext sanity report", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()] + [""]
    lines += ["| section | verdict | seconds |", "|---|---|---|"]
    lines += [f"| {s.title} | {_verdict(s)} | {s.seconds:.1f} |" for s in sections] + [""]
    for s in sections:
        lines += [f"## {s.title}", "", f"**Claim.** {s.claim}", "", f"**Finding.** {s.finding}", ""]
        lines += [f"**Verdict:** {_verdict(s)}", ""]
        for table in s.tables:
            lines += [table, ""]
        lines += [f"![{s.title}]({figure})" for figure in s.figures] + [""]
    path.write_text("\n".join(lines))


def _table_html(table: str) -> str:
    rows = [r.strip().strip("|").split("|") for r in table.strip().splitlines()]
    rows = [r for r in rows if not set("".join(r)) <= set("-: ")]
    head, body = rows[0], rows[1:]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"]
    out += [
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body
    ]
    return "\n".join(out) + "</table>"


def write_html(path: Path, sections: Sequence[Section], header: dict[str, Any]) -> None:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:90%}img{max-width:100%}.ok{color:#070}.bad{color:#a00}.na{color:#555}"
    )
    parts = [
        f"<html><head><meta charset='utf-8'><title>captum-ext report</title><style>{style}</style>"
    ]
    parts += ["</head><body><h1>captum-ext sanity report</h1><ul>"]
    parts += [
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in header.items()
    ]
    parts += ["</ul>"]
    for s in sections:
        css = "bad" if s.error or s.confirmed is False else "ok" if s.confirmed else "na"
        parts += [
            f"<h2>{html.escape(s.title)}</h2>",
            f"<p><b>Claim.</b> {html.escape(s.claim)}</p>",
        ]
        parts += [f"<p><b>Finding.</b> {html.escape(s.finding)}</p>"]
        parts += [f"<p class='{css}'><b>Verdict:</b> {html.escape(_verdict(s))}</p>"]
        parts += [_table_html(t) for t in s.tables]
        for figure in s.figures:
            data = base64.b64encode((path.parent / figure).read_bytes()).decode()
            parts += [f"<img alt='{html.escape(figure)}' src='data:image/png;base64,{data}'>"]
    parts += ["</body></html>"]
    path.write_text("\n".join(parts))


def write_json(path: Path, sections: Sequence[Section], header: dict[str, Any]) -> None:
    payload = {
        "header": header,
        "sections": {
            s.key: {
                "title": s.title,
                "claim": s.claim,
                "finding": s.finding,
                "confirmed": s.confirmed,
                "error": s.error,
                "seconds": s.seconds,
                "figures": s.figures,
                "numbers": s.numbers,
            }
            for s in sections
        },
    }
    path.write_text(json.dumps(_jsonable(payload), indent=2))
