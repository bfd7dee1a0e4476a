"""``--html FILE``: one self-contained page for people (issue 10 §7): the level first, the quote's
checks, the PCR table (replayed / quoted / expected) and the per-component diff with versions.

No external resources (no scripts, fonts, images or style sheets from anywhere): the page is
mailed, archived and opened offline. Compact enough that a passing device's report fits a laptop
screen (1280x800) without scrolling (tests/unit/host/test_verify_html.py checks it in chromium).
"""

from __future__ import annotations

import html
from typing import Any

GOOD = ("ok", "known")  # "known": an unknown image's component whose digest some image has

COLORS = {"verified": "#1a7f37", "outdated": "#9a6700", "unknown": "#bc4c00",
          "failed": "#cf222e", "unattested": "#57606a"}

CSS = """
body{font:13px/1.35 system-ui,-apple-system,'Segoe UI',sans-serif;margin:12px 16px;color:#1f2328}
h1{margin:0 0 4px;font-size:20px} .lvl{color:#fff;padding:2px 10px;border-radius:4px}
.why{margin:2px 0 10px;font-size:14px} .meta{color:#57606a;margin-bottom:8px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:14px}
h2{font-size:14px;margin:6px 0 4px} table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa} code{font:12px ui-monospace,monospace}
.ok{color:#1a7f37} .bad{color:#cf222e;font-weight:600} .na{color:#8c959f}
td.bad code{color:#cf222e}
"""


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text))


def _hex(value: str | None, width: int = 16) -> str:
    if value is None:
        return '<span class="na">&ndash;</span>'
    short = value if len(value) <= width else value[:width] + "&hellip;"
    return '<code title="%s">%s</code>' % (_e(value), short)


def render(judgement: dict[str, Any], device: str | None = None, nonce: str | None = None) -> str:
    """The page for `judgement` (appraise.Judgement.to_dict())."""
    level = str(judgement["level"])
    color = COLORS.get(level, "#57606a")
    differs = judgement.get("differs") or []
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           "<title>Attestation %s: %s</title>" % (_e(device or "device"), _e(level)),
           "<style>%s</style></head><body>" % CSS]
    out.append('<h1>Attestation of %s: <span class="lvl" id="level" style="background:%s">%s'
               "</span></h1>" % (_e(device or "a device"), color, _e(level.upper())))
    out.append('<div class="why" id="why">%s</div>' % _e(judgement.get("why")))
    meta = ["image %s" % _e(judgement.get("image_version") or "unknown"),
            "board %s" % _e(judgement.get("board") or "unknown")]
    if nonce:
        meta.append("nonce <code>%s</code>" % _e(nonce))
    if differs:
        meta.append('differs: <span class="bad" id="differs">%s</span>'
                    % _e(", ".join(differs)))
    out.append('<div class="meta">%s</div>' % " &middot; ".join(meta))
    out.append('<div class="grid"><div>')
    out.append("<h2>Checks</h2><table><tr><th></th><th>check</th><th>detail</th></tr>")
    for c in judgement.get("checks", []):
        cls, mark = ("ok", "&#10003;") if c["ok"] else ("bad", "&#10007;")
        out.append('<tr><td class="%s">%s</td><td>%s</td><td>%s</td></tr>'
                   % (cls, mark, _e(c["name"]), _e(c["detail"])))
    out.append("</table>")
    comps = judgement.get("components") or []
    out.append("<h2>Components</h2>")
    if comps:
        out.append("<table><tr><th>component</th><th>status</th><th>version</th>"
                   "<th>reference</th><th>sha256</th><th>reference sha256</th></tr>")
        for c in comps:
            bad = c["status"] not in GOOD
            out.append('<tr class="component"><td class="%s">%s</td><td class="%s">%s</td>'
                       "<td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                           "bad" if bad else "", _e(c["name"]), "bad" if bad else "ok",
                           _e(c["status"]), _e(c.get("version") or "-"),
                           _e(c.get("expected_version") or "-"), _hex(c.get("sha256"), 12),
                           _hex(c.get("expected_sha256"), 12)))
        out.append("</table>")
    else:
        out.append('<div class="na">not compared (the evidence did not get that far)</div>')
    out.append("</div><div>")
    out.append("<h2>PCRs (sha256)</h2>")
    pcrs = judgement.get("pcrs") or []
    if pcrs:
        out.append("<table><tr><th>PCR</th><th>replayed (log)</th><th>quoted (TPM)</th>"
                   "<th>expected (vendor)</th></tr>")
        for r in pcrs:
            replay_bad = r["replayed"] != r["quoted"]
            ref_bad = r["expected"] is not None and r["expected"] != r["quoted"]
            out.append('<tr><td class="%s">%s</td><td class="%s">%s</td><td>%s</td>'
                       '<td class="%s">%s</td></tr>' % (
                           "bad" if replay_bad or ref_bad else "", r["pcr"],
                           "bad" if replay_bad else "", _hex(r["replayed"]), _hex(r["quoted"]),
                           "bad" if ref_bad else "", _hex(r["expected"])))
        out.append("</table>")
        out.append('<div class="na">&ndash; expected: the image does not predict this PCR '
                   "(platform firmware); it is still replayed against the quote.</div>")
    else:
        out.append('<div class="na">no PCR values that can be trusted</div>')
    out.append("</div></div></body></html>")
    return "\n".join(out) + "\n"
