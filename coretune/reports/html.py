"""A self-contained HTML report: sortable tables, figures embedded as PNG data URIs, no
network needed to view it (no external scripts, fonts or styles)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

from coretune.reports.claims import soft_label_claims
from coretune.reports.leaderboard import Leaderboard, paper_text, ratio_label, selector_label
from coretune.reports.provenance import Provenance
from coretune.reports.stats import gains

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee;cursor:pointer} td.l,th.l{text-align:left}
td.best{font-weight:bold;background:#e6f4e6} td.second{text-decoration:underline}
td.up{color:#063}td.down{color:#a00} img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
.claim-true{color:#063}.claim-false{color:#a00}.claim-none{color:#777}
"""

SORT = """
document.querySelectorAll('table.sortable th').forEach(function(th){
 th.addEventListener('click',function(){
  var table=th.closest('table'),body=table.tBodies[0],
   i=Array.from(th.parentNode.children).indexOf(th);
  var rows=Array.from(body.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
  rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,
   y=b.cells[i].dataset.v||b.cells[i].textContent,fx=parseFloat(x),fy=parseFloat(y);
   var c=(!isNaN(fx)&&!isNaN(fy))?fx-fy:x.localeCompare(y);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});});});
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _board_table(b: Leaderboard) -> str:
    head = "".join(f"<th>{_e(ratio_label(r))}</th>" for r in b.ratios)
    rows = []
    for row in b.rows:
        cells = []
        for r in b.ratios:
            c = b.cells.get((row, r))
            if c is None:
                cells.append("<td data-v='-1'>–</td>")
                continue
            cls = "best" if b.is_best(row, r) else "second" if b.is_second(row, r) else ""
            paper = paper_text(b, row, r)
            tip = f" title='paper {_e(paper)}'" if paper else ""
            cells.append(f"<td class='{cls}' data-v='{c.mean:.4f}'{tip}>{_e(c.text())}</td>")
        rows.append(f"<tr><td class='l'>{_e(selector_label(row))}</td><td class='l'>"
                    f"{_e(row.label_mode)}</td>{''.join(cells)}</tr>")
    return (f"<table class='sortable'><thead><tr><th class='l'>selector</th>"
            f"<th class='l'>label mode</th>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def _gain_table(b: Leaderboard, against: str | None) -> str:
    table = gains(b, against)
    if not table:
        return ""
    head = "".join(f"<th>{_e(ratio_label(r))}</th>" for r in b.ratios)
    rows = []
    for row in b.rows:
        if not any((row, r) in table for r in b.ratios):
            continue
        cells = []
        for r in b.ratios:
            g = table.get((row, r))
            if g is None:
                cells.append("<td>–</td>")
                continue
            p = "" if g.p is None else f", p={g.p:.3f}"
            sign = ("up" if g.delta > 0 else "down") if g.significant else ""
            cells.append(f"<td class='{sign}' data-v='{g.delta:.4f}'>"
                         f"{_e(g.text())} <small>(n={g.n}/{g.n_ref}{p})</small></td>")
        rows.append(f"<tr><td class='l'>{_e(selector_label(row))}</td><td class='l'>"
                    f"{_e(row.label_mode)}</td>{''.join(cells)}</tr>")
    what = "Random + soft labels" if against == "soft" else "Random with the same labels"
    return (f"<h3>Δ to {what}</h3><table class='sortable'><thead><tr><th class='l'>selector"
            f"</th><th class='l'>label mode</th>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def render_html(boards: list[Leaderboard], figures: Mapping[str, bytes],
                provenance: Provenance | None = None, title: str = "coretune report") -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>"]
    if not boards:
        parts.append("<p>No finished trials to report.</p>")
    for b in boards:
        parts.append(f"<h2>{_e(b.title)}</h2><p>{_e(b.header())}</p>")
        parts.append("<p>Test accuracy (%), mean ± std over seeds; bold = best in its "
                     "column, underlined = second; hover a cell for the papers' value.</p>")
        parts.append(_board_table(b) + _gain_table(b, None) + _gain_table(b, "soft"))
        parts.append("<h3>The papers' claims on this run</h3><ul>")
        for claim in soft_label_claims(b):
            cls = {True: "claim-true", False: "claim-false", None: "claim-none"}[claim.holds]
            parts.append(f"<li class='{cls}'>{_e(claim.text)}: <b>{_e(claim.verdict())}</b>"
                         f" — {_e(claim.evidence)}</li>")
        parts.append("</ul>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for name, png in figures.items():
            data = base64.b64encode(png).decode()
            parts.append(f"<h3>{_e(name)}</h3><img alt='{_e(name)}' "
                         f"src='data:image/png;base64,{data}'>")
    if provenance is not None:
        parts.append("<h2>Provenance</h2><table><tbody>" + "".join(
            f"<tr><td class='l'>{_e(k)}</td><td class='l'>{_e(v)}</td></tr>"
            for k, v in provenance.items()) + "</tbody></table>")
    parts.append(f"<script>{SORT}</script></body></html>")
    return "".join(parts)
