"""All Hugging Face Hub I/O: downloads into the standard cache, cache checks, uploads.

Environment variables are read at call time rather than through
``huggingface_hub.constants`` (which freezes them at import), so that
``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` set by a
caller or a test after import still apply.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from occrecon._version import __version__
from occrecon.errors import ModelUnavailableError, UnknownModelError

MODEL_FILES = ("config.json", "model.safetensors")
OPTIONAL_FILES = ("README.md",)

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for cache-only operation."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The Hub cache folder, honouring ``HF_HUB_CACHE`` and ``HF_HOME``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _resolve(host: str, port: int, timeout: float) -> list[tuple] | None:
    """``getaddrinfo`` bounded by ``timeout`` seconds (it has no timeout of its own: an unreachable
    name server holds it 5 s per try and address family); None when it fails or takes longer."""
    found: list[list[tuple] | None] = [None]

    def lookup() -> None:
        try:
            found[0] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            pass

    worker = threading.Thread(target=lookup, name="occrecon-dns", daemon=True)
    worker.start()
    worker.join(timeout)  # a lookup that outlives it ends on its own, in a daemon thread
    return found[0]


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds, name lookup included.

    Behind a proxy the probe says nothing, so it reports reachable and leaves the decision to the client.
    """
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return True
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + timeout
    addresses = _resolve(parts.hostname or "", port, timeout)
    for family, kind, proto, _, address in addresses or []:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as connection:
                connection.settimeout(left)
                connection.connect(address)
                return True
        except OSError:
            continue
    return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds, name lookup included.

    ``huggingface_hub`` retries an unreachable endpoint with back-off for about
    23 s before it falls back to the cache; probing first lets an offline user
    with a cached model start at once, and an offline ``occrecon models download``
    fail at once.
    """
    return reachable(_endpoint() or "https://huggingface.co", timeout)


_FETCHING: contextvars.ContextVar[bool] = contextvars.ContextVar("occrecon_fetching", default=False)


@contextlib.contextmanager
def fetching() -> Iterator[None]:
    """While inside, the command running *is* the download (``occrecon models download``): a failure's
    advice is about the network, not to run that command again."""
    token = _FETCHING.set(True)
    try:
        yield
    finally:
        _FETCHING.reset(token)


def fetch_hint(name: str, *, reachable_where: str = "the Hub is reachable") -> str:
    """What to do about a model that cannot be fetched, worded for the command that needed it."""
    if _FETCHING.get():
        return (
            "check the network connection (HF_ENDPOINT and OCCRECON_UPSTREAM_ENDPOINT name mirrors); on a machine "
            "without one, download it on another machine and copy its HF_HOME, or use a bundled model (see `occrecon models`)"
        )
    return (
        f"prefetch it with `occrecon models download {name}` where {reachable_where} "
        "(or on another machine, then copy its HF_HOME), pass a local folder with --model DIR, "
        "or use a bundled model (see `occrecon models`)"
    )


def split_revision(repo: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` → ``("org/name", "rev")``."""
    if "@" in repo:
        repo_id, revision = repo.split("@", 1)
        return repo_id, revision or None
    return repo, None


class HubRepoMissingError(ModelUnavailableError):
    """The Hub (or a mirror) answered that the repository does not exist: RepositoryNotFound, a plain 404, or 401.

    For a registered upstream model this is the cue to fetch the original checkpoint instead.
    """


class HubUnreachableError(ModelUnavailableError):
    """The model is not in the cache and the Hub could not be asked (offline, or no connection)."""

    def __init__(self, message: str, *, offline: bool) -> None:
        super().__init__(message)
        self.offline = offline


def _unavailable(
    repo_id: str, revision: str | None, reason: str, name: str | None, kind: type[ModelUnavailableError] = ModelUnavailableError, **extra
) -> ModelUnavailableError:
    label = name or repo_id
    hint = fetch_hint(label)
    at = f"@{revision}" if revision else ""
    return kind(f"model {label} ({repo_id}{at}): {reason}; {hint}", **extra)


def _missing_repo_status(exc: BaseException) -> int | None:
    """404 or 401 when ``exc`` (or what caused it) is an HTTP answer that the repository is not there.

    ``huggingface_hub`` turns a HEAD request's plain 404 (a mirror without the
    Hub's ``X-Error-Code`` header) into ``LocalEntryNotFoundError`` as if the
    connection had failed; the HTTP error it came from is its ``__cause__``.
    """
    from huggingface_hub import errors

    seen = 0
    while exc is not None and seen < 5:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(exc, errors.HfHubHTTPError) and status in (401, 404):
            return status
        exc = exc.__cause__
        seen += 1
    return None


