"""The page: one HTML document with its style and script inlined, built once at start-up.

The assets stay separate files in the package (static/index.html, app.css, app.js) and are
inlined here, so the page is ONE public path behind the ingress (`/`) and needs no CDN and no
second request. The Content-Security-Policy allows exactly these inline blocks (by their
SHA-256), API calls to the same origin, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib import resources

STYLE_SLOT = "/*{{style}}*/"
SCRIPT_SLOT = "/*{{script}}*/"


@dataclass(frozen=True)
class Page:
    html: bytes
    etag: str
    content_security_policy: str


def _asset(name: str) -> str:
    return resources.files("services.web").joinpath("static", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def build_page(
    template_name: str = "index.html", style_name: str = "app.css", script_name: str = "app.js", extra_style: str = ""
) -> Page:
    """A page of the web screen: the board (the defaults), or another one from its own assets
    (`extra_style`: a second style sheet inlined after the first, e.g. app.css + its own)."""
    template, style, script = _asset(template_name), _asset(style_name), _asset(script_name)
    if extra_style:
        style += "\n" + _asset(extra_style)
    if template.count(STYLE_SLOT) != 1 or template.count(SCRIPT_SLOT) != 1:
        raise RuntimeError(f"static/{template_name} must hold one style slot and one script slot")
    if "</script" in script.lower() or "</style" in style.lower():
        raise RuntimeError("an inlined asset must not close its own element")
    html = template.replace(STYLE_SLOT, style).replace(SCRIPT_SLOT, script)
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(style)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )
    body = html.encode("utf-8")
    return Page(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', csp)
