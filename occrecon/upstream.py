"""The original ONet/ConvONet checkpoints: download, verify, convert, cache.

Every upstream model in the registry has a Hub repo (``occrecon/<name>``) and
the URL of the ``.pt`` file it converts from. :func:`locate_registered` tries
the Hub first; when the Hub answers that the repo does not exist (or cannot be
reached), the original file is downloaded instead, its SHA-256 checked against
the prefix its name carries (``onet_img2mesh_3-f786b04a.pt``), converted with
the safe loader of :mod:`occrecon.convert` (``torch.load(weights_only=True)``,
every key and shape checked, nothing unpickled that could run code), and the
model folder stored in the Hugging Face cache, laid out as the cache of a repo
``occrecon-upstream/<name>`` whose revision is the file's SHA-256 (so that
``hf cache scan`` lists it and ``hf cache delete`` can remove it)::

    <HF_HUB_CACHE>/models--occrecon-upstream--<name>/
        refs/main                          the SHA-256: written last, the mark of a whole model
        snapshots/<sha256>/                config.json, model.safetensors, README.md

Nothing half-done is ever taken for a model: the file is downloaded to
``.incomplete/`` in that folder (a cut-off download resumes from there with an
HTTP range request), verified, converted into a temporary folder beside the
snapshots, renamed into ``snapshots/``, and only then is ``refs/main``
written. Later loads read the snapshot without any network request.

``OCCRECON_UPSTREAM_ENDPOINT`` (``scheme://host[:port][/prefix]``) replaces the
scheme and host of the original URLs, for mirrors and tests; the path is kept.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from occrecon._version import __version__
from occrecon.errors import ModelUnavailableError

if TYPE_CHECKING:
    from occrecon.registry import ModelEntry

ENDPOINT_ENV = "OCCRECON_UPSTREAM_ENDPOINT"
"""Environment variable replacing the scheme and host of the original checkpoint URLs."""

CACHE_ORG = "occrecon-upstream"
"""The converted originals are cached as the repos ``occrecon-upstream/<name>`` (which exist on no Hub)."""

REF_NAME = "main"
"""``refs/main`` names the snapshot of a whole conversion; it is written after everything else."""

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


class UpstreamDownloadError(ModelUnavailableError):
    """The original checkpoint could not be fetched, verified or converted; nothing was cached.

    ``unreachable`` is true when its host could not be reached at all (no connection).
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


# --------------------------------------------------------------------------- paths


def upstream_url(url: str) -> str:
    """``url`` with its scheme and host replaced by ``OCCRECON_UPSTREAM_ENDPOINT`` when that is set.

    Example:
        >>> upstream_url("https://s3.eu-central-1.amazonaws.com/avg-projects/x.pt")  # doctest: +SKIP
        'http://127.0.0.1:8000/avg-projects/x.pt'   # with OCCRECON_UPSTREAM_ENDPOINT=http://127.0.0.1:8000
    """
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if not endpoint:
        return url
    mirror = urlsplit(endpoint)
    if mirror.scheme not in ("http", "https") or not mirror.netloc:
        raise ModelUnavailableError(f"{ENDPOINT_ENV} must look like https://host[:port][/prefix], got {endpoint!r}")
    original = urlsplit(url)
    path = mirror.path.rstrip("/") + original.path
    return f"{mirror.scheme}://{mirror.netloc}{path}" + (f"?{original.query}" if original.query else "")


def cache_repo_id(name: str) -> str:
    """The cache's repo id for the converted original of ``name`` (``occrecon-upstream/<name>``)."""
    return f"{CACHE_ORG}/{name}"


def repo_folder(name: str) -> Path:
    """``<Hub cache>/models--occrecon-upstream--<name>``, honouring ``HF_HUB_CACHE`` and ``HF_HOME`` at call time."""
    from occrecon.hub import hub_cache_dir

    return hub_cache_dir() / f"models--{CACHE_ORG}--{name}"


def marker_path(name: str) -> Path:
    """``refs/main`` of the cached conversion of ``name``: it exists only once the model is whole."""
    return repo_folder(name) / "refs" / REF_NAME