@contextlib.contextmanager
def _cache_only(active: bool) -> Iterator[None]:
    """While ``active``, ``huggingface_hub`` itself is offline, not only the download asked for.

    Even with ``local_files_only`` its request headers fetch an agent registry from the Hub
    once per process (``utils._detect_agent``), whose name lookup an unreachable name server
    holds for seconds; its offline constant is what that code consults.
    """
    from huggingface_hub import constants

    if not active:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def download_model(
    repo_id: str,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    name: str | None = None,
) -> Path:
    """Fetch a model folder (config, weights, card) into the Hub cache and return its path.

    Args:
        repo_id: ``org/name`` on the Hub.
        revision: branch, tag or commit; ``None`` for the default branch.
        local_files_only: never touch the network (also forced by ``HF_HUB_OFFLINE=1``).
        progress: show the Hub's download bars.
        name: the short name the user typed, for messages.

    Raises:
        ModelUnavailableError: offline and not cached, missing or gated repo,
            unknown revision, or the Hub unreachable, with what to do instead.
    """
    import huggingface_hub as hf
    from huggingface_hub import errors
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    try:
        hf.utils.validate_repo_id(repo_id)
    except errors.HFValidationError:
        shown = repo_id if len(repo_id) <= 80 else repo_id[:77] + "..."
        raise UnknownModelError(f"{shown!r} is not a valid org/name Hub id (letters, digits, '-', '_' and '.', at most 96 characters a part)") from None
    offline = local_files_only or hub_offline()
    unreachable = not offline and not hub_reachable()
    if progress:
        enable_progress_bars()
    else:
        disable_progress_bars()
    kwargs = dict(
        repo_id=repo_id,
        revision=revision,
        cache_dir=hub_cache_dir(),
        local_files_only=offline or unreachable,
        library_name="occrecon",
        library_version=__version__,
        endpoint=_endpoint(),
    )
    try:
        with _cache_only(offline or unreachable):
            paths = [Path(hf.hf_hub_download(filename=f, **kwargs)) for f in MODEL_FILES]
            for optional in OPTIONAL_FILES:
                try:
                    hf.hf_hub_download(filename=optional, **kwargs)
                except (errors.EntryNotFoundError, errors.LocalEntryNotFoundError):
                    pass
    except errors.GatedRepoError:
        raise _unavailable(repo_id, revision, "the repository is gated: accept its terms on the Hub and log in with `hf auth login`", name) from None
    except errors.RepositoryNotFoundError:
        raise _unavailable(repo_id, revision, "no such repository on the Hub (or it is private)", name, HubRepoMissingError) from None
    except errors.RevisionNotFoundError:
        raise _unavailable(repo_id, revision, f"the Hub has no revision {revision!r}", name) from None
    except errors.LocalEntryNotFoundError as exc:
        status = None if offline or unreachable else _missing_repo_status(exc)
        if status is not None:
            raise _unavailable(repo_id, revision, f"no such repository on the Hub (HTTP {status})", name, HubRepoMissingError) from None
        reason = "not in the local cache and HF_HUB_OFFLINE is set" if offline else "not in the local cache and the Hub cannot be reached"
        raise _unavailable(repo_id, revision, reason, name, HubUnreachableError, offline=offline) from None
    except errors.EntryNotFoundError:
        raise _unavailable(repo_id, revision, f"the repository lacks {' or '.join(MODEL_FILES)}", name) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        status = _missing_repo_status(exc)
        if status is not None:
            raise _unavailable(repo_id, revision, f"no such repository on the Hub (HTTP {status})", name, HubRepoMissingError) from None
        raise _unavailable(repo_id, revision, f"download failed ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", name) from None
    return paths[0].parent


def is_cached(repo_id: str, revision: str | None = None) -> bool:
    """Whether every model file of ``repo_id@revision`` is already in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in MODEL_FILES:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
        if not isinstance(found, str):
            return False
    return True


def push_folder(folder: Path, repo_id: str, *, private: bool = False, commit_message: str | None = None) -> str:
    """Upload a model folder to ``repo_id`` (created when missing); returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint(), library_name="occrecon", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        allow_patterns=[*MODEL_FILES, *OPTIONAL_FILES],
        commit_message=commit_message or "Upload occrecon model folder",
    )
    return str(getattr(info, "commit_url", info))
