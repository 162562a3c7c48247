"""Test-time fitting of a cloud's encoding to its points."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import occrecon
from occrecon.fitting import FitOptions, fit_to_points, prior_weights
from occrecon.loading import OccupancyModel
from occrecon.field import NetworkField, RotationEnsemble, encode_rotated
from occrecon.preprocess import prepare_input

SPEC = {"kind": "points", "n_points": None, "noise": 0.0}


class _RadiusNet(torch.nn.Module):
    """Encodes every cloud as a ball of radius ``guess``; the encoding is that radius, one number per input."""

    def __init__(self, guess: float) -> None:
        super().__init__()
        self.sharpness = torch.nn.Parameter(torch.tensor(40.0))
        self.guess = guess

    def encode(self, inputs):
        return torch.full((inputs.shape[0], 1), self.guess)

    def decode(self, p, c):
        return self.sharpness * (c - p.norm(dim=-1))


def radius_model(guess: float) -> OccupancyModel:
    config = {"task": "points", "input": SPEC, "architecture": {"method": "onet", "padding": 0.1}, "generation": {"threshold": 0.5}}
    return OccupancyModel(_RadiusNet(guess), config, "radius", "local", None, None, torch.device("cpu"))


def sphere(radius: float, count: int = 2000, seed: int = 0) -> np.ndarray:
    direction = np.random.default_rng(seed).normal(size=(count, 3))
    return radius * direction / np.linalg.norm(direction, axis=1, keepdims=True)


def test_prior_weights_release_the_field_near_the_cloud_only():
    points = np.zeros((1, 3))
    samples = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.05, 0.0, 0.0]])
    weights = prior_weights(samples, points, release=0.01)
    np.testing.assert_allclose(weights, [0.0, 1 - np.exp(-0.5), 1 - np.exp(-12.5)], rtol=1e-6)


def test_the_fitted_surface_moves_onto_the_points_and_the_network_is_untouched():
    model = radius_model(guess=0.29)
    cloud = sphere(0.30)
    initial = NetworkField(model, model.net.encode(torch.zeros(1, 1, 3)))
    fitted = fit_to_points(initial, cloud, threshold=0.5, options=FitOptions(steps=80, learning_rate=0.002))
    # A 0.01 miss (one release length) is what the fit corrects: most of it goes.
    assert abs(float(fitted.encoding) - 0.30) < 0.3 * abs(float(initial.encoding) - 0.30)
    assert model.net.sharpness.requires_grad and model.net.sharpness.grad is None
    assert float(initial.encoding) == pytest.approx(0.29)  # the input encoding is not modified in place
    # Steps 0 hands the encoding back as it was.
    assert fit_to_points(initial, cloud, threshold=0.5, options=FitOptions(steps=0)) is initial


def test_a_large_cloud_is_fitted_through_a_subset_of_the_same_fit():
    model = radius_model(guess=0.29)
    initial = NetworkField(model, model.net.encode(torch.zeros(1, 1, 3)))
    options = FitOptions(steps=80, learning_rate=0.002, max_points=500)
    subset = fit_to_points(initial, sphere(0.30, 40_000), threshold=0.5, options=options)
    full = fit_to_points(initial, sphere(0.30, 500, seed=1), threshold=0.5, options=options)
    assert float(subset.encoding) == pytest.approx(float(full.encoding), abs=1e-3) and abs(float(subset.encoding) - 0.30) < 0.003


def test_the_surface_goes_to_the_extraction_threshold():
    model = radius_model(guess=0.30)
    cloud = sphere(0.30)
    initial = NetworkField(model, model.net.encode(torch.zeros(1, 1, 3)))
    # At threshold 0.8 the surface sits where sigmoid(logit) = 0.8: the radius must grow by logit(0.8)/sharpness.
    fitted = fit_to_points(initial, cloud, threshold=0.8, options=FitOptions(steps=150, learning_rate=0.002))
    shift = np.log(0.8 / 0.2) / 40.0
    assert float(fitted.encoding) - 0.30 == pytest.approx(shift, rel=0.35)


def test_only_the_unrotated_member_of_an_ensemble_is_fitted(points_model: Path):
    model = occrecon.load_model(str(points_model), "cpu")
    cloud = sphere(0.4) + [0.2, -0.1, 0.3]
    main_input = prepare_input("points", cloud, SPEC, seed=0)
    ensemble = encode_rotated(model, cloud, main_input, SPEC, rotations=3, seed=0)
    fitted = fit_to_points(ensemble, main_input.tensor.numpy(), threshold=0.5, options=FitOptions(steps=10))
    assert isinstance(fitted, RotationEnsemble) and fitted.size == 3
    for key, planes in ensemble.encoding.items():
        assert not torch.equal(fitted.encoding[key][0], planes[0])
        torch.testing.assert_close(fitted.encoding[key][1:], planes[1:], rtol=0, atol=0)
    # The fit moves the combined field at the points towards the threshold.
    points = main_input.tensor
    before = ensemble.decode(points).abs().mean()
    after = fitted.decode(points).abs().mean()
    assert after < before


def test_the_bundled_model_keeps_its_field_away_from_the_cloud():
    model = occrecon.load_model("convonet-points-synthetic", "cpu")
    cloud = prepare_input("points", sphere(0.45, 3000) * [1.0, 0.6, 0.8], SPEC, seed=0).tensor
    initial = NetworkField(model, model.net.encode(cloud[None]))
    fitted = fit_to_points(initial, cloud.numpy(), threshold=0.5, options=FitOptions())
    probability = lambda code, p: torch.sigmoid(code.decode(p))  # noqa: E731
    with torch.no_grad():
        far = torch.rand(6000, 3) * 1.1 - 0.55
        far = far[torch.cdist(far, cloud).min(dim=1).values > 0.05]
        moved_far = (probability(fitted, far) - probability(initial, far)).abs()
        on_cloud_before = (probability(initial, cloud) - 0.5).abs().mean()
        on_cloud_after = (probability(fitted, cloud) - 0.5).abs().mean()
    assert len(far) > 3000
    assert float(moved_far.mean()) < 0.01 and float(moved_far.max()) < 0.5
    assert on_cloud_after < 0.5 * on_cloud_before


def test_reconstruct_fits_when_asked_or_when_the_model_says_so(points_model: Path, tmp_path):
    model = occrecon.load_model(str(points_model), "cpu")
    cloud = sphere(0.4, seed=1) * 3.0 + [1.0, 2.0, 3.0]
    plain = occrecon.reconstruct(model, "points", cloud)
    fitted = occrecon.reconstruct(model, "points", cloud, fit_steps=5)
    assert "encoding fitted to the input points (5 steps)" in fitted.notes and not any("fitted" in n for n in plain.notes)
    assert "fit" in fitted.timings and len(fitted.mesh.faces) > 0
    # Seeded: the same call gives the same mesh.
    again = occrecon.reconstruct(model, "points", cloud, fit_steps=5)
    np.testing.assert_array_equal(fitted.mesh.vertices, again.mesh.vertices)

    folder = Path(shutil.copytree(points_model, tmp_path / "fitting-model"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["generation"]["fit_steps"] = 4
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    configured = occrecon.load_model(str(folder), "cpu")
    assert "encoding fitted to the input points (4 steps)" in occrecon.reconstruct(configured, "points", cloud).notes
    assert not any("fitted" in n for n in occrecon.reconstruct(configured, "points", cloud, fit_steps=0).notes)


def test_the_model_card_says_how_the_model_reconstructs_by_default():
    from occrecon.registry import bundled_weights_dir
    from occrecon.training import model_card

    config = json.loads((bundled_weights_dir() / "convonet-points-synthetic" / "config.json").read_text(encoding="utf-8"))
    config["generation"].update(rotations=8, fit_steps=60, winding_prior=False)
    card = model_card(config)
    assert "under 7 random rotations" in card and "for 60 Adam steps" in card and "stay wrong" in card
    config["generation"].update(rotations=1, fit_steps=0)
    card = model_card(config)
    # (The threshold line may still name the reconstruction its sweep was run with.)
    assert "Reconstruction: a rotation ensemble" not in card and "Test-time fitting" not in card and "The test-time fitting" not in card



def test_fixed_bilinear_weights_replace_grid_sample_in_the_fit(monkeypatch):
    from occrecon import fitting

    model = occrecon.load_model("convonet-points-synthetic", "cpu")
    cloud = prepare_input("points", sphere(0.45, 3000) * [1.0, 0.6, 0.8], SPEC, seed=0).tensor
    initial = NetworkField(model, model.net.encode(cloud[None]))
    # Queries everywhere, the border of the planes included.
    queries = torch.cat([torch.rand(4000, 3) * 1.2 - 0.6, torch.tensor([[0.55, 0.55, 0.55], [-0.55, -0.55, -0.55], [0.55, -0.55, 0.0]])])
    member = {key: value[:1] for key, value in initial.encoding.items()}
    deltas = {key: torch.randn_like(value) for key, value in member.items()}
    fast = fitting._plane_decoder(model, member, queries)
    with torch.no_grad():
        direct = model.net.decode(queries[None], {key: member[key] + deltas[key] for key in member})[0]
        assert torch.allclose(fast(deltas), direct, atol=1e-3)
    # Networks the weights do not apply to keep grid_sample.
    assert fitting._plane_decoder(radius_model(0.3), torch.zeros(1, 1), queries) is None
    # The whole fit agrees with the grid_sample one.
    fitted = fit_to_points(initial, cloud.numpy(), threshold=0.5, options=FitOptions())
    monkeypatch.setattr(fitting, "_plane_decoder", lambda *args: None)
    reference = fit_to_points(initial, cloud.numpy(), threshold=0.5, options=FitOptions())
    with torch.no_grad():
        gap = (torch.sigmoid(fitted.decode(queries)) - torch.sigmoid(reference.decode(queries))).abs()
    assert float(gap.max()) < 0.01
