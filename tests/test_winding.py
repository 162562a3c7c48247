"""The winding-number prior: oriented normals, point areas, winding numbers and their place in the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import occrecon
from occrecon.fitting import FitOptions, fit_to_points
from occrecon.field import NetworkField, WithWindingPrior
from occrecon.winding import PriorOptions, WindingPrior, point_areas, signed_normals, winding_prior
from test_fitting import radius_model, sphere


def torus(major: float, minor: float, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points and outward normals spread over a torus about the y axis (area-uniform by rejection)."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, (2, count * 3))
    keep = rng.uniform(0, 1, count * 3) < (major + minor * np.cos(v)) / (major + minor)
    u, v = u[keep][:count], v[keep][:count]
    normals = np.stack([np.cos(v) * np.cos(u), np.sin(v), np.cos(v) * np.sin(u)], axis=1)
    centres = np.stack([major * np.cos(u), np.zeros_like(u), major * np.sin(u)], axis=1)
    return centres + minor * normals, normals


def prior_of(points: np.ndarray, normals: np.ndarray) -> WindingPrior:
    weighted = normals * point_areas(points)[:, None]
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return WindingPrior(as_tensor(points), as_tensor(weighted), release=0.015, cap=0.02)


def test_point_areas_add_up_to_the_surface_area():
    assert point_areas(sphere(0.3, 4000)).sum() == pytest.approx(4 * np.pi * 0.3**2, rel=0.1)
    points, _ = torus(0.3, 0.1, 4000)
    assert point_areas(points).sum() == pytest.approx(4 * np.pi**2 * 0.3 * 0.1, rel=0.1)


def test_each_normal_takes_its_sign_from_the_hint():
    points, truth = torus(0.3, 0.1, 3000)
    hint = truth + np.random.default_rng(1).normal(scale=0.3, size=truth.shape)  # rough, but on the right side
    normals = signed_normals(points, hint)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert np.mean(np.sum(normals * truth, axis=1) > 0.9) > 0.97
    # Where the hint is wrong, so is the sign: the hint decides, point by point.
    flipped = np.arange(len(points)) % 4 == 0
    normals = signed_normals(points, np.where(flipped[:, None], -truth, truth))
    assert np.all(np.sum(normals * truth, axis=1)[flipped] < 0) and np.all(np.sum(normals * truth, axis=1)[~flipped] > 0)


def test_the_winding_number_follows_topology():
    points, normals = torus(0.3, 0.1, 3000)
    prior = prior_of(points, normals)
    queries = torch.tensor([[0.3, 0.0, 0.0], [-0.3, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0.5, 0.0, 0.0]])
    winding = prior.winding_numbers(queries).numpy()
    np.testing.assert_allclose(winding, [1, 1, 0, 0, 0], atol=0.05)  # in the tube; in the hole, above it, outside


def test_the_winding_sum_matches_a_direct_float64_sum():
    points, normals = torus(0.3, 0.1, 1500)
    weighted = normals * point_areas(points)[:, None]
    queries = np.random.default_rng(2).uniform(-0.55, 0.55, (700, 3))  # more than one block of queries
    offsets = points[None] - queries[:, None]
    distance = np.linalg.norm(offsets, axis=2)
    expected = np.einsum("mnk,nk->mn", offsets, weighted) / np.maximum(distance, 0.01) ** 3
    winding, squared = prior_of(points, normals)._evaluate(torch.as_tensor(queries, dtype=torch.float32))
    np.testing.assert_allclose(winding.numpy(), expected.sum(axis=1) / (4 * np.pi), atol=2e-3)
    np.testing.assert_allclose(squared.numpy(), distance.min(axis=1) ** 2, atol=1e-5)


def test_the_prior_is_differentiable_for_refinement():
    points, normals = torus(0.3, 0.1, 1500)
    prior = prior_of(points, normals)
    queries = torch.tensor([[0.36, 0.02, 0.0], [0.0, 0.05, 0.24]], dtype=torch.float64)
    prior = WindingPrior(prior.points.double(), prior.weighted_normals.double(), prior.release, prior.cap)
    q = queries.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(prior.logits(q).sum(), q)
    step = 1e-6
    for axis in range(3):
        shift = torch.zeros(3, dtype=torch.float64)
        shift[axis] = step
        numeric = (prior.logits(queries + shift) - prior.logits(queries - shift)) / (2 * step)
        np.testing.assert_allclose(gradient[:, axis].numpy(), numeric.numpy(), rtol=1e-4, atol=1e-6)
    assert gradient.abs().max() > 1.0


def test_the_prior_fades_out_on_the_points_and_is_capped():
    points, normals = torus(0.3, 0.1, 3000)
    prior = prior_of(points, normals)
    cap = np.log(0.98 / 0.02)
    logits = prior.logits(torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])).numpy()
    assert logits[0] > 0.9 * cap and logits[1] < -0.9 * cap and logits[2] < -0.9 * cap
    assert np.all(np.abs(logits) <= cap + 1e-4)
    on_points = prior.logits(torch.as_tensor(points[:200], dtype=torch.float32)).abs()
    assert float(on_points.max()) < 0.1 * cap


def test_the_prior_takes_its_normals_from_the_network():
    # The radius model's field is a ball: its outward direction is radial, so the normals point out.
    model = radius_model(guess=0.3)
    encoding = NetworkField(model, model.net.encode(torch.zeros(1, 1, 3)))
    prior = winding_prior(encoding, sphere(0.3, 2000))
    inside, outside = prior.winding_numbers(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.45, 0.0]])).numpy()
    assert inside == pytest.approx(1.0, abs=0.05) and outside == pytest.approx(0.0, abs=0.05)
    # A large cloud gives a subset of max_points points.
    assert len(winding_prior(encoding, sphere(0.3, 5000), PriorOptions(max_points=1000)).points) == 1000


def test_the_prior_adds_to_the_field_and_survives_the_fit():
    # A network that guesses a ball too big: away from the points the prior pulls the field to the truth.
    model = radius_model(guess=0.4)
    cloud = sphere(0.3, 2000)
    encoding = NetworkField(model, model.net.encode(torch.zeros(1, 1, 3)))
    wrapped = WithWindingPrior(encoding, winding_prior(encoding, cloud))
    between = torch.tensor([[0.36, 0.0, 0.0]])  # outside the cloud's ball, inside the network's
    with torch.no_grad():
        assert float(encoding.decode(between)) > 0 > float(wrapped.decode(between))
    fitted = fit_to_points(wrapped, cloud, threshold=0.5, options=FitOptions(steps=5))
    assert isinstance(fitted, WithWindingPrior) and fitted.prior is wrapped.prior
    assert not torch.equal(fitted.base.encoding, encoding.encoding)


def test_reconstruct_adds_the_prior_when_asked_or_when_the_model_says_so(points_model: Path, tmp_path):
    model = occrecon.load_model(str(points_model), "cpu")
    cloud = sphere(0.4, seed=1) * 3.0 + [1.0, 2.0, 3.0]
    plain = occrecon.reconstruct(model, "points", cloud)
    with_prior = occrecon.reconstruct(model, "points", cloud, winding=True, rotations=2, fit_steps=3)
    assert any(note.startswith("winding-number prior of the input points") for note in with_prior.notes)
    assert not any("winding" in note for note in plain.notes)
    assert "prior" in with_prior.timings and len(with_prior.mesh.faces) > 0
    again = occrecon.reconstruct(model, "points", cloud, winding=True, rotations=2, fit_steps=3)
    np.testing.assert_array_equal(with_prior.mesh.vertices, again.mesh.vertices)
    folder = Path(shutil.copytree(points_model, tmp_path / "prior-model"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["generation"]["winding_prior"] = True
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    configured = occrecon.load_model(str(folder), "cpu")
    assert any("winding" in note for note in occrecon.reconstruct(configured, "points", cloud).notes)
    assert not any("winding" in note for note in occrecon.reconstruct(configured, "points", cloud, winding=False).notes)


def test_the_model_card_names_the_prior():
    from occrecon.registry import bundled_weights_dir
    from occrecon.training import model_card

    config = json.loads((bundled_weights_dir() / "convonet-points-synthetic" / "config.json").read_text(encoding="utf-8"))
    assert config["generation"]["winding_prior"] is True
    card = model_card(config)
    assert "Winding-number prior by default" in card and "left to the winding-number prior" in card and "erodes them" in card
    config["generation"]["winding_prior"] = False
    card = model_card(config)
    assert "Winding-number prior by default" not in card and "left to the winding-number prior" not in card and "erodes them" not in card