def cache_record(name: str) -> dict[str, Any] | None:
    """Where a whole converted copy of ``name`` is and what it came from, or ``None``.

    Returns:
        ``{"path": snapshot folder, "sha256", "url", "original_url", "size_bytes", "downloaded"}``.
    """
    from occrecon.hub import MODEL_FILES  # config.json, model.safetensors (occrecon.loading would import torch)

    try:
        digest = marker_path(name).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not digest or "/" in digest or digest.startswith("."):
        return None
    folder = repo_folder(name) / "snapshots" / digest
    if not all((folder / file).is_file() for file in MODEL_FILES):
        return None
    try:
        source = json.loads((folder / MODEL_FILES[0]).read_text(encoding="utf-8")).get("source") or {}
    except (OSError, ValueError, AttributeError):
        source = {}
    record = {key: source.get(key) for key in ("url", "original_url", "size_bytes", "downloaded")}
    return {"path": folder, "sha256": digest, **record}


def cached_model(name: str) -> Path | None:
    """The folder of a whole, converted copy of ``name`` in the cache, or ``None``."""
    record = cache_record(name)
    return None if record is None else record["path"]


# --------------------------------------------------------------------------- resolution


def _offline_message(entry: "ModelEntry", reason: str) -> str:
    from occrecon.hub import fetch_hint

    return (
        f"model {entry.name}: {reason}; it comes from the Hub repo {entry.repo_id} or, where that does not exist, "
        f"from the original checkpoint {upstream_url(entry.url or '')}; {fetch_hint(entry.name, reachable_where='the network is reachable')}"
    )


def locate_registered(
    entry: "ModelEntry",
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> tuple[Path, str, str | None]:
    """Find (fetching if needed) the folder of a registered Hub model; see the module docstring.

    A converted copy already in the cache is returned without any network
    request, unless ``revision`` asks for a particular Hub revision (the
    original files have none, so an explicit revision never falls back).

    Returns:
        (folder, source, revision): source ``"hub"`` with the snapshot's commit,
        or ``"upstream"`` with ``"sha256:<hex>"`` of the original file.

    Raises:
        ModelUnavailableError: offline with nothing cached, or neither the Hub
            nor the original URL gave the model (one line, naming both).
    """
    from occrecon import hub

    explicit = revision is not None
    if entry.url and not explicit:
        record = cache_record(entry.name)
        if record is not None:
            return record["path"], "upstream", _record_revision(record)
    try:
        folder = hub.download_model(
            entry.repo_id, revision=revision or entry.revision, local_files_only=local_files_only, progress=progress, name=entry.name
        )
    except hub.HubRepoMissingError:
        if explicit or not entry.url:
            raise
        folder = _fallback(entry, progress, f"the Hub has no repo {entry.repo_id}")
        return folder, "upstream", _record_revision(cache_record(entry.name) or {})
    except hub.HubUnreachableError as exc:
        if explicit or not entry.url:
            raise
        if exc.offline or local_files_only or hub.hub_offline():
            reason = "not in the local cache and HF_HUB_OFFLINE is set" if hub.hub_offline() else "not in the local cache (local files only)"
            raise ModelUnavailableError(_offline_message(entry, reason)) from None
        # The Hub may be blocked where the original host is not: try the file itself.
        folder = _fallback(entry, progress, "the Hub cannot be reached")
        return folder, "upstream", _record_revision(cache_record(entry.name) or {})
    snapshot = folder.name if folder.parent.name == "snapshots" else None
    return folder, "hub", snapshot or revision or entry.revision


def _fallback(entry: "ModelEntry", progress: bool, why: str) -> Path:
    from occrecon.hub import fetch_hint, reachable

    url = upstream_url(entry.url or "")
    try:
        if cached_model(entry.name) is None and not reachable(url):  # no network at all: say so now, not after the client's retries
            raise UpstreamDownloadError(f"model {entry.name}: cannot reach {url} (no connection within 3 s)", unreachable=True)
        return fetch_upstream(entry, progress=progress, why=why)
    except UpstreamDownloadError as exc:
        if not exc.unreachable:  # the host answered: an HTTP error, or a file that was refused or cut off
            raise UpstreamDownloadError(f"{exc} (tried because {why})") from None
        raise UpstreamDownloadError(f"{exc}, and {why}; {fetch_hint(entry.name, reachable_where='the network is reachable')}", unreachable=True) from None


def _record_revision(record: dict[str, Any]) -> str | None:
    digest = record.get("sha256")
    return f"sha256:{digest}" if digest else None


# --------------------------------------------------------------------------- download


@dataclass
class _Partial:
    """A download in progress: the bytes so far and what identifies the remote file."""

    path: Path
    meta_path: Path

    def load_meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_meta(self, meta: dict[str, Any]) -> None:
        self.meta_path.write_text(json.dumps(meta), encoding="utf-8")

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def _human_bytes(size: float | None) -> str:
    if size is None:
        return "unknown size"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _say(message: str, enabled: bool) -> None:
    if enabled:
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(message, markup=False, style="dim")


def _open(url: str, start: int, validator: str | None) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"occrecon/{__version__}", "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
        if validator:
            headers["If-Range"] = validator  # a changed file comes back whole (200), not as a mismatched tail
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)  # noqa: S310 (http/https only, checked)


