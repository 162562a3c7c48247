"""A tiny stand-in for the Hugging Face Hub's file API, served on localhost.

It answers the requests ``huggingface_hub.hf_hub_download`` makes (HEAD then
GET on ``/{repo}/resolve/{revision}/{file}``) with the headers the real Hub
sends, including its ``X-Error-Code`` values, so the real client code path is
exercised end to end without the internet.
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
    """Start with ``with FakeHub() as hub:``; ``hub.url`` is the endpoint, ``hub.requests`` the log."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
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

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                parts = unquote(self.path.split("?")[0]).strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, "RepoNotFound")
                repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(401, "RepoNotFound")
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
