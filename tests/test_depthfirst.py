"""The depth-first image model (#23): point-map targets, the loss, the fitted camera, carving, the frame."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from occrecon import camera as cam
from occrecon.config import ModelConfig
from occrecon.data import cache, partial
from occrecon.data.pointmap import PointMapDataset, nearest_pixels, photometric, pointmap_target
from occrecon.errors import InvalidModelFolderError
from occrecon.nets import build_network
from occrecon.nets.pointmap import CARVED_LOGIT, DepthFirstNet, PointMapNet, aligned_l1, fit_perspective
from tests.tiny_models import TINY_CONFIGS, tiny_network


def _sphere_depth(size: int = 64, fov: float = 40.0, radius: float = 0.5, distance: float = 3.0) -> tuple[np.ndarray, cam.Camera]:
    """True depth of a sphere centred on the optical axis (OpenCV frame), by ray casting."""
    camera = cam.Camera.from_fov(fov, size)
    u, v = cam.pixel_centres(camera)
    d = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)
    # |t d - c|^2 = r^2 with c = (0, 0, distance): the nearer root, z = t.
    a = (d**2).sum(-1)
    b = -2 * distance
    disc = b**2 - 4 * a * (distance**2 - radius**2)
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)
    return t, camera


def test_pointmap_target_is_the_visible_surface_in_its_own_viewer_frame():
    depth, camera = _sphere_depth()
    target, mask = pointmap_target(depth, camera.matrix, 32)
    assert mask.shape == (32, 32) and target.shape == (3, 32, 32)
    rows, cols = nearest_pixels(64, 32), nearest_pixels(64, 32)
    assert np.array_equal(mask, depth[np.ix_(rows, cols)] > 0)
    pts = target[:, mask].T
    # The frame of the full-resolution visible surface: centred box, longest side 1 (the
    # subsampled points lie inside it); x right and y up: the top of the picture is +y.
    assert np.all(np.abs(pts) <= 0.5 + 1e-6) and pts[:, :2].max() > 0.45
    assert target[1, mask][: mask.sum() // 4].mean() > 0 > target[1, mask][-mask.sum() // 4 :].mean()
    # z towards the viewer: the centre of the sphere's cap is the nearest point, so the highest z.
    centre = target[2, 15:17, 15:17].mean()
    assert centre == pytest.approx(pts[:, 2].max(), abs=0.05)


def test_aligned_l1_ignores_scale_and_shift_only():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 8, 8)
    mask = torch.ones(2, 1, 8, 8)
    assert float(aligned_l1(2.0 * target + 0.3, target, mask)) < 1e-5
    assert float(aligned_l1(target * torch.tensor([1.0, 1.0, -1.0]).view(1, 3, 1, 1), target, mask)) > 0.1
    # Pixels outside the mask do not count.
    spoilt = target.clone()
    spoilt[:, :, :4] = 100.0
    half = torch.zeros(2, 1, 8, 8)
    half[:, :, 4:] = 1
    assert float(aligned_l1(spoilt, target, half)) < 1e-5


def test_fit_perspective_recovers_the_camera_of_a_point_map():
    rng = np.random.default_rng(0)
    f, cx, cy, depth = 150.0, 61.0, 66.0, 3.5
    pts = rng.uniform(-0.5, 0.5, (500, 3))
    w = depth - pts[:, 2]
    u, v = cx + f * pts[:, 0] / w, cy - f * pts[:, 1] / w
    fit = fit_perspective(torch.tensor(pts), torch.tensor(u), torch.tensor(v))
    assert fit is not None
    assert fit.f == pytest.approx(f, rel=0.1) and fit.cx == pytest.approx(cx, abs=1.0) and fit.cy == pytest.approx(cy, abs=1.0)
    pu, pv, front = fit.project(torch.tensor(pts))
    assert bool(front.all()) and float((pu - torch.tensor(u)).abs().max()) < 1.0


class _SpherePointMap(torch.nn.Module):
    """Stands in for a trained PointMapNet: the exact point map and mask of a sphere."""

    def __init__(self, size: int = 64):
        super().__init__()
        depth, camera = _sphere_depth(size)
        target, mask = pointmap_target(depth, camera.matrix, size)
        self.register_buffer("target", torch.from_numpy(target)[None])
        self.register_buffer("mask", torch.from_numpy(mask)[None, None])

    def forward(self, image):
        return self.target, torch.where(self.mask, 10.0, -10.0)


def _depthfirst_with_sphere() -> DepthFirstNet:
    return DepthFirstNet(_SpherePointMap(), tiny_network("points"), n_points=256, dilate=1).eval()


def test_depthfirst_carves_queries_outside_the_silhouette_and_keeps_the_rest():
    net = _depthfirst_with_sphere()
    with torch.no_grad():
        enc = net.encode(torch.zeros(1, 3, 64, 64))
        assert enc.camera is not None and enc.cloud.shape[1] == 3
        inside = torch.tensor([[[0.0, 0.0, 0.0], [0.1, -0.1, -0.3]]])
        outside = torch.tensor([[[0.54, 0.54, 0.0], [-0.54, 0.54, -0.4]]])  # the box corners the sphere's silhouette leaves empty
        raw = net.completion.decode(inside, enc.features)
        assert torch.equal(net.decode(inside, enc), raw)
        assert torch.all(net.decode(outside, enc) == CARVED_LOGIT)


def test_depthfirst_architecture_is_validated_and_builds():
    arch = {"method": "depthfirst", "pointmap": {"widths": [8, 8, 8, 8, 8]}, "completion": copy.deepcopy(TINY_CONFIGS["points"]["architecture"]), "n_points": 64}
    config = ModelConfig.from_dict({"name": "t", "task": "image", "architecture": arch, "input": {"kind": "image", "image_size": 64, "frame": "viewer"}})
    assert config.input.frame == "viewer" and config.to_dict()["input"]["frame"] == "viewer"
    net = build_network(arch)
    assert isinstance(net, DepthFirstNet) and isinstance(net.pointmap, PointMapNet)
    for broken, match in (
        ({**arch, "completion": arch}, "ONet or ConvONet"),
        ({**arch, "pointmap": {"widths": [8, 8]}}, "5 channel counts"),
        ({**arch, "pointmap": {"widths": [8, 8, 8, 8, 10**9]}}, "widths"),
        ({**arch, "completion": {**arch["completion"], "c_dim": 10**9}}, "c_dim"),
    ):
        with pytest.raises(InvalidModelFolderError, match=match):
            ModelConfig.from_dict({"name": "t", "task": "image", "architecture": broken, "input": {"kind": "image"}})
    with pytest.raises(InvalidModelFolderError, match="frame"):
        ModelConfig.from_dict({"name": "t", "task": "image", "architecture": arch, "input": {"kind": "image", "frame": "world"}})


def test_pointmap_net_shapes_and_rejects_odd_sizes():
    net = PointMapNet((8, 8, 8, 8, 8)).eval()
    with torch.no_grad():
        points, logits = net(torch.rand(2, 3, 64, 64))
    assert points.shape == (2, 3, 64, 64) and logits.shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.rand(1, 3, 50, 50))


def test_photometric_augmentation_is_seeded_and_keeps_the_picture():
    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:24, 8:24] = (120, 60, 30)
    a = photometric(image, np.random.default_rng(3))
    assert np.array_equal(a, photometric(image, np.random.default_rng(3)))
    assert a.shape == image.shape and a.dtype == np.uint8
    assert a[:4].mean() > 200 and a[12:20, 12:20].mean() < 170  # background stays light, the object dark


@pytest.fixture(scope="module")
def tiny_partial(tmp_path_factory):
    root = tmp_path_factory.mktemp("partial")
    spec = partial.PartialSpec(image_size=64, n_points=200, n_uniform=100, n_near=100)
    cache.build_partial_dataset(root, 4, 3, views=1, shard_size=4, workers=1, families=["bottle", "mug"], spec=spec)
    return root


def test_partial_items_keep_the_render_and_its_true_depth(tiny_partial):
    z = np.load(tiny_partial / "shard_00000.npz")
    assert z["image"].shape == (4, 64, 64, 3) and z["depth"].dtype == np.float16
    assert np.array_equal(z["depth"] > 0, z["mask"])
    ds = PointMapDataset(tiny_partial, size=32, shapes=[0, 1])
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["target"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert 0 < float(item["mask"].mean()) < 1


def test_pointmap_training_resumes_exactly(tiny_partial, tmp_path, monkeypatch):
    from occrecon import pointmap_training as pt

    monkeypatch.setattr(pt, "initial_network", lambda from_model, seed: (torch.manual_seed(seed), PointMapNet((8, 8, 8, 8, 8)))[1])
    base = dict(dataset=str(tiny_partial), batch_size=2, size=32, val_shapes=1, val_every=2, workers=0, from_model=None, threads=1)
    straight = pt.PointMapTrainConfig(out=str(tmp_path / "a"), steps=4, **base)
    pt.train_pointmap(straight, on_line=lambda _: None)
    interrupted = pt.PointMapTrainConfig(out=str(tmp_path / "b"), steps=4, **base)

    def stop(line: str) -> None:
        raise KeyboardInterrupt  # killed right after the first validation's checkpoint

    with pytest.raises(KeyboardInterrupt):
        pt.train_pointmap(interrupted, on_line=stop)
    with pytest.raises(Exception, match="resume"):
        pt.train_pointmap(interrupted, on_line=lambda _: None)
    pt.train_pointmap(interrupted, resume=True, on_line=lambda _: None)
    a = torch.load(tmp_path / "a" / pt.CHECKPOINT_NAME, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / pt.CHECKPOINT_NAME, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "b" / pt.STATE_NAME).read_text())["history"]
    assert [h["step"] for h in history] == [2, 4]


def test_partial_task_fine_tunes_a_points_model_into_a_completion_model(tmp_path, monkeypatch):
    from occrecon.loading import load_model
    from occrecon.training import TrainConfig, train
    from tests.tiny_models import save_tiny_model

    monkeypatch.setenv("OCCRECON_CACHE", str(tmp_path / "cache"))
    base = save_tiny_model("points", tmp_path / "base")
    config = TrainConfig(task="partial", out=str(tmp_path / "run"), steps=2, batch_size=2, n_query=64, n_shapes=2, val_shapes=1,
                         val_every=2, workers=0, views=1, from_model=str(base), device="cpu")
    folder = train(config)
    model = load_model(str(folder), device="cpu")
    assert model.task == "points" and model.config.name == "convonet-partial-synthetic"
    # One view is not a closed surface and its frame is not symmetric: no ensemble, no winding prior, no added noise.
    assert model.generation.rotations == 1 and not model.generation.winding_prior and model.input_spec.noise == 0.0
    assert "partial clouds" in model.config.training["data"]
    manifest = json.loads((tmp_path / "cache" / "datasets" / "partial-seed0-n3-v1" / "manifest.json").read_text())
    assert manifest["kind"] == "partial" and manifest["n_items"] == 3


class _ScaledTruth(torch.nn.Module):
    """A point-map 'network' that returns an item's true point map, scaled by 2 and shifted: right up to a similarity."""

    def __init__(self, depth, K, size):
        super().__init__()
        target, mask = pointmap_target(depth, K, size)
        self.register_buffer("target", 2.0 * torch.from_numpy(target)[None] + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1))
        self.register_buffer("mask", torch.from_numpy(mask)[None, None])

    def forward(self, image):
        return self.target, torch.where(self.mask, 10.0, -10.0)


