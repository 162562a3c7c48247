"""Registered upstream models without a Hub repo: the original .pt is downloaded, verified, converted and cached.

A local HTTP server (tests/hub_server.py) plays both the Hub (which lacks the
repos) and the original checkpoints' host (OCCRECON_UPSTREAM_ENDPOINT); the
checkpoints are random networks written in upstream's format. Nothing here
reaches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from hub_server import FakeHub
from occrecon import registry, upstream
from occrecon.cli.main import main
from occrecon.errors import ModelUnavailableError
from occrecon.loading import load_model
from test_convert import randomized_network, write_upstream_checkpoint

UNCOND = "onet-uncond-chairs"  # 0.3 M parameters: a real architecture that downloads in a blink
CONVONET = "convonet-voxels-grid32"  # a ConvONet file: no hash in its name


def _path(name: str) -> str:
    return urlsplit(registry.get_entry(name).url).path


def _checkpoint_bytes(name: str, tmp_path: Path, seed: int = 0) -> tuple[bytes, torch.nn.Module]:
    net = randomized_network(name, seed)
    file = write_upstream_checkpoint(net, tmp_path / f"{name}-{seed}.pt")
    return file.read_bytes(), net


def _promise(monkeypatch, name: str, prefix: str | None) -> None:
    """Make the registry's hash prefix for ``name`` the one of the test file (the real one belongs to the real file)."""
    entries = registry.registry()
    entries[name] = dataclasses.replace(entries[name], sha256_prefix=prefix)
    monkeypatch.setattr(registry, "_all_entries", lambda: entries)


@pytest.fixture
def server(monkeypatch):
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv(upstream.ENDPOINT_ENV, hub.url)
        yield hub


@pytest.fixture
def uncond(server, tmp_path, monkeypatch):
    """The server holds a random onet-uncond-chairs checkpoint whose hash prefix the registry promises."""
    data, net = _checkpoint_bytes(UNCOND, tmp_path)
    server.files[_path(UNCOND)] = data
    _promise(monkeypatch, UNCOND, hashlib.sha256(data).hexdigest()[:8])
    return data, net


