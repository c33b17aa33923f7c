"""The console: the web page at `/console` and its own files under `/console/static`, served by
the service itself (same origin, no CDN) under a strict Content-Security-Policy.

One rule: the page holds no data of its own. It signs in with an API key kept in the browser's
sessionStorage and does everything through the public API with that key, so it can never see or
do more than the key may.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import Response, Router, get
from litestar.datastructures import State
from litestar.static_files import create_static_files_router

from app.settings import Settings

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
STATIC_DIR = CONSOLE_DIR / "static"
PUBLIC = {"public": True}


def tile_origin(tile_url: str) -> str | None:
    """The origin a Leaflet tile template loads from, as a CSP source (`{s}` subdomains become
    a wildcard); None without tiles."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """Scripts, styles, fonts and API calls from this origin only; images also from the tile
    host and `data:` (Leaflet-Geoman's toolbar icons are inline SVG in its stylesheet)."""
    images = " ".join(filter(None, ["'self'", "data:", tile_origin(settings.console_tile_url)]))
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'", f"img-src {images}",
        "connect-src 'self'", "font-src 'self'", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'none'",
    ])


def security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def render_page(settings: Settings) -> str:
    """index.html with the tile settings in its meta tags (the page reads them; no inline
    script is needed, nor allowed)."""
    page = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    return (page.replace("{{tile_url}}", html.escape(settings.console_tile_url, quote=True))
                .replace("{{tile_attribution}}",
                         html.escape(settings.console_tile_attribution, quote=True)))


@get("/console", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
def console_page(state: State) -> Response[str]:
    """The console's single page."""
    settings: Settings = state.settings
    headers = security_headers(settings) | {"Cache-Control": "no-store"}
    return Response(state.console_page, media_type="text/html; charset=utf-8", headers=headers)


def console_routes(settings: Settings) -> list[Any]:
    """The page and its files, both under the same security headers."""
    headers = security_headers(settings)

    async def add_headers(response: Any) -> Any:
        response.headers.update(headers)
        return response

    files: Router = create_static_files_router(
        path="/console/static", directories=[STATIC_DIR], opt=PUBLIC, name="console",
        after_request=add_headers)
    return [console_page, files]
