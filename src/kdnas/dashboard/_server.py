"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer``, a JSON API over
a ``StoreView`` and the page's own assets, nothing else.

The URL never names a file: assets are a fixed table (the page, its script, the plotting
library), so no request can reach a file outside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from kdnas.dashboard._queries import GRID_COLUMNS, GridQuery, StoreView, _json_ready

__all__ = ["DashboardServer", "PlottingLibraryMissing", "page_asset", "plotly_script"]

logger = logging.getLogger(__name__)

#: Served with every answer: scripts only from the page's own origin (no inline script, so
#: injected markup cannot run even if some name escaped), nothing framed, no sniffing.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: The JSON answers are never kept (the store changes under them). The page's own files are
#: kept and checked again on each load (ETag): a page opened again gets plotly.js from the
#: browser's cache, with the code the browser compiled from it, instead of parsing 5 MB anew.
_NOT_KEPT = {"Cache-Control": "no-store"}
_KEPT_IF_UNCHANGED = {"Cache-Control": "no-cache"}


class PlottingLibraryMissing(RuntimeError):
    """plotly (the package that ships plotly.js) is not installed."""


def plotly_script() -> bytes:
    """plotly.min.js as the installed ``plotly`` package ships it (no network).

    Raises:
        PlottingLibraryMissing: plotly is not installed (the message says how to install it).
    """
    try:
        package = resources.files("plotly")
    except ModuleNotFoundError:
        raise PlottingLibraryMissing(
            "the dashboard draws its charts with plotly.js, which the plotly package ships; "
            "install it with: pip install 'kdnas[dashboard]'"
        ) from None
    script = package / "package_data" / "plotly.min.js"
    if not script.is_file():
        raise PlottingLibraryMissing(
            f"the installed plotly package lacks {script}; reinstall it with: "
            "pip install --force-reinstall 'kdnas[dashboard]'"
        )
    return script.read_bytes()


def page_asset(name: str) -> bytes:
    """One of the page's own files (``index.html``, ``dashboard.js``)."""
    return (resources.files("kdnas.dashboard") / "assets" / name).read_bytes()


