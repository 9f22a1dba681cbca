"""The stylesheet inlined into report.html: readable on a laptop, printable to PDF."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root{color-scheme:light;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#ffffff;--soft:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--fg);background:var(--bg);margin:0 auto;padding:16px 24px 48px;max-width:1200px}
h1{font-size:22px;margin:0}h2{font-size:19px;margin:18px 0 4px}h3{font-size:16px;margin:22px 0 8px;
 border-bottom:1px solid var(--line);padding-bottom:4px}h4{font-size:14px;margin:14px 0 4px}
h5{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:12px 0 4px}
header{border-bottom:2px solid var(--fg);padding-bottom:6px}
.meta,.note{color:var(--muted);font-size:12.5px;margin:2px 0}
.error{color:#b71c1c;background:#fdecea;border-left:3px solid #c62828;padding:6px 10px;margin:6px 0;
 white-space:pre-wrap;overflow-wrap:anywhere}
.ok{color:#2e7d32}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:0 8px;font-size:12px;line-height:18px;
 font-weight:600;white-space:nowrap;print-color-adjust:exact;-webkit-print-color-adjust:exact}
.sim{border:1px solid var(--muted);border-radius:10px;padding:0 6px;font-size:12px;color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px;min-width:120px;background:var(--soft)}
.card .k{font-size:12px;color:var(--muted)}.card .v{font-size:15px;font-weight:600}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:3px 10px;text-align:left;vertical-align:top}
th{background:var(--soft)}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td .earlier{color:var(--muted);font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px;color:var(--muted);margin-bottom:4px}
.legend i{display:inline-block;width:12px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px;
 print-color-adjust:exact;-webkit-print-color-adjust:exact}
svg{font-family:inherit;print-color-adjust:exact;-webkit-print-color-adjust:exact}
svg .tick{font-size:11px;fill:var(--muted)}
svg.gantt .tick{text-anchor:middle}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .lane-label{font-size:12px;text-anchor:end;font-weight:600}
svg .edge{fill:none;stroke:#8c959f;stroke-width:1.5}
svg .node-name{font-size:12px;font-weight:600;fill:var(--fg)}svg .node-status{font-size:11px}
svg .bar{fill:#5c7cfa}svg .bar-label{font-size:12px;text-anchor:end;fill:var(--fg)}
svg .bar-value{font-size:12px;fill:var(--muted)}svg .limit{stroke:#c62828;stroke-width:1.5;stroke-dasharray:4 3}
.scroll{overflow-x:auto}
.budget{display:flex;align-items:center;gap:8px}
details{border:1px solid var(--line);border-radius:6px;margin:6px 0;background:var(--bg)}
summary{cursor:pointer;padding:6px 10px;list-style-position:inside}
details[open] summary{border-bottom:1px solid var(--line);background:var(--soft)}
.detail{padding:4px 12px 10px}
pre{background:var(--soft);border:1px solid var(--line);border-radius:4px;padding:8px;margin:0;
 white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 max-height:420px;overflow:auto}
a{color:#0969da}
td.case{white-space:nowrap}
.answer .description{font-size:15px;margin:8px 0}.answer table th{width:1%;white-space:nowrap}
article.run{margin-bottom:28px}
@media print{
 body{max-width:none;padding:0;font-size:11px}
 section{break-inside:avoid-page}
 details{break-inside:avoid}
 details::details-content{content-visibility:visible;display:block}
 pre{max-height:none;overflow:visible}
 a{color:inherit;text-decoration:none}
 article.run+article.run{break-before:page}
}
"""
