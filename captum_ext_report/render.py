"""Write the report: Markdown, a self-contained HTML page (figures embedded) and a JSON file."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captum_ext_report.context import Section

_VERDICT = {True: "confirmed", False: "not confirmed", None: "shown (no claim tested)"}


def verdict_text(section: Section) -> str:
    """The section's outcome in words (its error, verdict, stated outcome or 'shown')."""
    if section.error:
        return "error: " + section.error
    if section.verdict is not None:
        return section.verdict.decide().outcome
    if section.outcome is not None:
        return section.outcome
    return _VERDICT[section.confirmed]


def _reason(section: Section) -> str:
    return "" if section.verdict is None or section.error else section.verdict.decide().reason


def _tables(section: Section) -> list[str]:
    """The section's tables, the pre-registered criteria first."""
    criteria = [] if section.verdict is None else [section.verdict.criteria_table()]
    return criteria + list(section.tables)


def _anchor(section: Section) -> str:
    return "sec-" + re.sub(r"[^a-z0-9_-]", "-", section.key.lower())


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
    lines += [
        f"| [{s.title}](#{_anchor(s)}) | {verdict_text(s)} | {s.seconds:.1f} |" for s in sections
    ] + [""]
    for s in sections:
        lines += [f'<a id="{_anchor(s)}"></a>', "", f"## {s.title}", ""]
        lines += [f"**Claim.** {s.claim}", "", f"**Finding.** {s.finding}", ""]
        reason = _reason(s)
        lines += [f"**Verdict:** {verdict_text(s)}" + (f" ({reason})" if reason else ""), ""]
        lines += [f"- skipped: {item}" for item in s.skipped] + ([""] if s.skipped else [])
        for table in _tables(s):
            lines += [table, ""]
        for i, figure in enumerate(s.figures):
            caption = s.captions[i] if i < len(s.captions) else ""
            lines += [f"![{s.title}]({figure})", ""] + ([f"*{caption}*", ""] if caption else [])
    path.write_text("\n".join(lines))


def _cells(row: str) -> list[str]:
    """Split a Markdown table row on unescaped bars; ``\\|`` stays a literal bar."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)]


def _table_html(table: str) -> str:
    rows = [_cells(r) for r in table.strip().splitlines()]
    rows = [r for r in rows if not set("".join(r)) <= set("-: ")]
    head, body = rows[0], rows[1:]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"]
    status = {"pass": "ok", "fail": "bad", "inconclusive": "partly", "skipped": "na"}

    def cell(c: str) -> str:
        css = status.get(c.strip())
        return f"<td class='{css}'>" if css else "<td>"

    out += [
        "<tr>" + "".join(f"{cell(c)}{html.escape(c.strip())}</td>" for c in r) + "</tr>"
        for r in body
    ]
    return "\n".join(out) + "</table>"


_CSS = {
    "confirmed": "ok",
    "partly confirmed": "partly",
    "not confirmed": "bad",
    "not tested": "na",
}


def _css(section: Section) -> str:
    if section.error:
        return "bad"
    verdict = verdict_text(section)
    if verdict in _CSS:
        return _CSS[verdict]
    return "bad" if section.confirmed is False else "ok" if section.confirmed else "na"


def write_html(path: Path, sections: Sequence[Section], header: dict[str, Any]) -> None:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.4}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:90%;vertical-align:top}th{background:#f3f3f3}"
        "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:90%;color:#333}"
        ".ok{color:#070}.bad{color:#a00}.partly{color:#a60}.na{color:#555}"
    )
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>captum-ext sanity report</title><style>{style}</style>",
        "</head><body><h1>captum-ext sanity report</h1><ul>",
    ]
    parts += [f"<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>" for k, v in header.items()]
    parts += ["</ul><h2 id='summary'>Verdicts</h2>"]
    parts += ["<table><tr><th>section</th><th>verdict</th><th>why</th><th>seconds</th></tr>"]
    for s in sections:
        parts += [
            f"<tr><td><a href='#{_anchor(s)}'>{esc(s.title)}</a></td>"
            f"<td class='{_css(s)}'><b>{esc(verdict_text(s))}</b></td>"
            f"<td>{esc(_reason(s))}</td><td>{s.seconds:.1f}</td></tr>"
        ]
    parts += ["</table><h2 id='contents'>Contents</h2><ol>"]
    parts += [f"<li><a href='#{_anchor(s)}'>{esc(s.title)}</a></li>" for s in sections]
    parts += ["</ol>"]
    for s in sections:
        parts += [
            f"<section id='{_anchor(s)}'><h2>{esc(s.title)}</h2>",
            f"<p><b>Claim.</b> {esc(s.claim)}</p>",
            f"<p><b>Finding.</b> {esc(s.finding)}</p>",
        ]
        reason = _reason(s)
        parts += [
            f"<p class='{_css(s)}'><b>Verdict: {esc(verdict_text(s))}</b>"
            + (f" &mdash; {esc(reason)}" if reason else "")
            + "</p>"
        ]
        if s.skipped:
            parts += ["<ul>"] + [f"<li>skipped: {esc(item)}</li>" for item in s.skipped]
            parts += ["</ul>"]
        parts += [_table_html(t) for t in _tables(s)]
        for i, figure in enumerate(s.figures):
            caption = s.captions[i] if i < len(s.captions) else figure
            data = base64.b64encode((path.parent / figure).read_bytes()).decode()
            parts += [
                f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>Figure {i + 1}. {esc(caption)}</figcaption></figure>"
            ]
        parts += ["<p><a href='#summary'>back to the verdicts</a></p></section>"]
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
                "verdict": verdict_text(s),
                "verdict_reason": _reason(s),
                "criteria": []
                if s.verdict is None
                else [
                    {"criterion": c.rule(), "measured": c.measured(), "status": c.status}
                    for c in s.verdict.criteria
                ],
                "skipped": s.skipped,
                "error": s.error,
                "seconds": s.seconds,
                "figures": s.figures,
                "numbers": s.numbers,
            }
            for s in sections
        },
    }
    path.write_text(json.dumps(_jsonable(payload), indent=2))