class DashboardServer(ThreadingHTTPServer):
    """Serves the dashboard of one store.

    Args:
        view: the store, opened read-only.
        host: the address to bind (127.0.0.1: this machine only).
        port: the port (0: any free one; read ``server_address`` after).
    """

    daemon_threads = True

    def __init__(self, view: StoreView, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.view = view
        self.assets: dict[str, tuple[bytes, str]] = {
            "/": (page_asset("index.html"), "text/html; charset=utf-8"),
            "/assets/dashboard.js": (page_asset("dashboard.js"), "text/javascript"),
            "/assets/plotly.min.js": (plotly_script(), "text/javascript"),
        }
        self.asset_tags = {
            path: '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            for path, (body, _) in self.assets.items()
        }
        super().__init__((host, port), _Handler)

    def warm_up(self) -> threading.Thread:
        """Compute the first view's data in the background, now that the server listens:
        a page opened at once finds them ready (or waits for this one computation) while
        the browser is still loading plotly.js."""

        def compute() -> None:
            try:
                self.view.first_view()
            except Exception as error:  # the page's own request reports what went wrong
                logger.debug("warming up the first view failed: %s", error)
            finally:
                self.view.close()  # this thread's connection

        thread = threading.Thread(target=compute, name="dashboard-warm-up", daemon=True)
        thread.start()
        return thread

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def _grid_query(parameters: dict[str, list[str]]) -> GridQuery:
    def one(name: str, default: str) -> str:
        return parameters.get(name, [default])[0]

    try:
        page, size = int(one("page", "0")), int(one("page_size", "50"))
    except ValueError:
        raise ValueError("page and page_size must be integers") from None
    filters = {
        name[2:]: values[0]
        for name, values in parameters.items()
        if name.startswith("f.") and name[2:] in GRID_COLUMNS
    }
    unknown = [n for n in parameters if n.startswith("f.") and n[2:] not in GRID_COLUMNS]
    if unknown:
        raise ValueError(f"unknown filter {unknown[0][2:]!r}; valid: {', '.join(GRID_COLUMNS)}")
    return GridQuery(
        page=page,
        page_size=size,
        sort=one("sort", "id"),
        descending=one("desc", "1") != "0",
        filters=filters,
    )


def _integer(parameters: dict[str, list[str]], name: str) -> int:
    try:
        return int(parameters.get(name, ["0"])[0])
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def _upto(parameters: dict[str, list[str]]) -> int | None:
    return _integer(parameters, "upto") if "upto" in parameters else None


_API: dict[str, Callable[[StoreView, dict[str, list[str]]], Any]] = {
    "/api/store": lambda view, _: {"store": str(view.path), "latest": view.latest_id()},
    "/api/first": lambda view, _: view.first_view(),
    "/api/runs": lambda view, _: view.runs(),
    "/api/incumbent": lambda view, p: view.incumbent(_upto(p)),
    "/api/fidelities": lambda view, _: view.fidelities(),
    "/api/evaluations": lambda view, p: view.evaluations(_grid_query(p)),
    "/api/evaluation": lambda view, p: view.evaluation(_integer(p, "id")),
    "/api/workers": lambda view, p: view.workers(_upto(p)),
    "/api/updates": lambda view, p: view.updates(_integer(p, "since")),
}


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "kdnas-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in self.server.assets:
            body, kind = self.server.assets[url.path]
            tag = self.server.asset_tags[url.path]
            status = (
                HTTPStatus.NOT_MODIFIED
                if self.headers.get("If-None-Match") == tag
                else HTTPStatus.OK
            )
            self._send(status, body, kind, {"ETag": tag, **_KEPT_IF_UNCHANGED})
            return
        answer = _API.get(url.path)
        if answer is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "no such page"})
            return
        parameters = urllib.parse.parse_qs(url.query)
        try:
            payload = answer(self.server.view, parameters)
        except ValueError as error:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        if payload is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "no such evaluation"})
            return
        self._send_json(HTTPStatus.OK, payload)

    def _send_json(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(_json_ready(payload), allow_nan=False).encode()
        self._send(status, body, "application/json", _NOT_KEPT)

    def _send(self, status: HTTPStatus, body: bytes, kind: str, caching: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if status != HTTPStatus.NOT_MODIFIED:
            self.send_header("Content-Length", str(len(body)))
        for name, value in {**_SECURITY_HEADERS, **caching}.items():
            self.send_header(name, value)
        self.end_headers()
        if status != HTTPStatus.NOT_MODIFIED:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def write_html_report(view: StoreView, file: Path) -> Path:
    """One self-contained HTML file with every view of the store (plotly.js inlined).

    The data travel as JSON inside a ``<script type="application/json">`` element, with
    every ``<`` written ``\\u003c`` so no name can close that element.
    """
    page = page_asset("index.html").decode()
    data = json.dumps(_json_ready(view.snapshot()), allow_nan=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    scripts = {
        '<link id="plotly-js" rel="preload" href="assets/plotly.min.js" as="script">': "<script>"
        + _inline(plotly_script().decode())
        + "</script>",
        '<script src="assets/dashboard.js"></script>': '<script id="kdnas-snapshot" '
        'type="application/json">'
        + data
        + "</script>\n<script>"
        + _inline(page_asset("dashboard.js").decode())
        + "</script>",
    }
    for tag, inline in scripts.items():
        if tag not in page:
            raise AssertionError(f"index.html lacks {tag}")
        page = page.replace(tag, inline)
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(page, encoding="utf-8")
    return file


def _inline(script: str) -> str:
    """A script safe inside ``<script>...</script>``: a literal ``</script`` would end it."""
    return script.replace("</script", "<\\/script")
