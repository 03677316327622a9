"""A loopback HTTP server for download tests, published raw files in their real formats, and a network guard.

The server is a thread of the test process bound to 127.0.0.1 on a free port,
serving bytes by path; per path it can cut the connection after some bytes,
ignore Range requests or answer with an error status, and it logs every
request (path, Range header), or stall before the body. :func:`published` writes a small raw set with
``pipelines/raw_writers.py`` and packs it as the real publication is packed
(the .mat files of SmallNORB gzipped, the Cars3D files in a tarball under
data/cars/); :func:`manifest_for` is the built-in manifest of a dataset
pointed at the server, with sizes and hashes of those files (or none).
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import re
import socket
import tarfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipelines import raw_writers
from pipelines.download import Manifest
from pipelines.registry import get_spec

LOOPBACK = ("127.0.0.1", "::1", "localhost")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                   "no_proxy", "NO_PROXY")


class Server:
    """Serve ``files`` (path -> bytes) on 127.0.0.1; see the module docstring for the knobs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True  # honour "Range: bytes=N-"
        self.cuts: dict[str, list[int]] = {}  # path -> [byte at which to close, requests left to cut]
        self.status: dict[str, int] = {}  # path -> status to answer instead of the file
        self.stall: dict[str, float] = {}  # path -> seconds to wait after the headers before sending the body
        self.requests: list[tuple[str, str | None]] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # seconds per socket operation on the server side too

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = urllib.parse.unquote(self.path.lstrip("/"))
                asked = self.headers.get("Range")
                state.requests.append((path, asked))
                if path in state.status:
                    self.send_error(state.status[path])
                    return
                data = state.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", asked or "")
                if match and state.ranges:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                if path in state.stall:
                    time.sleep(state.stall[path])
                cut = state.cuts.get(path)
                if cut is not None and cut[1] > 0:
                    cut[1] -= 1
                    body = body[: max(0, cut[0] - start)]
                self.wfile.write(body)
                self.wfile.flush()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def cut(self, path: str, at: int, times: int = 1) -> None:
        """Close the connection after byte ``at`` of ``path`` for the next ``times`` requests."""
        self.cuts[path] = [at, times]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def guard_network(monkeypatch) -> None:
    """No proxy, and any connection to an address other than loopback fails the test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to contact {address!r}: only loopback is allowed")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def published(name: str, workdir: Path) -> dict[str, bytes]:
    """File name -> bytes of a small raw set of ``name`` packed as it is published."""
    raw = workdir / f"raw-{name}"
    raw_writers.WRITERS[name](raw, raw_writers.DEFAULT_SIZES[name], seed=3)
    if name in ("shapes2d", "shapes3d"):
        (item,) = get_spec(name).download.files
        return {item.name: (raw / item.relpath).read_bytes()}
    if name == "small_norb":
        return {item.name: gzip.compress((raw / item.relpath).read_bytes(), mtime=0)
                for item in get_spec(name).download.files}
    if name == "cars3d":
        (item,) = get_spec(name).download.files
        cars = sorted((raw / item.relpath).iterdir())
        return {item.name: tarball({**{f"data/cars/{p.name}": p.read_bytes() for p in cars},
                                    "data/cars/list.txt": "\n".join(p.stem for p in cars).encode(),
                                    "data/shapes48.mat": b"not needed"})}
    raise ValueError(name)


def tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz of regular files (name -> bytes) and symbolic links (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for member, target in (links or {}).items():
            info = tarfile.TarInfo(member)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def manifest_for(name: str, files: dict[str, bytes], base_url: str, hashes: bool = True) -> Manifest:
    """The built-in manifest of ``name`` with URLs on ``base_url`` and the sizes/hashes of ``files`` (or none)."""
    items = []
    for item in get_spec(name).download.files:
        data = files[item.name]
        facts = dict(size=len(data), sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest()) \
            if hashes else dict(size=None, sha256=None, md5=None)
        count = raw_writers.DEFAULT_SIZES["cars3d"][2] if item.unpack == "untar" else None
        items.append(dataclasses.replace(item, url=f"{base_url}/{item.name}", count=count, **facts))
    return Manifest(dataset=name, files=tuple(items))
