"""Issue 27, item 6: ``occrecon models download`` without a network fails in seconds, and does not advise itself."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from occrecon import hub


@pytest.fixture
def hanging_name_server(monkeypatch):
    """Name lookups that hang, as behind an unreachable resolver (5 s per try and address family)."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hang(host, *args, **kwargs):
        if host in ("localhost", "127.0.0.1"):
            return real(host, *args, **kwargs)
        release.wait(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    yield
    release.set()


def test_the_probe_bounds_the_name_lookup(hanging_name_server):
    start = time.monotonic()
    assert not hub.reachable("https://huggingface.co", timeout=0.3)
    assert time.monotonic() - start < 1.5


def test_models_download_without_a_network_fails_fast_and_does_not_advise_itself(hanging_name_server, monkeypatch, tmp_path):
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    from occrecon.cli.models import models_app

    # huggingface_hub fetches an agent registry once per process, even for cache-only calls: make it due again.
    monkeypatch.setattr(_detect_agent, "_registry", None)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agents.json"), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)  # as on a user's machine: the registry is asked for
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setenv("OCCRECON_UPSTREAM_ENDPOINT", "https://mirror.invalid")
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    start = time.monotonic()
    result = CliRunner().invoke(models_app, ["download", "onet-points", "-q"])
    elapsed = time.monotonic() - start
    assert result.exit_code == 2
    assert elapsed < 10, f"took {elapsed:.1f} s"  # two probes of at most 3 s each, no client retries
    error = result.stderr.strip()
    assert error.startswith("Error: model onet-points: cannot reach") and len(error.splitlines()) == 1
    assert "occrecon models download" not in error and "check the network connection" in error


def test_a_load_that_needs_a_download_still_names_the_prefetch(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from occrecon.errors import ModelUnavailableError
    from occrecon.loading import locate_model

    with pytest.raises(ModelUnavailableError, match="prefetch it with `occrecon models download onet-points`"):
        locate_model("onet-points", progress=False)
    with hub.fetching(), pytest.raises(ModelUnavailableError) as raised:
        locate_model("onet-points", progress=False)
    assert "occrecon models download" not in str(raised.value)
