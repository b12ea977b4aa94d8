"""The viewer's HTTP server: bound to 127.0.0.1 only, read-only, confined to one folder.

Routes: ``/`` (the page), ``/static/NAME`` (its script and style, from the package),
``/api/scenes``, ``/api/tile/SCENE/LAYER/Z/X/Y.png``, ``/api/pixel/SCENE?col=&row=`` and
``/files/PATH`` (a file of the prediction folder: a path that resolves outside it is refused
with 403, whatever ``..``, encoded or symlinked, it uses). A request whose Host header is not
this server's own address is refused (a page elsewhere cannot reach it by DNS rebinding).
The last requests are recorded in ``server.requests`` as (path, status), which the tests read.
"""

from __future__ import annotations

import errno
import json
import mimetypes
import re
import shutil
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from rsseg.errors import RsSegError
from rsseg.viewer.scenes import find_scenes
from rsseg.viewer.tiles import pixel, tile

HOST = "127.0.0.1"
STATIC = ("index.html", "viewer.js", "viewer.css")
_TILE = re.compile(r"^/api/tile/([^/]+)/(image|classes|confidence)/(\d+)/(-?\d+)/(-?\d+)\.png$")
_PIXEL = re.compile(r"^/api/pixel/([^/]+)$")


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path, port: int, images: list[Path]) -> None:
        self.folder = Path(folder).resolve()
        self.scenes = find_scenes(self.folder, images)
        self.requests: deque[tuple[str, int]] = deque(maxlen=10_000)
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RsSegError(f"port {port} is already in use on {HOST}: choose another with --port "
                                 f"(0 picks a free one)") from None
            raise RsSegError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # recorded in server.requests instead of stderr

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.server.requests.append((self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json({"error": message}, status.value)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"{HOST}:{port}", f"localhost:{port}"):
            return self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        parts = urlsplit(self.path)
        route = unquote(parts.path)
        try:
            if route in ("/", "/index.html"):
                return self._static("index.html")
            if route.startswith("/static/"):
                return self._static(route.removeprefix("/static/"))
            if route == "/api/scenes":
                return self._json([s.describe() for s in self.server.scenes.values()])
            if m := _TILE.match(route):
                scene = self._scene(m.group(1))
                if scene is None:
                    return None
                z, x, y = (int(v) for v in m.group(3, 4, 5))
                return self._send(200, tile(scene, m.group(2), z, x, y), "image/png")
            if m := _PIXEL.match(route):
                scene = self._scene(m.group(1))
                if scene is None:
                    return None
                query = parse_qs(parts.query)
                return self._json(pixel(scene, int(query["col"][0]), int(query["row"][0])))
            if route.startswith("/files/"):
                return self._file(route.removeprefix("/files/"))
            return self._error(HTTPStatus.NOT_FOUND, f"no such page: {route}")
        except RsSegError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (KeyError, ValueError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"bad request {route}: {exc}")

    def _scene(self, name: str):
        scene = self.server.scenes.get(name)
        if scene is None:
            self._error(HTTPStatus.NOT_FOUND, f"no scene '{name}'")
        return scene

    def _static(self, name: str) -> None:
        if name not in STATIC:
            return self._error(HTTPStatus.NOT_FOUND, f"no such file: {name}")
        body = resources.files("rsseg.viewer").joinpath("static", name).read_bytes()
        return self._send(200, body, mimetypes.guess_type(name)[0] or "application/octet-stream")

    def _file(self, relative: str) -> None:
        folder = self.server.folder
        target = (folder / relative).resolve()
        if not target.is_relative_to(folder):
            return self._error(HTTPStatus.FORBIDDEN, "outside the prediction folder")
        if not target.is_file():
            return self._error(HTTPStatus.NOT_FOUND, f"no such file: {relative}")
        self.server.requests.append((self.path, 200))  # streamed: a large raster is not read whole
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(target.stat().st_size))
        self.end_headers()
        with open(target, "rb") as fh:
            shutil.copyfileobj(fh, self.wfile, 1 << 20)
        return None


def start_server(folder: Path, port: int = 0, images: list[Path] = ()) -> tuple[ViewerServer, threading.Thread]:
    """Serve ``folder`` in a background thread (``port`` 0: any free port); stop with ``shutdown()``."""
    server = ViewerServer(folder, port, list(images))
    thread = threading.Thread(target=server.serve_forever, name="rsseg-viewer", daemon=True)
    thread.start()
    return server, thread


def serve(folder: Path, port: int = 8765, images: list[Path] = (), on_ready=None) -> None:
    """Serve ``folder`` until interrupted (Ctrl-C)."""
    server = ViewerServer(folder, port, list(images))
    if on_ready is not None:
        on_ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()