def _content_range_start(response: http.client.HTTPResponse) -> tuple[int | None, int | None]:
    """(first byte, total size) of a 206 answer's ``Content-Range: bytes a-b/total``."""
    value = response.headers.get("Content-Range", "")
    try:
        unit, spec = value.split(" ", 1)
        span, total = spec.split("/", 1)
        first = int(span.split("-", 1)[0])
        return (first if unit == "bytes" else None), (int(total) if total.strip() != "*" else None)
    except ValueError:
        return None, None


def _download(entry: "ModelEntry", url: str, partial: _Partial, *, progress: bool) -> int:
    """Fetch ``url`` into ``partial.path``, resuming what an earlier attempt left; returns the size.

    Raises:
        UpstreamDownloadError: HTTP error, no connection, or the transfer cut off
            (the bytes so far stay in ``.incomplete/`` for the next attempt to resume).
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise UpstreamDownloadError(f"model {entry.name}: {url} is not an http(s) URL")
    meta = partial.load_meta()
    start = partial.size()
    if start and meta.get("url") != url:
        partial.discard()  # bytes from another mirror: start again
        meta, start = {}, 0
    validator = meta.get("etag") or meta.get("last_modified")
    try:
        try:
            response = _open(url, start, validator)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not start:
                raise
            if meta.get("total") == start:
                return start  # every byte arrived before an earlier attempt was stopped
            partial.discard()  # the range no longer fits the file: start again
            meta, start, validator = {}, 0, None
            response = _open(url, 0, None)
    except urllib.error.HTTPError as exc:
        raise UpstreamDownloadError(f"model {entry.name}: downloading {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UpstreamDownloadError(f"model {entry.name}: cannot reach {url} ({_one_line(reason)})", unreachable=True) from None

    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206:
            first, total = _content_range_start(response)
            if first != start:
                response.close()
                partial.discard()
                raise UpstreamDownloadError(f"model {entry.name}: {url} answered a range request with the wrong bytes; run again to start afresh")
            mode = "ab"
        else:
            start, total, mode = 0, length, "wb"
        meta = {"url": url, "etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified"), "total": total}
        partial.path.parent.mkdir(parents=True, exist_ok=True)
        partial.save_meta(meta)
        done = start
        cut: BaseException | None = None
        bar = _progress_bar(url, total, done) if progress else None
        try:
            with open(partial.path, mode) as handle:
                while True:
                    try:
                        block = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, incomplete chunk
                        cut = exc
                        break
                    if not block:
                        break
                    try:
                        handle.write(block)
                    except OSError as exc:  # disk full, permissions: nothing worth resuming
                        handle.close()
                        partial.discard()
                        raise UpstreamDownloadError(f"model {entry.name}: writing the download of {url} failed ({_one_line(exc)})") from None
                    done += len(block)
                    if bar is not None:
                        bar[0].update(bar[1], completed=done)
        finally:
            if bar is not None:
                bar[0].stop()
    if cut is not None or (total is not None and done < total):
        of = f" of {_human_bytes(total)}" if total else ""
        raise UpstreamDownloadError(
            f"model {entry.name}: the download of {url} was cut off after {_human_bytes(done)}{of}"
            f"{' (' + _one_line(cut) + ')' if cut is not None else ''}; run again to resume it"
        )
    if total is not None and done > total:
        partial.discard()
        raise UpstreamDownloadError(f"model {entry.name}: {url} sent {done} bytes where it announced {total}; run again to start afresh")
    return done


def _progress_bar(url: str, total: int | None, done: int):
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, highlight=False),
        transient=False,
    )
    progress.start()
    task = progress.add_task(url.rsplit("/", 1)[-1], total=total, completed=done)
    return progress, task


def _one_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- verify, convert, commit


def fetch_upstream(entry: "ModelEntry", *, progress: bool = True, why: str | None = None) -> Path:
    """Download, verify and convert the original checkpoint of ``entry``; returns the cached model folder.

    Safe to call from several processes at once (a file lock serialises them;
    the later ones find the folder the first one made).

    Raises:
        UpstreamDownloadError: the download failed or was cut off, the SHA-256 does
            not match the file name's prefix, the file is not a checkpoint of this
            model, or its pickle would run code. Nothing is cached then.
    """
    from filelock import FileLock, Timeout

    if not entry.url:
        raise UpstreamDownloadError(f"model {entry.name}: no original checkpoint is registered")
    from occrecon.hub import hub_cache_dir

    locks = hub_cache_dir() / ".locks" / repo_folder(entry.name).name
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UpstreamDownloadError(f"model {entry.name}: cannot create the cache folder {locks.parent.parent} ({_one_line(exc)})") from None
    lock = FileLock(str(locks / "occrecon-upstream.lock"))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        _say(f"{entry.name}: waiting for another process that is downloading it", progress)
        lock.acquire()
    try:
        folder = cached_model(entry.name)
        if folder is not None:
            return folder
        try:
            return _fetch_locked(entry, progress=progress, why=why)
        except BaseException:
            _drop_if_empty(repo_folder(entry.name))
            raise
    finally:
        lock.release()


def _drop_if_empty(root: Path) -> None:
    """Remove a cache repo folder that holds no model and no download to resume (a failed first attempt)."""
    if not root.is_dir() or any((root / "snapshots").glob("*")) or (root / "refs").exists() or any((root / ".incomplete").glob("*.part")):
        return
    shutil.rmtree(root, ignore_errors=True)


def _fetch_locked(entry: "ModelEntry", *, progress: bool, why: str | None) -> Path:
    from occrecon.errors import OccreconError
    from occrecon.io.atomic import write_bytes_atomic

    assert entry.url is not None
    url = upstream_url(entry.url)
    filename = entry.url.rsplit("/", 1)[-1]
    root = repo_folder(entry.name)
    try:
        (root / "snapshots").mkdir(parents=True, exist_ok=True)  # the Hub's cache tools expect it in every repo folder
    except OSError as exc:
        raise UpstreamDownloadError(f"model {entry.name}: cannot create the cache folder {root} ({_one_line(exc)})") from None
    for stale in root.glob(".staging-*"):  # left by a process that was killed (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    incoming = root / ".incomplete"
    partial = _Partial(incoming / f"{filename}.part", incoming / f"{filename}.part.json")
    if partial.size():
        _say(f"{entry.name}: resuming the download of {url} after {_human_bytes(partial.size())}", progress)
    else:
        _say(f"{entry.name}: {why + '; ' if why else ''}downloading the original checkpoint {url}", progress)
    started = time.perf_counter()
    size = _download(entry, url, partial, progress=progress)

    digest = _sha256(partial.path)
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        partial.discard()
        shutil.rmtree(incoming, ignore_errors=True)
        raise UpstreamDownloadError(
            f"model {entry.name}: the file downloaded from {url} has SHA-256 {digest[:16]}..., not the {entry.sha256_prefix}... "
            "its name promises (a corrupt download or a wrong mirror); it was deleted and nothing was cached"
        )

    try:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    except OSError as exc:
        raise UpstreamDownloadError(f"model {entry.name}: cannot write to the cache folder {root} ({_one_line(exc)})") from None
    target = root / "snapshots" / digest
    try:
        checkpoint = staging / "download" / filename  # the converted config records the file's own name
        checkpoint.parent.mkdir()
        os.replace(partial.path, checkpoint)
        partial.discard()
        shutil.rmtree(incoming, ignore_errors=True)
        folder = staging / "model"
        problem = _not_a_checkpoint(checkpoint)
        if problem:
            raise UpstreamDownloadError(f"model {entry.name}: the file downloaded from {url} is not a PyTorch checkpoint ({problem}); nothing was cached")
        try:
            _convert(checkpoint, folder, entry)
        except OccreconError as exc:
            detail = _strip_path(str(exc), str(checkpoint)).replace(str(checkpoint), filename)
            raise UpstreamDownloadError(f"model {entry.name}: refused the file downloaded from {url}: {detail}; nothing was cached") from None
        except OSError:
            raise
        except Exception as exc:  # a pickle that loads but holds something else than a state dict
            raise UpstreamDownloadError(
                f"model {entry.name}: the file downloaded from {url} is not a checkpoint of this model "
                f"({type(exc).__name__}: {_one_line(exc)}); nothing was cached"
            ) from None
        _record_provenance(folder, entry, url=url, digest=digest, size=size)
        target.parent.mkdir(exist_ok=True)
        if target.exists():  # a snapshot whose ref was never written: what an interrupted attempt left
            shutil.rmtree(target)
        os.replace(folder, target)
        # The mark of a whole model, written last (atomically): until it exists, nothing here is a model.
        marker_path(entry.name).parent.mkdir(exist_ok=True)
        write_bytes_atomic(marker_path(entry.name), digest.encode("ascii"))
    except OSError as exc:
        raise UpstreamDownloadError(f"model {entry.name}: storing the converted model in {root} failed ({_one_line(exc)}); nothing was cached") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(f"{entry.name}: converted and cached at {target} ({_human_bytes(size)} downloaded, {time.perf_counter() - started:.1f} s)", progress)
    return target


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file (a zip archive, or a legacy pickle), or ``None``.

    An error page served with status 200 (a proxy's, a captive portal's) is the usual case.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    if not head:
        return "it is empty"
    shown = head[:24].decode("ascii", "replace")
    shown = "".join(c if c.isprintable() else "." for c in shown)
    return f"it starts with {shown!r}"


def _strip_path(detail: str, path: str) -> str:
    """The converter's message without the ``<temporary file>: `` it starts with (the line names the URL already)."""
    prefix = f"{path}: "
    return detail[len(prefix):] if detail.startswith(prefix) else detail


