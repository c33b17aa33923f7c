"""The console is served by the service itself: one page, its own files and the vendored
libraries, all under a strict Content-Security-Policy."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from app.console import STATIC_DIR, content_security_policy, tile_origin
from app.settings import Settings
from tests.console.conftest import Service

VENDOR = STATIC_DIR / "vendor"
LOCK = STATIC_DIR.parent / "vendor.sha256"


def test_the_page_comes_with_a_strict_policy_and_no_inline_script(service: Service) -> None:
    response = service.admin.get("/console")
    policy = dict(p.strip().split(" ", 1) for p in
                  response.headers["content-security-policy"].split(";"))
    scripts = re.findall(r"<script\b[^>]*>", response.text)
    assert (response.status_code, policy["script-src"], policy["connect-src"],
            policy["img-src"], policy["default-src"], response.headers["x-frame-options"],
            response.headers["cache-control"]) == (
        200, "'self'", "'self'", "'self' data:", "'none'", "DENY", "no-store")
    assert scripts and all(' src="/console/static/' in s for s in scripts), scripts
    assert "style=" not in response.text and "<style" not in response.text


def test_the_libraries_are_served_from_here_with_the_same_policy(service: Service) -> None:
    response = service.admin.get("/console/static/vendor/leaflet/leaflet.js")
    assert (response.status_code, response.headers["content-type"].split(";")[0],
            response.headers["content-security-policy"].startswith("default-src 'none'"),
            response.headers["x-content-type-options"]) == (
        200, "text/javascript", True, "nosniff")
    assert service.admin.get("/console/static/../app/main.py").status_code == 404


def test_the_vendored_files_are_the_pinned_ones_with_their_licences() -> None:
    pinned = {}
    for line in LOCK.read_text().splitlines():
        digest, name = line.split("  ", 1)
        pinned[name.removeprefix("./")] = digest
    found = {str(p.relative_to(VENDOR)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(VENDOR.rglob("*")) if p.is_file()}
    versions = {p.parent.name: p.read_text().strip() for p in VENDOR.glob("*/VERSION")}
    assert found == pinned
    assert versions == {"leaflet": "leaflet@1.9.4",
                        "leaflet-geoman": "@geoman-io/leaflet-geoman-free@2.20.2",
                        "h3-js": "h3-js@4.5.0", "uplot": "uplot@1.6.32"}
    assert all((VENDOR / name / "LICENSE").is_file() for name in versions)


@pytest.mark.parametrize(("url", "origin"), [
    ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
    ("https://{s}.tiles.example.net/base/{z}/{x}/{y}.png", "https://*.tiles.example.net"),
    ("http://127.0.0.1:8080/tiles/{z}/{x}/{y}.png", "http://127.0.0.1:8080"),
    ("", None),
])
def test_images_may_come_from_the_configured_tile_host_only(url: str, origin: str | None) -> None:
    settings = Settings(database_url="postgresql://unused", console_tile_url=url)
    images = next(p for p in content_security_policy(settings).split("; ")
                  if p.startswith("img-src"))
    assert (tile_origin(url), images) == (origin, " ".join(
        ["img-src 'self' data:", *([origin] if origin else [])]))


def test_a_tile_url_that_is_not_a_template_is_refused() -> None:
    with pytest.raises(ValueError, match="CONSOLE_TILE_URL"):
        Settings(database_url="postgresql://unused", console_tile_url="ftp://x/{z}/{x}/{y}")
    with pytest.raises(ValueError, match="CONSOLE_TILE_URL"):
        Settings(database_url="postgresql://unused", console_tile_url="https://x/tile.png")


def test_the_default_tiles_are_openstreetmap_with_their_attribution() -> None:
    settings = Settings(database_url="postgresql://unused")
    assert (settings.console_tile_url.startswith("https://tile.openstreetmap.org/"),
            "OpenStreetMap" in settings.console_tile_attribution) == (True, True)


def test_nothing_but_the_page_files_is_under_the_static_folder() -> None:
    assert sorted(p.name for p in Path(STATIC_DIR).iterdir()) == ["console.css", "js", "vendor"]