def _logits(model_or_net, z: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    net = getattr(model_or_net, "net", model_or_net)
    with torch.inference_mode():
        return net.decode(queries, net.encode(None, batch_size=len(z)), z=z)


def _marker(name: str) -> Path:
    return upstream.marker_path(name)


def _nothing_cached(name: str) -> bool:
    """No ref, no snapshot, and no file of this model anywhere in the Hub cache (lock files aside)."""
    from occrecon.hub import hub_cache_dir

    files = [p for p in hub_cache_dir().rglob("*") if p.is_file() and ".locks" not in p.parts]
    return not _marker(name).exists() and upstream.cached_model(name) is None and not files


def _run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_registry_carries_every_original_url_and_hash_prefix():
    hub_entries = {n: e for n, e in registry.registry().items() if e.source == "hub"}
    assert len(hub_entries) == 21
    for name, entry in hub_entries.items():
        assert entry.url and entry.url.startswith("https://s3.eu-central-1.amazonaws.com/avg-projects/"), name
        assert entry.url.endswith(".pt") and entry.repo_id == f"occrecon/{name}" and entry.revision
    assert registry.get_entry("onet-img").sha256_prefix == "f786b04a"
    assert registry.get_entry("onet-img-legacy").sha256_prefix == "0c7780d1"
    assert registry.get_entry("onet-uncond-sofas").sha256_prefix == "bf6c039d"
    assert registry.get_entry("convonet-shapenet-3plane").sha256_prefix is None
    assert registry.get_entry("convonet-scene").url.endswith("/convolutional_occupancy_networks/models/pointcloud_crop/room_grid64.pt")


def test_registry_urls_match_the_spec():
    spec = Path(__file__).resolve().parents[2] / "shared" / "spec" / "checkpoints"
    if not spec.is_dir():
        pytest.skip("../shared/spec is not present")
    spec_urls = {json.loads(f.read_text())["checkpoint_url"] for f in spec.glob("*.json")}
    for name, entry in registry.registry().items():
        if entry.source == "hub":
            assert entry.url in spec_urls, name
            prefix = registry.sha256_prefix_of(entry.url)
            assert prefix == entry.sha256_prefix


def test_registry_parameter_counts_are_the_networks():
    from occrecon.nets import ARCHITECTURE_PRESETS, build_network

    for name, preset in ARCHITECTURE_PRESETS.items():
        with torch.device("meta"):
            net = build_network(preset["architecture"])
        assert registry.get_entry(name).n_parameters == sum(p.numel() for p in net.parameters()), name


def test_endpoint_replaces_scheme_and_host_only(monkeypatch):
    url = registry.get_entry("onet-img").url
    monkeypatch.delenv(upstream.ENDPOINT_ENV)
    assert upstream.upstream_url(url) == url
    monkeypatch.setenv(upstream.ENDPOINT_ENV, "http://mirror.example:8080")
    assert upstream.upstream_url(url) == "http://mirror.example:8080/avg-projects/occupancy_networks/models/onet_img2mesh_3-f786b04a.pt"
    monkeypatch.setenv(upstream.ENDPOINT_ENV, "https://mirror.example/prefix/")
    assert upstream.upstream_url(url) == "https://mirror.example/prefix/avg-projects/occupancy_networks/models/onet_img2mesh_3-f786b04a.pt"
    monkeypatch.setenv(upstream.ENDPOINT_ENV, "mirror.example")
    with pytest.raises(ModelUnavailableError, match=upstream.ENDPOINT_ENV):
        upstream.upstream_url(url)


def test_missing_hub_repo_downloads_converts_and_caches(server, uncond, monkeypatch):
    data, net = uncond
    model = load_model(UNCOND, "cpu")
    assert model.source == "upstream" and model.name == UNCOND
    digest = hashlib.sha256(data).hexdigest()
    assert model.revision == f"sha256:{digest}"
    # The Hub was asked first, then the original file was fetched once.
    paths = [p for _, p in server.requests]
    assert any("/occrecon/onet-uncond-chairs/resolve/" in p for p in paths)
    assert [p for m, p in server.requests if m == "GET" and p == _path(UNCOND)] == [_path(UNCOND)]

    repo = upstream.repo_folder(UNCOND)
    assert repo == Path(os.environ["HF_HOME"]) / "hub" / "models--occrecon-upstream--onet-uncond-chairs"
    folder = repo / "snapshots" / digest
    assert model.path == folder and _marker(UNCOND).read_text() == digest
    config = json.loads((folder / "config.json").read_text())
    assert config["source"]["sha256"] == digest and config["source"]["url"] == server.url + _path(UNCOND)
    assert config["source"]["converted_from"] == "onet_uncond_chairs-800ea1f3.pt"
    card = (folder / "README.md").read_text()
    assert digest in card and server.url + _path(UNCOND) in card and "license: mit" in card
    assert sorted(p.name for p in repo.iterdir()) == ["refs", "snapshots"]  # no staging or partial file left

    # The Hub's own cache tools see an ordinary cached repo (`hf cache scan` lists it, `hf cache delete` removes it).
    from huggingface_hub import scan_cache_dir

    scanned = scan_cache_dir(repo.parent)
    assert not scanned.warnings
    (cached,) = [r for r in scanned.repos if r.repo_id == "occrecon-upstream/onet-uncond-chairs"]
    assert {rev.commit_hash for rev in cached.revisions} == {digest} and cached.size_on_disk > 1_000_000

    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    queries = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    expected = _logits(net, z, queries)
    assert torch.equal(_logits(model, z, queries), expected)

    # Offline, with the server gone: the cached folder loads without a request, same logits.
    server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load_model(UNCOND, "cpu")
    assert again.source == "upstream" and torch.equal(_logits(again, z, queries), expected)


def test_a_cached_conversion_makes_no_request_even_online(server, uncond):
    load_model(UNCOND, "cpu")
    server.requests.clear()
    assert load_model(UNCOND, "cpu").source == "upstream"
    assert server.requests == []


def test_plain_404_mirror_and_hf_hub_cache(tmp_path, monkeypatch):
    with FakeHub(plain_404=True) as mirror:
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        monkeypatch.setenv(upstream.ENDPOINT_ENV, mirror.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hubcache"))
        data, net = _checkpoint_bytes(CONVONET, tmp_path)
        mirror.files[_path(CONVONET)] = data
        model = load_model(CONVONET, "cpu")
    assert model.source == "upstream" and model.path.parent.parent == tmp_path / "hubcache" / f"models--occrecon-upstream--{CONVONET}"
    for key, tensor in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], tensor), key


