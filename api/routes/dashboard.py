"""The dashboard: one page and its script, style and icon, shipped in the package (no CDN). They
hold no data: the page asks the API for everything, with the key the user signs in with."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"

router = APIRouter(include_in_schema=False)
assets = StaticFiles(directory=ASSETS)


@router.get("/")
def page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The dashboard's icon, where a browser asks for it whatever the page names (a JSON answer
    opened in a tab): without it each such visit logs a 404 in the browser's console."""
    return FileResponse(ASSETS / "favicon.svg", media_type="image/svg+xml")