def test_stage_two_carries_an_items_frame_onto_the_predicted_cloud(tiny_partial):
    from scipy.spatial import cKDTree

    from occrecon.data.predicted import align_to_prediction, clean_frame, queries_in_prediction
    from occrecon.nets.pointmap import visible_surface

    z = np.load(tiny_partial / "shard_00000.npz")
    depth, K = z["depth"][0].astype(np.float32), z["camera_K"][0]
    size = 32
    with torch.no_grad():
        points, pixels, _ = visible_surface(_ScaledTruth(depth, K, size), torch.zeros(1, 3, size, size))
    target, target_mask = pointmap_target(depth, K, size)
    cols, rows = (pixels.numpy() - 0.5).astype(np.int64).T
    alignment = align_to_prediction(points.numpy(), target[:, rows, cols].T)
    assert alignment.residual < 1e-5 and target_mask[rows, cols].all()
    # The item's own partial cloud (true depth, its own frame) lands on the predicted cloud.
    item_frame = cam.ViewerFrame(tuple(float(v) for v in z["frame_centre"][0]), float(z["frame_scale"][0]))
    carried = queries_in_prediction(z["inputs"][0], item_frame, clean_frame(depth, K), alignment)
    gap, _ = cKDTree(points.numpy()).query(carried)
    assert np.median(gap) < 0.03  # a 32-pixel point map's spacing is about 1/20 of the box