def test_hub_repo_is_preferred_when_it_exists(server, uncond, tmp_path):
    from tiny_models import save_tiny_model

    folder = save_tiny_model("voxels", tmp_path / "tiny")
    server.repo(f"occrecon/{UNCOND}").add_commit({p.name: p.read_bytes() for p in folder.iterdir()})
    model = load_model(UNCOND, "cpu")
    assert model.source == "hub" and len(model.revision) == 40
    assert not [p for _, p in server.requests if p == _path(UNCOND)]
    assert upstream.cached_model(UNCOND) is None


@pytest.mark.parametrize("kind", ["tampered", "not-a-checkpoint", "code-running-pickle", "wrong-architecture"])
def test_bad_files_are_refused_and_nothing_is_cached(kind, server, tmp_path, monkeypatch, capsys):
    data, _ = _checkpoint_bytes(UNCOND, tmp_path)
    pwned = tmp_path / "pwned"
    if kind == "tampered":
        promised = hashlib.sha256(data).hexdigest()[:8]
        tampered = bytearray(data)
        tampered[len(data) // 2] ^= 0xFF  # one byte changed: the size is right, the hash is not
        data = bytes(tampered)
    else:
        if kind == "not-a-checkpoint":
            data = b"<html><body>Access denied</body></html>\n" * 50
        elif kind == "code-running-pickle":
            from test_convert import _Exploit

            torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(pwned))}, tmp_path / "evil.pt")
            data = (tmp_path / "evil.pt").read_bytes()
        else:
            data, _ = _checkpoint_bytes("onet-voxels", tmp_path)
        promised = hashlib.sha256(data).hexdigest()[:8]
    server.files[_path(UNCOND)] = data
    _promise(monkeypatch, UNCOND, promised)
    expected = {"tampered": "SHA-256", "not-a-checkpoint": r"is not a PyTorch checkpoint \(it starts with '<html>",
                "code-running-pickle": "refused to load", "wrong-architecture": "does not fit architecture"}[kind]

    with pytest.raises(ModelUnavailableError, match=expected) as raised:
        load_model(UNCOND, "cpu")
    assert server.url + _path(UNCOND) in str(raised.value) and "\n" not in str(raised.value)
    code, _, err = _run(["models", "download", UNCOND], capsys)
    assert code == 2 and re.search(expected, err) and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("Error:")]) == 1

    assert _nothing_cached(UNCOND)  # no partial file either
    assert not pwned.exists()


def test_cut_off_download_leaves_no_model_and_resumes(server, uncond, capsys):
    data, net = uncond
    server.cut_after[_path(UNCOND)] = len(data) // 3
    code, _, err = _run(["models", "download", UNCOND, "-q"], capsys)
    assert code == 2 and "cut off" in err and server.url + _path(UNCOND) in err
    assert not _marker(UNCOND).exists() and upstream.cached_model(UNCOND) is None
    assert not (upstream.repo_folder(UNCOND) / "snapshots").exists() or not any((upstream.repo_folder(UNCOND) / "snapshots").iterdir())
    assert list((upstream.repo_folder(UNCOND) / ".incomplete").glob("*.part"))  # kept, to resume
    from huggingface_hub import scan_cache_dir

    assert not scan_cache_dir(upstream.repo_folder(UNCOND).parent).warnings

    code, out, err = _run(["models", "download", UNCOND, "--json"], capsys)
    assert code == 0, err
    row = json.loads(out)
    assert row["source"] == "upstream" and Path(row["path"]) == upstream.cached_model(UNCOND)
    assert server.ranges == [None, f"bytes={len(data) // 3}-"]  # the second attempt resumed
    assert _marker(UNCOND).read_text() == hashlib.sha256(data).hexdigest()
    assert torch.equal(load_model(UNCOND, "cpu").net.state_dict()["decoder.fc_out.weight"], net.state_dict()["decoder.fc_out.weight"])


def test_a_changed_file_restarts_instead_of_resuming(server, uncond, tmp_path, monkeypatch, capsys):
    data, _ = uncond
    server.cut_after[_path(UNCOND)] = 1000
    assert _run(["models", "download", UNCOND, "-q"], capsys)[0] == 2
    other, net = _checkpoint_bytes(UNCOND, tmp_path, seed=5)  # the file changed on the server (new ETag)
    server.files[_path(UNCOND)] = other
    _promise(monkeypatch, UNCOND, hashlib.sha256(other).hexdigest()[:8])
    assert _run(["models", "download", UNCOND, "-q"], capsys)[0] == 0
    loaded = load_model(UNCOND, "cpu").net.state_dict()
    assert torch.equal(loaded["decoder.fc_p.weight"], net.state_dict()["decoder.fc_p.weight"])


