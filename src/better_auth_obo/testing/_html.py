"""The emulator's HTML pages: one frame, so a browser always says whose page it is.

Every page carries the banner "Entra ID emulator (local, for testing)", a viewport
meta (phones), and a small inline style sheet; no script, nothing fetched.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

__all__ = ["BANNER", "html_page"]

BANNER = "Entra ID emulator (local, for testing)"

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#eef1f5;
color:#1b1b1b}
.banner{background:#5c2d91;color:#fff;padding:.5rem 1rem;font-size:.85rem;letter-spacing:.02em}
.banner b{font-weight:600}
main{max-width:28rem;margin:2rem auto;padding:1.75rem;background:#fff;border-radius:6px;
box-shadow:0 2px 8px rgba(0,0,0,.12)}
h1{font-size:1.35rem;margin:0 0 1rem}
p{line-height:1.45}
ul{list-style:none;padding:0;margin:0 0 1rem}
li{margin:.5rem 0}
li button{width:100%;text-align:left;padding:.75rem .9rem;border:1px solid #c8c8c8;
background:#fff;border-radius:4px;font-size:1rem;cursor:pointer}
li button:hover,li button:focus{border-color:#0067b8;background:#f3f8fd}
button{font:inherit}
.primary{background:#0067b8;color:#fff;border:0;border-radius:4px;padding:.6rem 1.2rem;
cursor:pointer}
.secondary{background:#fff;color:#1b1b1b;border:1px solid #8a8a8a;border-radius:4px;
padding:.55rem 1.1rem;cursor:pointer}
.note{background:#fff8e1;border-left:4px solid #f0a30a;padding:.6rem .8rem;font-size:.92rem}
.info{background:#eaf3fc;border-left:4px solid #0067b8;padding:.6rem .8rem;font-size:.92rem}
.muted{color:#5f5f5f;font-size:.85rem}
.row{display:flex;gap:.6rem;flex-wrap:wrap;align-items:center}
form{margin:0}
code{background:#f3f3f3;padding:.05rem .25rem;border-radius:3px;font-size:.85rem;
word-break:break-all}
"""


def html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A whole emulator page: banner, a card with ``body`` (already escaped HTML)."""
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · {BANNER}</title><style>{_STYLE}</style></head><body>"
        f"<div class='banner' id='emulator-banner'><b>{BANNER}</b>: not Microsoft; "
        "nothing leaves this machine</div>"
        f"<main>{body}</main></body></html>"
    )
    return HTMLResponse(document, status, headers={"Cache-Control": "no-store"})
