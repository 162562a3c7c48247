"""A tiny stand-in for the Hugging Face Hub's file API, served on localhost.

It answers the requests ``huggingface_hub.hf_hub_download`` makes (HEAD then
GET on ``/{repo}/resolve/{revision}/{file}``) with the headers the real Hub
sends, including its ``X-Error-Code`` values, so the real client code path is
exercised end to end without the internet.

It also serves plain files at any other path (``hub.files``), as the S3 bucket
of the original ONet/ConvONet checkpoints does: with an ETag, byte ranges
(``Range``/``If-Range``, 206), and on request a transfer cut off midway
(``hub.cut_after``). ``FakeHub(plain_404=True)`` behaves like a mirror that
answers a missing repo with a bare 404 instead of the Hub's error headers.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass
class FakeRepo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> sha
    gated: bool = False

    def add_commit(self, files: dict[str, bytes], ref: str = "main") -> str:
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.refs[ref] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.url`` is the endpoint, ``hub.requests`` the log.

    ``hub.files[path] = data`` serves ``data`` at ``path`` (e.g. ``/avg-projects/.../x.pt``);
    ``hub.cut_after[path] = n`` makes the next GET of it announce the whole length but
    send only ``n`` bytes; ``hub.ranges`` logs the ``Range`` header of each file GET.
    """

    def __init__(self, *, plain_404: bool = False) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.ranges: list[str | None] = []
        self.plain_404 = plain_404
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _plain(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve_file(self, path: str, body: bool) -> None:
                data = hub.files[path]
                etag = f'"{hashlib.md5(data).hexdigest()}"'
                start = 0
                wanted = self.headers.get("Range")
                if body:
                    hub.ranges.append(wanted)
                if wanted and self.headers.get("If-Range") in (None, etag):
                    start = int(wanted.split("=", 1)[1].split("-", 1)[0])
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
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not body:
                    return
                cut = hub.cut_after.pop(path, None)
                self.wfile.write(data[start:] if cut is None else data[start : start + cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                path = unquote(self.path.split("?")[0])
                if path in hub.files:
                    return self._serve_file(path, body)
                parts = path.strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._plain(404) if hub.plain_404 else self._error(404, "RepoNotFound")
                repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._plain(404) if hub.plain_404 else self._error(401, "RepoNotFound")
                if repo.gated:
                    return self._error(403, "GatedRepo")
                sha = repo.resolve(revision)
                if sha is None:
                    return self._error(404, "RevisionNotFound")
                data = repo.commits[sha].get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound")
                self.send_response(200)
                self.send_header("X-Repo-Commit", sha)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def repo(self, repo_id: str) -> FakeRepo:
        return self.repos.setdefault(repo_id, FakeRepo())