def test_stage_two_dataset_is_resumable_and_tied_to_its_weights(tiny_partial, tmp_path):
    from occrecon import pointmap_training as pt
    from occrecon.data.cache import PartialDataset

    torch.manual_seed(0)
    weights = tmp_path / "pointmap.safetensors"
    pt._save_weights(PointMapNet(), weights, {"size": 32})
    out = tmp_path / "predicted"
    manifest = pt.build_predicted_partial_dataset(tiny_partial, weights, out)
    assert manifest["inputs"]["size"] == 32 and len(manifest["inputs"]["predicted_by"]) == 64
    shard = np.load(out / "shard_00000.npz")
    assert shard["inputs"].shape == (4, 200, 3) and shard["points"].shape == (4, 200, 3)
    assert np.array_equal(shard["occ"], np.load(tiny_partial / "shard_00000.npz")["occ"])  # labels travel unchanged
    item = PartialDataset(out, n_query=50)[0]
    assert item["inputs"].shape == (200, 3) and item["points"].shape == (50, 3)
    before = (out / "shard_00000.npz").stat().st_mtime_ns
    pt.build_predicted_partial_dataset(tiny_partial, weights, out)  # complete: nothing redone
    assert (out / "shard_00000.npz").stat().st_mtime_ns == before
    # The completion trains on the folder as it is (no regeneration against the procedural manifest).
    from occrecon.training import TrainConfig, train
    from tests.tiny_models import save_tiny_model

    config = TrainConfig(task="partial", out=str(tmp_path / "run"), steps=2, batch_size=2, n_query=64, n_shapes=3, val_shapes=1,
                         val_every=2, workers=0, views=1, cache=str(out), from_model=str(save_tiny_model("points", tmp_path / "base")), device="cpu")
    assert (train(config) / "model.safetensors").is_file()
    torch.manual_seed(1)
    pt._save_weights(PointMapNet(), weights, {"size": 32})
    with pytest.raises(Exception, match="other weights"):
        pt.build_predicted_partial_dataset(tiny_partial, weights, out)