def test_offline_with_nothing_cached_names_the_url(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as raised:
        load_model(UNCOND, "cpu")
    message = str(raised.value)
    assert "HF_HUB_OFFLINE" in message and "occrecon/onet-uncond-chairs" in message
    assert "/avg-projects/occupancy_networks/models/onet_uncond_chairs-800ea1f3.pt" in message
    assert f"occrecon models download {UNCOND}" in message and "\n" not in message
    code, _, err = _run(["models", "download", UNCOND], capsys)
    assert code == 2 and "onet_uncond_chairs-800ea1f3.pt" in err


def test_unreachable_hub_and_host_fail_in_one_line(capsys):
    # conftest points both the Hub and the original host at a port that refuses connections.
    code, _, err = _run(["models", "download", UNCOND], capsys)
    assert code == 2 and "cannot reach" in err and "the Hub cannot be reached" in err and "Traceback" not in err
    assert _nothing_cached(UNCOND) and not upstream.repo_folder(UNCOND).exists()


def test_an_explicit_revision_never_falls_back(server, uncond):
    with pytest.raises(ModelUnavailableError, match="no such repository"):
        load_model(UNCOND, "cpu", revision="main")
    assert not [p for _, p in server.requests if p == _path(UNCOND)]


def test_concurrent_first_loads_download_once(server, uncond):
    results, errors = [], []

    def load():
        try:
            results.append(load_model(UNCOND, "cpu").path)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert len([p for m, p in server.requests if m == "GET" and p == _path(UNCOND)]) == 1


def test_models_listing_says_where_each_model_comes_from(server, uncond, capsys):
    code, out, _ = _run(["models", "--json"], capsys)
    rows = {json.loads(line)["name"]: json.loads(line) for line in out.splitlines()}
    assert code == 0
    assert rows["onet-img-synthetic"]["comes_from"] == "bundled" and rows["onet-img-synthetic"]["cached"] is True
    chairs = rows[UNCOND]
    assert chairs["comes_from"] == "hub, else url" and chairs["cached"] is False and chairs["cached_from"] is None
    assert chairs["url"] == registry.get_entry(UNCOND).url and chairs["repo_id"] == f"occrecon/{UNCOND}"
    assert chairs["weights_bytes"] == 4 * 298_369

    load_model(UNCOND, "cpu")
    code, out, _ = _run(["models", "--json", "--task", "unconditional"], capsys)
    rows = {json.loads(line)["name"]: json.loads(line) for line in out.splitlines()}
    assert set(rows) == {f"onet-uncond-{c}" for c in ("airplanes", "cars", "chairs", "sofas")}
    chairs = rows[UNCOND]
    assert chairs["cached"] is True and chairs["cached_from"] == "url" and chairs["comes_from"] == "url"
    assert chairs["sha256"] == hashlib.sha256(uncond[0]).hexdigest() and chairs["size_bytes"] > 1_000_000

    code, out, _ = _run(["models", "--task", "unconditional"], capsys)
    assert code == 0 and re.search(r"onet-uncond-chairs +unconditional +original .pt +1\.\d MB +yes", out), out


def test_sample_by_name_downloads_on_first_use(server, uncond, tmp_path, capsys, monkeypatch):
    data, _ = uncond
    args = ["sample", UNCOND, "-n", 2, "-d", tmp_path, "--resolution", 4, "--upsampling-steps", 0, "--json", "-q"]
    code, out, err = _run(args, capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    # A random network may have no surface at 0.2 (exit 1 for that shape); what matters here is where it came from.
    assert code in (0, 1) and len(rows) == 2, err
    assert all(r["model"] == UNCOND and r["model_revision"] == f"sha256:{hashlib.sha256(data).hexdigest()}" for r in rows)
    assert upstream.cached_model(UNCOND) is not None
    server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, _ = _run([*args, "--overwrite"], capsys)
    assert [json.loads(line)["model_revision"] for line in out.splitlines()] == [rows[0]["model_revision"]] * 2
