"""The real huggingface_hub download path, against a local HTTP server (HF_ENDPOINT)."""

from __future__ import annotations

import json

import pytest
import torch

from hub_server import FakeHub
from occrecon import hub
from occrecon.errors import ModelUnavailableError, UnknownModelError
from occrecon.loading import load_model, locate_model
from tiny_models import save_tiny_model


@pytest.fixture
def model_files(tmp_path):
    folder = save_tiny_model("points", tmp_path / "tiny", seed=0)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def fake_hub(monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_download_load_and_cache_reuse(fake_hub, model_files):
    fake_hub.repo("org/tiny").add_commit(model_files)
    model = load_model("org/tiny", "cpu")
    assert model.source == "hub" and model.name == "org/tiny"
    assert len(model.revision) == 40
    gets = [p for m, p in fake_hub.requests if m == "GET"]
    assert any(p.endswith("/model.safetensors") for p in gets)

    fake_hub.requests.clear()
    load_model("org/tiny", "cpu")
    assert not [p for m, p in fake_hub.requests if m == "GET"], "a cached model must not be downloaded again"
    assert hub.is_cached("org/tiny", "main")


def test_revision_pinning(fake_hub, model_files, tmp_path):
    repo = fake_hub.repo("org/tiny")
    first = repo.add_commit(model_files)
    second_files = {p.name: p.read_bytes() for p in save_tiny_model("points", tmp_path / "other", seed=1).iterdir()}
    second = repo.add_commit(second_files)
    assert first != second

    old = load_model("org/tiny", "cpu", revision=first)
    new = load_model("org/tiny", "cpu")
    pinned_in_name = load_model(f"org/tiny@{first}", "cpu")
    assert old.revision == first and new.revision == second and pinned_in_name.revision == first
    key = "decoder.fc_p.weight"
    assert torch.equal(old.net.state_dict()[key], pinned_in_name.net.state_dict()[key])
    assert not torch.equal(old.net.state_dict()[key], new.net.state_dict()[key])


def test_offline_uses_the_cache_and_explains_misses(fake_hub, model_files, monkeypatch):
    fake_hub.repo("org/tiny").add_commit(model_files)
    load_model("org/tiny", "cpu")
    fake_hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_model("org/tiny", "cpu").source == "hub"
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE.*occrecon models download"):
        load_model("org/never-downloaded", "cpu")


def test_unreachable_hub_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelUnavailableError, match="cannot be reached|download failed"):
        load_model("org/whatever", "cpu")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda h, f: None, "no such repository"),
        (lambda h, f: setattr(h.repo("org/tiny"), "gated", True) or h.repo("org/tiny").add_commit(f), "gated"),
    ],
    ids=["missing", "gated"],
)
def test_missing_and_gated_repos(fake_hub, model_files, setup, message):
    setup(fake_hub, model_files)
    with pytest.raises(ModelUnavailableError, match=message):
        load_model("org/tiny", "cpu")


def test_unknown_revision(fake_hub, model_files):
    fake_hub.repo("org/tiny").add_commit(model_files)
    with pytest.raises(ModelUnavailableError, match="no revision 'v9'"):
        load_model("org/tiny", "cpu", revision="v9")


def test_registered_name_resolves_to_its_hub_repo(fake_hub, model_files):
    config = json.loads(model_files["config.json"])
    config["name"] = "onet-voxels"
    fake_hub.repo("occrecon/convonet-shapenet-3plane").add_commit({**model_files, "config.json": json.dumps(config).encode()})
    folder, name, source, revision = locate_model("convonet-shapenet-3plane")
    assert source == "hub" and name == "convonet-shapenet-3plane" and (folder / "model.safetensors").is_file()


def test_unknown_name_lists_known_models():
    with pytest.raises(UnknownModelError, match="convonet-shapenet-3plane"):
        load_model("no-such-model", "cpu")


def test_unreachable_hub_falls_back_to_the_cache_at_once(fake_hub, model_files, monkeypatch):
    import time

    fake_hub.repo("org/tiny").add_commit(model_files)
    load_model("org/tiny", "cpu")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    assert load_model("org/tiny", "cpu").source == "hub"
    assert time.perf_counter() - start < 5