def _convert(checkpoint: Path, folder: Path, entry: "ModelEntry") -> None:
    from occrecon.convert import convert_checkpoint

    convert_checkpoint(checkpoint, folder, arch=entry.name)


def _record_provenance(folder: Path, entry: "ModelEntry", *, url: str, digest: str, size: int) -> None:
    """Add the source URL and the file's full SHA-256 to the converted folder's config and card."""
    from occrecon.convert import upstream_card
    from occrecon.hub import MODEL_FILES, OPTIONAL_FILES  # config.json, model.safetensors; README.md
    from occrecon.io.atomic import write_bytes_atomic

    config_path = folder / MODEL_FILES[0]
    config = json.loads(config_path.read_text(encoding="utf-8"))
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    source = dict(config.get("source") or {})
    source.update(url=url, original_url=entry.url, sha256=digest, size_bytes=size, downloaded=when)
    config["source"] = source
    write_bytes_atomic(config_path, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    card = upstream_card(config) + (
        f"\n## Provenance\n\nDownloaded by occrecon {__version__} on {when} from {url}"
        + (f" (the original is {entry.url})" if url != entry.url else "")
        + f"\n\n- file: `{entry.url.rsplit('/', 1)[-1]}`, {size} bytes\n- SHA-256: `{digest}`\n"
        + (f"- the SHA-256 prefix in the file name, `{entry.sha256_prefix}`, matches\n" if entry.sha256_prefix else "")
        + "- converted from the `.pt` (read with `torch.load(weights_only=True)`, keys and shapes checked) to safetensors; weights unchanged\n"
    )
    write_bytes_atomic(folder / OPTIONAL_FILES[0], card.encode("utf-8"))


def upstream_weight_bytes(entry: "ModelEntry") -> int | None:
    """Size of the float32 weights of ``entry`` (4 bytes per parameter): the converted folder's size, about."""
    return None if entry.n_parameters is None else 4 * entry.n_parameters


__all__ = [
    "CACHE_ORG",
    "ENDPOINT_ENV",
    "UpstreamDownloadError",
    "cache_record",
    "cache_repo_id",
    "cached_model",
    "fetch_upstream",
    "locate_registered",
    "marker_path",
    "repo_folder",
    "upstream_url",
    "upstream_weight_bytes",
]
