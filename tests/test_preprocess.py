"""Preprocessing: canonical frames, subsampling, voxel resampling, image cut-out and framing."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from occrecon.errors import InputError
from occrecon.frames import FrameTransform
from occrecon.io.readers import PointCloud, VoxelGrid, read_image
from occrecon.preprocess import (
    DEFAULT_MARGIN,
    PreparedInput,
    normalize_points,
    prepare_image,
    prepare_input,
    prepare_points,
    prepare_voxels,
    resample_occupancy,
)

@pytest.fixture
def cloud() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.uniform(-1, 1, size=(2000, 3)) * [4.0, 1.5, 0.7] + [100.0, -20.0, 3.0]


# --------------------------------------------------------------------------- points


def test_normalize_maps_bbox_to_unit_cube_and_inverts(cloud):
    canon, tf = normalize_points(cloud)
    lo, hi = canon.min(axis=0), canon.max(axis=0)
    assert isinstance(tf, FrameTransform)
    np.testing.assert_allclose(hi - lo, np.ptp(cloud, axis=0) / np.ptp(cloud, axis=0).max(), rtol=1e-12)
    np.testing.assert_allclose(lo[0], -0.5, atol=1e-12)  # x is the longest side
    np.testing.assert_allclose(hi[0], 0.5, atol=1e-12)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)  # bbox centred
    np.testing.assert_allclose(tf.to_input(canon), cloud, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(tf.to_canonical(cloud), canon, atol=1e-14)
    np.testing.assert_allclose(tf.translation, (cloud.min(0) + cloud.max(0)) / 2)
    assert tf.scale == pytest.approx(np.ptp(cloud, axis=0).max())


def test_normalize_floor_alignment(cloud):
    canon, tf = normalize_points(cloud, align="floor")
    assert canon[:, 1].min() == pytest.approx(-0.5)
    np.testing.assert_allclose([canon[:, 0].min() + canon[:, 0].max(), canon[:, 2].min() + canon[:, 2].max()], 0.0, atol=1e-12)
    np.testing.assert_allclose(tf.to_input(canon), cloud, atol=1e-12)


def test_normalize_refuses_degenerate():
    with pytest.raises(InputError, match="identical"):
        normalize_points(np.ones((12, 3)), source="scan.ply")
    with pytest.raises(InputError, match="scan.ply"):
        normalize_points(np.ones((12, 3)), source="scan.ply")
    with pytest.raises(InputError, match="non-finite"):
        normalize_points(np.array([[0, 0, 0], [np.nan, 1, 1.0]]))
    with pytest.raises(InputError, match="no points"):
        normalize_points(np.zeros((0, 3)))
    with pytest.raises(InputError, match="precision"):
        normalize_points(np.array([[1e6, 0, 0], [1e6 + 1e-9, 0, 0]]))


def test_prepare_points_subsamples_without_replacement(cloud):
    prep = prepare_points(cloud, n_points=300, noise=0.0, seed=0)
    assert isinstance(prep, PreparedInput)
    assert prep.tensor.shape == (300, 3) and prep.tensor.dtype == torch.float32
    assert len(np.unique(prep.preview, axis=0)) == 300
    # Every network point is one of the canonical input points.
    canon, _ = normalize_points(cloud)
    d = np.abs(prep.preview[:, None, :] - canon[None, :, :]).max(axis=2).min(axis=1)
    assert d.max() < 1e-12
    np.testing.assert_allclose(prep.transform.to_input(prep.preview), cloud[np.argmin(
        np.abs(prep.preview[:, None, :] - canon[None]).max(axis=2), axis=1)], atol=1e-9)


def test_prepare_points_resamples_small_clouds_with_replacement(cloud):
    prep = prepare_points(cloud[:50], n_points=300, seed=1)
    assert prep.tensor.shape == (300, 3)
    assert len(np.unique(prep.preview, axis=0)) <= 50
    assert any("replacement" in n for n in prep.notes)


def test_prepare_points_keep_all_noise_and_seed(cloud):
    keep = prepare_points(cloud, n_points=None)
    assert keep.tensor.shape == (len(cloud), 3)
    a = prepare_points(cloud, n_points=3000, noise=0.005, seed=7)
    b = prepare_points(cloud, n_points=3000, noise=0.005, seed=7)
    torch.testing.assert_close(a.tensor, b.tensor)
    clean = prepare_points(cloud, n_points=3000, noise=0.0, seed=7)
    resid = (a.preview - clean.preview).ravel()
    assert resid.std() == pytest.approx(0.005, rel=0.05)  # std in canonical units
    assert any("noise" in n for n in a.notes)


def test_prepare_points_drops_nonfinite_and_reports(cloud):
    bad = cloud.copy()
    bad[:5, 0] = np.nan
    prep = prepare_points(bad, n_points=None)
    assert len(prep.tensor) == len(cloud) - 5
    assert "dropped 5 non-finite rows" in prep.notes
    pc = PointCloud(points=cloud, dropped_nonfinite=4, source="x.ply")
    assert "dropped 4 non-finite rows" in prepare_points(pc, n_points=10).notes


@pytest.mark.parametrize(
    "points, match",
    [
        (np.full((4, 3), np.nan), "non-finite"),
        (np.array([[1.0, 2.0, 3.0]]), "single point"),
        (np.tile([1.0, 2.0, 3.0], (12, 1)), "all 12 points are identical"),
        (np.zeros((5, 2)), "shape"),
    ],
)
def test_prepare_points_bad_arrays(points, match):
    with pytest.raises(InputError, match=match):
        prepare_points(points, n_points=10, source="scan.ply")


def test_prepare_points_metric_mode_keeps_coordinates(cloud):
    prep = prepare_points(cloud, n_points=None, normalize="none")
    np.testing.assert_allclose(prep.preview, cloud)
    assert prep.transform.scale == 1.0


# --------------------------------------------------------------------------- voxels


def test_downsample_64_to_32_preserves_occupancy():
    rng = np.random.default_rng(0)
    fine = rng.random((64, 64, 64)) < 0.002
    fine[63, 0, 17] = True
    coarse = resample_occupancy(fine, 32)
    expected = fine.reshape(32, 2, 32, 2, 32, 2).any(axis=(1, 3, 5))
    np.testing.assert_array_equal(coarse, expected)
    assert coarse[31, 0, 8]
    # Every occupied fine voxel lies in an occupied coarse voxel, and no coarse voxel is invented.
    assert coarse[tuple((np.argwhere(fine) // 2).T)].all()
    assert coarse.sum() <= fine.sum()


def test_prepare_voxels_64_cube_tensor_and_note():
    fine = np.zeros((64, 64, 64), dtype=bool)
    fine[10:50, 20:21, 5:60] = True  # a one-voxel-thin plate must survive
    prep = prepare_voxels(fine, resolution=32)
    assert prep.tensor.shape == (32, 32, 32) and prep.tensor.dtype == torch.float32
    assert set(np.unique(prep.tensor.numpy())) == {0.0, 1.0}
    np.testing.assert_array_equal(prep.preview, fine.reshape(32, 2, 32, 2, 32, 2).any(axis=(1, 3, 5)))
    assert any("64³ → 32³" in n for n in prep.notes)


def test_resample_non_integer_and_upsampling():
    grid = np.zeros((48, 48, 48), dtype=bool)
    grid[47, 47, 47] = True
    grid[0, 24, 1] = True
    out = resample_occupancy(grid, 32)
    # Fine cell 1 spans [1, 2] in fine units, overlapping coarse cells 0 ([0, 1.5]) and 1 ([1.5, 3]).
    assert out[31, 31, 31] and out[0, 16, 0] and out[0, 16, 1] and out.sum() == 3
    small = np.random.default_rng(1).random((16, 16, 16)) < 0.3
    up = resample_occupancy(small, 32)
    np.testing.assert_array_equal(up, small.repeat(2, 0).repeat(2, 1).repeat(2, 2))


def test_binvox_frame_cell_centres():
    """Voxel i centre: canonical -0.5 + (i+0.5)/32 <-> world translate + (i+0.5)/dim*scale."""
    occ = np.zeros((32, 32, 32), dtype=bool)
    occ[3, 17, 30] = True
    t, s = np.array([-0.3, 0.1, 2.0]), 0.66
    grid = VoxelGrid(occ, t, s, "chair.binvox", "binvox")
    prep = prepare_voxels(grid, resolution=32)
    i = np.array([[3, 17, 30], [0, 0, 0], [31, 31, 31]])
    canonical = -0.5 + (i + 0.5) / 32
    np.testing.assert_allclose(prep.transform.to_input(canonical), t + (i + 0.5) / 32 * s, atol=1e-12)
    # The canonical unit cube is exactly the grid's outer boundary.
    np.testing.assert_allclose(prep.transform.to_input(np.array([[-0.5] * 3, [0.5] * 3])), [t, t + s], atol=1e-12)


def test_binvox_frame_after_resampling_and_linspace():
    occ = np.zeros((64, 64, 64), dtype=bool)
    occ[5, 6, 7] = True
    t, s = np.array([1.0, 2.0, 3.0]), 4.0
    grid = VoxelGrid(occ, t, s, "big.binvox", "binvox")
    centre = prepare_voxels(grid, resolution=32, convention="cell_centre").transform
    lin = prepare_voxels(grid, resolution=32, convention="linspace").transform
    j = np.array([[2, 3, 3], [0, 0, 0], [31, 31, 31]])
    world = t + (j + 0.5) / 32 * s  # coarse cell centres
    np.testing.assert_allclose(centre.to_input(-0.5 + (j + 0.5) / 32), world, atol=1e-12)
    np.testing.assert_allclose(lin.to_input(-0.5 + j / 31), world, atol=1e-12)  # ConvONet i/31 - 0.5


def test_npy_grid_index_frame_and_padding():
    occ = np.zeros((32, 32, 32), dtype=bool)
    occ[4, 5, 6] = True
    tf = prepare_voxels(occ).transform
    # Plain arrays live in the voxel index frame: cell i spans [i, i+1], centre i + 0.5.
    np.testing.assert_allclose(tf.to_input(-0.5 + (np.array([[4, 5, 6]]) + 0.5) / 32), [[4.5, 5.5, 6.5]], atol=1e-12)
    flat = np.zeros((32, 16, 32), dtype=bool)
    flat[1, 2, 3] = True
    prep = prepare_voxels(flat)
    k = np.argwhere(prep.preview)[0]  # padded (centred) cell
    assert tuple(k) == (1, 2 + 8, 3)
    np.testing.assert_allclose(prep.transform.to_input(-0.5 + (k[None] + 0.5) / 32), [[1.5, 2.5, 3.5]], atol=1e-12)
    assert any("padded" in n for n in prep.notes)


def test_prepare_voxels_bad():
    with pytest.raises(InputError, match="no occupied"):
        prepare_voxels(np.zeros((8, 8, 8)), source="empty.npy")
    with pytest.raises(InputError, match="3-D"):
        prepare_voxels(np.zeros((8, 8)))


# --------------------------------------------------------------------------- images


def _object_bbox(img: np.ndarray, tol: int = 40) -> tuple[int, int, int, int]:
    """Bounding box (top, bottom, left, right; inclusive) of the non-white pixels."""
    ys, xs = np.nonzero((255 - img.astype(int)).max(axis=2) > tol)
    return ys.min(), ys.max(), xs.min(), xs.max()


def _rgba_rectangle(garbage_rgb=(0, 255, 0)) -> np.ndarray:
    """A 60x30 red rectangle, off-centre on a 200x150 transparent canvas whose
    transparent pixels store green (the colour upstream's demo would leak)."""
    arr = np.zeros((150, 200, 4), dtype=np.uint8)
    arr[..., :3] = garbage_rgb
    arr[20:50, 120:180] = [220, 20, 20, 255]
    return arr


def _assert_centred_with_margin(img: np.ndarray, margin: float = DEFAULT_MARGIN):
    size = img.shape[0]
    top, bottom, left, right = _object_bbox(img)
    long_side = max(bottom - top + 1, right - left + 1)
    assert long_side == pytest.approx((1 - 2 * margin) * size, abs=3)
    assert (top + bottom) / 2 == pytest.approx((size - 1) / 2, abs=1.5)
    assert (left + right) / 2 == pytest.approx((size - 1) / 2, abs=1.5)
    # Everything outside the object is white.
    outside = np.ones(img.shape[:2], dtype=bool)
    outside[max(top - 2, 0) : bottom + 3, max(left - 2, 0) : right + 3] = False
    assert (img[outside] >= 250).all()


def test_rgba_cutout_is_centred_on_white():
    prep = prepare_image(Image.fromarray(_rgba_rectangle(), "RGBA"), size=224)
    assert prep.tensor.shape == (3, 224, 224) and prep.tensor.dtype == torch.float32
    assert 0.0 <= prep.tensor.min() and prep.tensor.max() <= 1.0
    img = np.asarray(prep.preview)
    assert prep.preview.size == (224, 224) and prep.preview.mode == "RGB"
    _assert_centred_with_margin(img)
    # No leaked green from transparent pixels; the object stays red.
    assert (img[..., 1].astype(int) - img[..., 0].astype(int)).max() <= 0
    cy, cx = 112, 112
    assert tuple(img[cy, cx]) == pytest.approx((220, 20, 20), abs=3)
    np.testing.assert_allclose(prep.tensor.numpy(), np.asarray(prep.preview).transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert prep.transform.scale == 1.0 and not np.any(prep.transform.translation)


def test_border_background_is_removed():
    arr = np.full((150, 200, 3), (90, 120, 160), dtype=np.uint8)  # flat blue-grey studio backdrop
    arr[40:120, 30:70] = (200, 180, 40)
    noise = np.random.default_rng(0).integers(-4, 5, size=arr.shape)
    arr = np.clip(arr.astype(int) + noise, 0, 255).astype(np.uint8)
    prep = prepare_image(arr, size=128)
    _assert_centred_with_margin(np.asarray(prep.preview))
    assert any("background" in n for n in prep.notes)


def _busy_photo(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A red figure (disc and post) on striped, noisy foliage: (H, W, 3) uint8 and its true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    foliage = np.stack(
        [90 + 40 * np.sin(xx / 5.0) + 20 * np.sin(yy / 3.0), 120 + 30 * np.cos(yy / 7.0), 60 + 20 * np.sin((xx + yy) / 4.0)], axis=-1
    )
    truth = (((yy - 120) / 80.0) ** 2 + ((xx - 160) / 60.0) ** 2 < 1) | ((np.abs(xx - 160) < 12) & (yy > 40) & (yy < 220))
    photo = foliage + rng.normal(0.0, 12.0, foliage.shape)
    photo[truth] = np.array([200.0, 60.0, 70.0]) + rng.normal(0.0, 10.0, (int(truth.sum()), 3))
    return np.clip(photo, 0, 255).astype(np.uint8), truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_separates_an_object_from_foliage_that_colour_distance_cannot():
    from occrecon.preprocess.image import _matte_from_border, estimate_background
    from occrecon.preprocess.segment import grabcut, grabcut_photo

    photo, truth = _busy_photo()
    border = np.ones(truth.shape, dtype=bool)
    border[10:-10, 10:-10] = False
    assert _iou(grabcut(photo, border), truth) > 0.97
    assert _iou(grabcut_photo(photo), truth) > 0.95  # cut on a 160 px copy, upsampled
    np.testing.assert_array_equal(grabcut_photo(photo), grabcut_photo(photo))  # seeded: reproducible
    # What the colour distance alone makes of it (the matte before GrabCut): far from the figure.
    colours, threshold, _ = estimate_background(photo)
    assert threshold == 96.0  # the border's colours spread as far as the matte allows: a busy backdrop
    by_colour = np.max([np.abs(photo.astype(float) - c).max(axis=-1) for c in colours], axis=0) > threshold
    assert _iou(by_colour, truth) < 0.8
    notes: list[str] = []
    fg, weights = _matte_from_border(photo, None, notes)
    assert _iou(fg, truth) > 0.95 and any("GrabCut" in note for note in notes)
    assert weights.shape == truth.shape and set(np.unique(weights)) <= {0.0, 1.0}


def test_busy_background_photo_is_cut_out_and_centred():
    photo, truth = _busy_photo(seed=2)
    prep = prepare_image(photo, size=128)
    _assert_centred_with_margin(np.asarray(prep.preview))
    assert any("GrabCut" in note for note in prep.notes)


def test_letterboxed_busy_photo_is_cut_inside_its_bars():
    from occrecon.preprocess.segment import grabcut_photo

    photo, truth = _busy_photo(seed=3)
    # Black bars above and below, as a wide photo padded to a square: the foliage is background all the same.
    boxed = np.zeros((400, 320, 3), dtype=np.uint8)
    boxed[80:320] = photo
    framed_truth = np.zeros((400, 320), dtype=bool)
    framed_truth[80:320] = truth
    assert _iou(grabcut_photo(boxed), framed_truth) > 0.95
    assert any("GrabCut" in note for note in prepare_image(boxed, size=128).notes)


def test_grabcut_without_room_to_cut_returns_the_starting_labels():
    from occrecon.preprocess.segment import grabcut

    flat = np.full((20, 20, 3), 128, dtype=np.uint8)
    everything = np.ones((20, 20), dtype=bool)
    assert not grabcut(flat, everything).any()


def test_mask_overrides_and_margin_zero():
    arr = np.full((100, 100, 3), 255, dtype=np.uint8)
    arr[10:30, 10:90] = (0, 0, 200)  # an unwanted object
    arr[50:90, 40:60] = (0, 150, 0)  # the wanted one
    mask = np.zeros((100, 100), dtype=bool)
    mask[50:90, 40:60] = True
    prep = prepare_image(arr, size=64, mask=mask, margin=0.0)
    img = np.asarray(prep.preview)
    blue = (img[..., 2].astype(int) - img[..., 0]) > 80
    assert not blue.any()  # the unmasked blue object is gone
    top, bottom, _, _ = _object_bbox(img)
    assert top <= 1 and bottom >= 62  # margin 0: the object's long side fills the frame
    with pytest.raises(InputError, match="mask is"):
        prepare_image(arr, mask=np.ones((10, 10), bool), source="photo.jpg")


def test_float_array_and_render_size():
    arr = np.ones((80, 120, 3), dtype=np.float32)
    arr[20:60, 30:50] = 0.0
    prep = prepare_image(arr, size=224, render_size=137)
    assert prep.preview.size == (224, 224)
    _assert_centred_with_margin(np.asarray(prep.preview))


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((20, 20, 4), dtype=np.uint8), "fully transparent"),
        (np.full((20, 20, 3), 128, dtype=np.uint8), "found no object"),
        (np.full((20, 20, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((20, 20, 5), dtype=np.uint8), "shape"),
    ],
)
def test_bad_images_raise(image, match):
    with pytest.raises(InputError, match=match):
        prepare_image(image, source="photo.png")


def test_fully_transparent_png_names_file(tmp_path):
    path = tmp_path / "ghost.png"
    Image.new("RGBA", (32, 32), (255, 0, 0, 0)).save(path)
    with pytest.raises(InputError, match="ghost.png: image is fully transparent"):
        prepare_input("image", path, {"kind": "image", "image_size": 224})


# --------------------------------------------------------------------------- prepare_input


def test_prepare_input_dispatch_from_files(tmp_path, cloud):
    Image.fromarray(_rgba_rectangle(), "RGBA").save(tmp_path / "cut.png")
    img = prepare_input("image", tmp_path / "cut.png", {"kind": "image", "image_size": 224})
    assert img.tensor.shape == (3, 224, 224)

    np.save(tmp_path / "cloud.npy", cloud)
    pts = prepare_input("points", str(tmp_path / "cloud.npy"), {"kind": "points", "n_points": 3000, "noise": 0.005}, seed=3)
    assert pts.tensor.shape == (3000, 3)
    assert np.abs(pts.preview).max() < 0.5 + 0.05

    occ = np.zeros((64, 64, 64), dtype=bool)
    occ[10:40, 10:40, 10:40] = True
    np.save(tmp_path / "grid.npy", occ)
    vox = prepare_input("voxels", tmp_path / "grid.npy", {"kind": "voxels", "resolution": 32, "convention": "linspace"})
    assert vox.tensor.shape == (32, 32, 32)

    mask = np.zeros((150, 200), dtype=bool)
    mask[20:50, 120:180] = True
    masked = prepare_input("image", tmp_path / "cut.png", {"kind": "image"}, mask=mask)
    assert "object taken from the mask" in masked.notes


def test_prepare_input_kind_mismatch_and_unknown(tmp_path, cloud):
    np.save(tmp_path / "cloud.npy", cloud)
    with pytest.raises(InputError, match="cloud.npy: this model takes image input, not points"):
        prepare_input("points", tmp_path / "cloud.npy", {"kind": "image", "image_size": 224})
    with pytest.raises(ValueError):
        prepare_input("mesh", tmp_path / "cloud.npy", {})


# --------------------------------------------------------------------------- shared eval data (skip if absent)


def test_default_margin_matches_shapenet_renders(eval_dir):
    """The Choy renders ONet was trained on: the object's longer side fills ~60 % of the frame."""
    fractions = []
    for path in sorted((eval_dir / "renders").glob("0*.jpg")):
        img = np.asarray(read_image(path))
        top, bottom, left, right = _object_bbox(img, tol=25)
        fractions.append(max(bottom - top + 1, right - left + 1) / img.shape[1])
    assert fractions, "no renders"
    assert (1 - np.median(fractions)) / 2 == pytest.approx(DEFAULT_MARGIN, abs=0.03)


def test_eval_render_and_cutouts_are_framed(eval_dir):
    for path in [eval_dir / "renders" / "00.jpg", eval_dir / "photos" / "banana__image_rgba.png", eval_dir / "photos" / "rembg_car-1.out.png"]:
        prep = prepare_input("image", path, {"kind": "image", "image_size": 224})
        img = np.asarray(prep.preview)
        top, bottom, left, right = _object_bbox(img, tol=25)
        assert max(bottom - top + 1, right - left + 1) == pytest.approx(0.6 * 224, abs=6)
        assert img[:5].min() >= 245 and img[-5:].min() >= 245  # white frame


def test_eval_photo_with_mask(eval_dir):
    photos = eval_dir / "photos"
    prep = prepare_input("image", photos / "teddy_bear__image.png", {"kind": "image"}, mask=photos / "teddy_bear__mask.png")
    assert prep.tensor.shape == (3, 224, 224) and "object taken from the mask" in prep.notes


def test_eval_scan_and_binvox_prepare(eval_dir):
    scan = prepare_input("points", eval_dir / "formats" / "office1.pcd", {"kind": "points", "n_points": 10000, "noise": 0.005})
    assert scan.tensor.shape == (10000, 3) and any("non-finite" in n for n in scan.notes)
    vox = prepare_input("voxels", eval_dir / "voxels" / "chair_model.binvox", {"kind": "voxels", "resolution": 32})
    assert vox.tensor.sum() > 0 and vox.notes == []
