"""Readers: every format round-trips from files written here; bad input raises InputError."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occrecon.errors import InputError
from occrecon.io import readers
from occrecon.io.readers import (
    IMAGE_SUFFIXES,
    POINT_SUFFIXES,
    VOXEL_SUFFIXES,
    PointCloud,
    VoxelGrid,
    read_image,
    read_mask,
    read_points,
    read_voxels,
)

@pytest.fixture
def cloud() -> np.ndarray:
    """(500, 3) float64 cloud with distinct rows, off-centre and not unit-sized."""
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, size=(500, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]


def raises_input_error(path: Path | str, fn, *args) -> InputError:
    """Call fn and check it raises InputError naming the file in one line."""
    with pytest.raises(InputError) as info:
        fn(*args)
    msg = str(info.value)
    assert Path(path).name in msg
    assert "\n" not in msg
    return info.value


# --------------------------------------------------------------------------- point clouds


def test_suffix_tables_are_lower_case_with_dot():
    for table in (IMAGE_SUFFIXES, POINT_SUFFIXES, VOXEL_SUFFIXES):
        assert all(s.startswith(".") and s == s.lower() for s in table)
    assert {".ply", ".pcd", ".xyz", ".pts", ".txt", ".npy", ".npz", ".obj", ".off", ".stl", ".las", ".laz"} <= set(POINT_SUFFIXES)
    assert set(VOXEL_SUFFIXES) == {".binvox", ".npy", ".npz"}


@pytest.mark.parametrize("ascii_", [False, True])
def test_ply_open3d_round_trip(tmp_path, cloud, ascii_):
    import open3d as o3d

    path = tmp_path / "scan.ply"
    o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud)), write_ascii=ascii_)
    pc = read_points(path)
    assert isinstance(pc, PointCloud)
    assert pc.points.dtype == np.float64 and pc.points.shape == cloud.shape
    # open3d writes ascii PLY with 6 significant digits.
    np.testing.assert_allclose(pc.points, cloud, rtol=1e-5 if ascii_ else 1e-6)
    assert pc.dropped_nonfinite == 0 and pc.source.endswith("scan.ply")


def test_ply_mesh_vertices_via_trimesh(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(2, 1, 0.5))
    path = tmp_path / "box.ply"
    box.export(path)
    pc = read_points(path)
    np.testing.assert_allclose(np.sort(pc.points, axis=0), np.sort(box.vertices, axis=0))


@pytest.mark.parametrize("compressed", [False, True])
def test_pcd_round_trip(tmp_path, cloud, compressed):
    import open3d as o3d

    path = tmp_path / "scan.pcd"
    o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud)), compressed=compressed)
    np.testing.assert_allclose(read_points(path).points, cloud, rtol=1e-6)


def test_nonfinite_rows_dropped_and_counted(tmp_path, cloud):
    import open3d as o3d

    bad = cloud.copy()
    bad[[3, 7, 9], [0, 1, 2]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "holes.ply"
    o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(bad)))
    pc = read_points(path)
    assert pc.dropped_nonfinite == 3 and len(pc.points) == len(cloud) - 3
    assert np.isfinite(pc.points).all()


def _write_text(path: Path, rows: np.ndarray, sep: str = " ", header: str = "") -> Path:
    body = "\n".join(sep.join(f"{v:.9g}" for v in row) for row in rows)
    path.write_text(header + body + "\n", encoding="utf-8")
    return path


def test_xyz_plain(tmp_path, cloud):
    pc = read_points(_write_text(tmp_path / "a.xyz", cloud))
    np.testing.assert_allclose(pc.points, cloud, rtol=1e-8)


def test_xyz_header_and_extra_columns(tmp_path, cloud):
    extra = np.hstack([cloud, np.ones((len(cloud), 3)) * [0.1, 0.2, 0.3], np.full((len(cloud), 1), 255)])
    header = "// X Y Z Nx Ny Nz Intensity\n# exported by a scanner\n\n"
    pc = read_points(_write_text(tmp_path / "b.xyz", extra, header=header))
    np.testing.assert_allclose(pc.points, cloud, rtol=1e-8)


def test_pts_with_count_line(tmp_path, cloud):
    rows = np.hstack([cloud, np.tile([12, 200, 100, 50], (len(cloud), 1))])
    pc = read_points(_write_text(tmp_path / "c.pts", rows, header=f"{len(cloud)}\n"))
    np.testing.assert_allclose(pc.points, cloud, rtol=1e-8)


def test_txt_comma_separated_crlf_blank_lines(tmp_path, cloud):
    body = "x,y,z\r\n" + "\r\n".join(",".join(f"{v:.9g}" for v in r) for r in cloud[:10]) + "\r\n\r\n"
    body += "\r\n".join(",".join(f"{v:.9g}" for v in r) for r in cloud[10:]) + "\r\n"
    path = tmp_path / "d.txt"
    path.write_bytes(body.encode())
    np.testing.assert_allclose(read_points(path).points, cloud, rtol=1e-8)


def test_xyz_nan_rows_counted(tmp_path, cloud):
    path = _write_text(tmp_path / "e.xyz", cloud)
    path.write_text(path.read_text(encoding="utf-8") + "nan nan nan\n1 inf 2\n")
    pc = read_points(path)
    assert pc.dropped_nonfinite == 2 and len(pc.points) == len(cloud)


def test_text_parsing_is_vectorised(tmp_path, monkeypatch):
    """A 1M-row file goes through ONE np.fromstring call, never loadtxt/genfromtxt or per-row parsing."""
    block = np.random.default_rng(0).uniform(-5, 5, size=(1000, 6)).round(4)
    text = "\n".join(" ".join(f"{v:.4f}" for v in r) for r in block) + "\n"
    path = tmp_path / "big.xyz"
    path.write_text("1000000\n" + text * 1000, encoding="utf-8")

    def forbidden(*a, **k):
        raise AssertionError("slow parser used")

    calls = []
    real = np.fromstring

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(np, "loadtxt", forbidden)
    monkeypatch.setattr(np, "genfromtxt", forbidden)
    monkeypatch.setattr(readers, "_first_bad_row", forbidden)  # the per-line slow path
    monkeypatch.setattr(np, "fromstring", spy)
    pc = read_points(path)
    assert calls == [1]
    assert pc.points.shape == (1_000_000, 3)
    np.testing.assert_allclose(pc.points[-1000:], block[:, :3])


@pytest.mark.parametrize("shape", [(200, 3), (200, 7)])
def test_npy_points(tmp_path, shape):
    arr = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    path = tmp_path / "p.npy"
    np.save(path, arr)
    np.testing.assert_allclose(read_points(path).points, arr[:, :3])


def test_npz_points_key_and_float16(tmp_path, cloud):
    """Upstream pointcloud.npz: float16 'points' plus normals/loc/scale."""
    path = tmp_path / "pointcloud.npz"
    np.savez(path, points=cloud.astype(np.float16), normals=np.zeros_like(cloud), loc=np.zeros(3), scale=1.0)
    pc = read_points(path)
    np.testing.assert_allclose(pc.points, cloud.astype(np.float16).astype(np.float64))


def test_npz_single_array_any_key(tmp_path, cloud):
    path = tmp_path / "other.npz"
    np.savez(path, xyz_data=cloud)
    np.testing.assert_allclose(read_points(path).points, cloud)


@pytest.mark.parametrize("suffix", [".obj", ".off", ".stl"])
def test_mesh_files_give_vertices(tmp_path, suffix):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=1, radius=2.0)
    mesh.apply_translation([1.0, 2.0, 3.0])
    path = tmp_path / f"ico{suffix}"
    mesh.export(path)
    pts = read_points(path).points
    # STL repeats triangle corners; the reader merges exact duplicates.
    uniq = np.unique(pts.round(5), axis=0)
    np.testing.assert_allclose(uniq, np.unique(mesh.vertices.round(5), axis=0), atol=1e-5)


def test_las_laz_round_trip(tmp_path, cloud):
    laspy = pytest.importorskip("laspy")
    for suffix in (".las", ".laz"):
        if suffix == ".laz":
            pytest.importorskip("lazrs")
        header = laspy.LasHeader(point_format=3, version="1.2")
        header.scales = np.array([1e-4, 1e-4, 1e-4])
        header.offsets = cloud.min(axis=0)
        las = laspy.LasData(header)
        las.x, las.y, las.z = cloud[:, 0], cloud[:, 1], cloud[:, 2]
        path = tmp_path / f"scan{suffix}"
        las.write(str(path))
        np.testing.assert_allclose(read_points(path).points, cloud, atol=1e-4)


def test_las_without_laspy_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "scan.las"
    path.write_bytes(b"LASF" + b"\0" * 300)
    monkeypatch.setitem(sys.modules, "laspy", None)  # makes "import laspy" fail
    err = raises_input_error(path, read_points, path)
    assert 'pip install "occrecon[las]"' in str(err)


# --------------------------------------------------------------------------- bad point input


def test_missing_empty_directory_and_suffix(tmp_path):
    raises_input_error(tmp_path / "nope.ply", read_points, tmp_path / "nope.ply")
    empty = tmp_path / "empty.xyz"
    empty.write_bytes(b"")
    assert "empty" in str(raises_input_error(empty, read_points, empty))
    folder = tmp_path / "dir.ply"
    folder.mkdir()
    raises_input_error(folder, read_points, folder)
    odd = tmp_path / "scan.e57"
    odd.write_text("x", encoding="utf-8")
    err = raises_input_error(odd, read_points, odd)
    assert ".ply" in str(err) and ".xyz" in str(err) and "e57" in str(err)


def test_truncated_binary_and_ascii_ply(tmp_path, cloud):
    import open3d as o3d

    for ascii_ in (False, True):
        full = tmp_path / "full.ply"
        o3d.io.write_point_cloud(str(full), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud)), write_ascii=ascii_)
        data = full.read_bytes()
        cut = tmp_path / f"cut_{ascii_}.ply"
        cut.write_bytes(data[: len(data) * 2 // 3])
        raises_input_error(cut, read_points, cut)


def test_truncated_pcd_and_garbage(tmp_path, cloud):
    import open3d as o3d

    full = tmp_path / "full.pcd"
    o3d.io.write_point_cloud(str(full), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud)), compressed=True)
    cut = tmp_path / "cut.pcd"
    cut.write_bytes(full.read_bytes()[:-200])
    raises_input_error(cut, read_points, cut)
    import trimesh

    trimesh.creation.box().export(tmp_path / "box.stl")
    cut_stl = tmp_path / "cut.stl"
    cut_stl.write_bytes((tmp_path / "box.stl").read_bytes()[:-30])
    raises_input_error(cut_stl, read_points, cut_stl)
    for name in ("junk.ply", "junk.pcd", "junk.off", "junk.stl"):
        junk = tmp_path / name
        junk.write_bytes(b"\x00\x01 this is not a point cloud \xff\xfe")
        raises_input_error(junk, read_points, junk)


def test_all_nan_single_and_identical_points(tmp_path):
    allnan = _write_text(tmp_path / "nan.xyz", np.full((5, 3), np.nan))
    assert "non-finite" in str(raises_input_error(allnan, read_points, allnan))
    single = _write_text(tmp_path / "one.xyz", np.array([[1.0, 2.0, 3.0]]))
    assert "single point" in str(raises_input_error(single, read_points, single))
    same = _write_text(tmp_path / "scan.xyz", np.tile([1.0, 2.0, 3.0], (12, 1)))
    err = raises_input_error(same, read_points, same)
    assert "all 12 points are identical" in str(err)
    header_only = tmp_path / "hdr.ply"
    header_only.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n", encoding="utf-8")
    assert "no points" in str(raises_input_error(header_only, read_points, header_only))


def test_ragged_and_non_numeric_text_name_the_line(tmp_path, cloud):
    path = _write_text(tmp_path / "ragged.xyz", cloud[:10])
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = "1 2"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 5" in str(raises_input_error(path, read_points, path))
    lines[4] = "1 2 abc"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 5" in str(raises_input_error(path, read_points, path))
    words = tmp_path / "words.txt"
    words.write_text("hello world\nthis is text\n", encoding="utf-8")
    raises_input_error(words, read_points, words)


def test_npy_wrong_shape_and_dtype(tmp_path):
    for name, arr in [("flat.npy", np.zeros(9)), ("grid.npy", np.zeros((4, 4, 4))), ("two.npy", np.zeros((10, 2))), ("str.npy", np.array([["a", "b", "c"]]))]:
        path = tmp_path / name
        np.save(path, arr)
        raises_input_error(path, read_points, path)
    npz = tmp_path / "keys.npz"
    np.savez(npz, a=np.zeros((3, 3)), b=np.zeros((3, 3)))
    assert "points" in str(raises_input_error(npz, read_points, npz))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 nope")
    raises_input_error(broken, read_points, broken)
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.zeros((100, 3)))
    truncated.write_bytes(truncated.read_bytes()[:-50])
    raises_input_error(truncated, read_points, truncated)


class _Evil:
    """Unpickling this would create a marker file: proof that code ran."""

    marker: Path | None = None

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_npy_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    obj_npy = tmp_path / "objects.npy"
    np.save(obj_npy, np.array([evil, 1], dtype=object), allow_pickle=True)
    raw_pickle = tmp_path / "raw.npy"
    raw_pickle.write_bytes(pickle.dumps(evil))
    obj_npz = tmp_path / "objects.npz"
    np.savez(obj_npz, points=np.array([evil], dtype=object))
    for path in (obj_npy, raw_pickle, obj_npz):
        err = raises_input_error(path, read_points, path)
        assert "pickle" in str(err)
        if path.suffix in VOXEL_SUFFIXES:
            assert "pickle" in str(raises_input_error(path, read_voxels, path))
    assert not marker.exists()


# --------------------------------------------------------------------------- voxels


def encode_binvox(occ: np.ndarray, translate=(0.0, 0.0, 0.0), scale=1.0, header: str | None = None) -> bytes:
    """Write a binvox file: header, then (value, count<=255) runs over the xzy-ordered voxels."""
    dims = occ.shape
    flat = np.transpose(occ, (0, 2, 1)).ravel().astype(np.uint8)  # [x, y, z] -> file order [x, z, y]
    runs = bytearray()
    i = 0
    while i < flat.size:
        j = i
        while j < flat.size and flat[j] == flat[i] and j - i < 255:
            j += 1
        runs += bytes([flat[i], j - i])
        i = j
    if header is None:
        header = (
            f"#binvox 1\ndim {dims[0]} {dims[2]} {dims[1]}\n"
            f"translate {translate[0]} {translate[1]} {translate[2]}\nscale {scale}\ndata\n"
        )
    return header.encode() + bytes(runs)


def test_binvox_round_trip_and_axis_order(tmp_path):
    rng = np.random.default_rng(3)
    occ = rng.random((16, 16, 16)) < 0.3
    path = tmp_path / "shape.binvox"
    path.write_bytes(encode_binvox(occ, (0.5, -1.0, 2.0), 3.0))
    grid = read_voxels(path)
    assert isinstance(grid, VoxelGrid) and grid.convention == "binvox"
    np.testing.assert_array_equal(grid.occupancy, occ)
    np.testing.assert_allclose(grid.translate, [0.5, -1.0, 2.0])
    assert grid.scale == 3.0


def test_binvox_xzy_order_is_fixed_like_upstream(tmp_path):
    """binvox runs y fastest, then z, then x: file voxel x*16+z*4+y is occupancy[x, y, z]."""
    x, y, z = 1, 2, 3
    flat = np.zeros(64, dtype=np.uint8)
    flat[x * 16 + z * 4 + y] = 1
    runs = bytearray()
    for v in flat:
        runs += bytes([v, 1])
    path = tmp_path / "one.binvox"
    path.write_bytes(b"#binvox 1\ndim 4 4 4\ntranslate 0 0 0\nscale 1\ndata\n" + bytes(runs))
    occ = read_voxels(path).occupancy
    assert occ.sum() == 1 and occ[x, y, z]


def test_binvox_messy_header(tmp_path):
    occ = np.zeros((8, 8, 8), dtype=bool)
    occ[2:5, 1:7, 3] = True
    header = (
        "#binvox 1\r\n# a comment line\n\n   scale   2.5   # trailing comment\n"
        "\tTRANSLATE -1  -2\t-3\ndim 8   8 8  \t\n# more\ndata\n"
    )
    path = tmp_path / "messy.binvox"
    path.write_bytes(encode_binvox(occ, header=header))
    grid = read_voxels(path)
    np.testing.assert_array_equal(grid.occupancy, occ)
    np.testing.assert_allclose(grid.translate, [-1, -2, -3])
    assert grid.scale == 2.5


def test_binvox_bad_files(tmp_path):
    occ = np.zeros((8, 8, 8), dtype=bool)
    occ[1, 1, 1] = True
    good = encode_binvox(occ)
    cases = {
        "truncated.binvox": good[:-3],
        "odd.binvox": good + b"\x01",
        "nodata.binvox": b"#binvox 1\ndim 8 8 8\n",
        "notbinvox.binvox": b"PK not a binvox file at all",
        "baddim.binvox": b"#binvox 1\ndim 8 8\ndata\n\x00\x00",
        "unknownkey.binvox": b"#binvox 1\ndim 2 2 2\ncolour red\ndata\n\x01\x08",
        "empty.binvox": encode_binvox(np.zeros((8, 8, 8), dtype=bool)),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        raises_input_error(path, read_voxels, path)


def test_npy_npz_voxels(tmp_path):
    occ = np.zeros((10, 12, 14), dtype=bool)
    occ[3:6, 2:9, 5] = True
    np.save(tmp_path / "b.npy", occ)
    np.save(tmp_path / "f.npy", occ.astype(np.float32) * 0.9 + 0.05)  # 0.05 / 0.95 -> threshold 0.5
    np.save(tmp_path / "c.npy", occ[None].astype(np.uint8))  # leading channel axis
    np.savez(tmp_path / "o.npz", occupancy=occ)
    for name in ("b.npy", "f.npy", "c.npy", "o.npz"):
        grid = read_voxels(tmp_path / name)
        np.testing.assert_array_equal(grid.occupancy, occ)
        assert grid.convention == "index" and grid.scale == 14.0
        np.testing.assert_array_equal(grid.translate, 0.0)


def test_bad_voxel_arrays(tmp_path):
    for name, arr in [("pts.npy", np.zeros((100, 3))), ("empty.npy", np.zeros((8, 8, 8))), ("nan.npy", np.full((4, 4, 4), np.nan))]:
        path = tmp_path / name
        np.save(path, arr)
        raises_input_error(path, read_voxels, path)
    odd = tmp_path / "grid.vox"
    odd.write_bytes(b"VOX ")
    assert ".binvox" in str(raises_input_error(odd, read_voxels, odd))


# --------------------------------------------------------------------------- images


def test_rgba_png(tmp_path):
    arr = np.zeros((20, 30, 4), dtype=np.uint8)
    arr[5:10, 5:20] = [200, 10, 10, 255]
    Image.fromarray(arr, "RGBA").save(tmp_path / "cut.png")
    im = read_image(tmp_path / "cut.png")
    assert im.mode == "RGBA" and im.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(im), arr)


def test_palette_png_with_and_without_transparency(tmp_path):
    base = Image.new("RGB", (16, 16), (255, 0, 0))
    base.paste((0, 0, 255), (4, 4, 12, 12))
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.save(tmp_path / "pal.png")
    im = read_image(tmp_path / "pal.png")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 0, 0) and im.getpixel((8, 8)) == (0, 0, 255)
    red_index = pal.getpixel((0, 0))
    pal.save(tmp_path / "pal_t.png", transparency=red_index)
    im = read_image(tmp_path / "pal_t.png")
    assert im.mode == "RGBA" and im.getpixel((0, 0))[3] == 0 and im.getpixel((8, 8))[3] == 255


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    im = read_image(tmp_path / "g16.png")
    assert im.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(im)[0, :, 0], [0, 128, 255])


def test_cmyk_jpeg_and_grayscale(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    im = read_image(tmp_path / "c.jpg")
    assert im.mode == "RGB"
    r, g, b = np.asarray(im).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60
    Image.new("L", (8, 8), 77).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").getpixel((0, 0)) == (77, 77, 77)


def test_exif_orientation_is_applied(tmp_path):
    """A 40x20 image with EXIF orientation 6 (rotate 90° CW to view) reads as 20x40."""
    arr = np.full((20, 40, 3), 255, dtype=np.uint8)
    arr[:8, :8] = [255, 0, 0]  # red top-left corner in stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    im = read_image(tmp_path / "phone.jpg")
    assert im.size == (20, 40)
    out = np.asarray(im).astype(int)
    # Rotating 90° CW moves the stored top-left corner to the top-right.
    assert out[2, -3, 0] > 200 and out[2, -3, 1] < 80
    assert out[2, 2, 1] > 200


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".tif", ".jpeg"])
def test_other_image_formats(tmp_path, suffix):
    arr = np.zeros((12, 10, 3), dtype=np.uint8)
    arr[:, 5:] = [0, 200, 0]
    kwargs = {".webp": {"lossless": True}, ".jpeg": {"quality": 100, "subsampling": 0}}.get(suffix, {})
    Image.fromarray(arr).save(tmp_path / f"im{suffix}", **kwargs)
    im = read_image(tmp_path / f"im{suffix}")
    assert im.mode == "RGB" and im.size == (10, 12)
    assert np.abs(np.asarray(im).astype(int) - arr).max() < 40


def test_bad_images(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image", encoding="utf-8")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("trunc.png", "text.jpg", "empty.png", "missing.png"):
        raises_input_error(tmp_path / name, read_image, tmp_path / name)
    (tmp_path / "im.psd").write_bytes(b"8BPS")
    assert ".png" in str(raises_input_error(tmp_path / "im.psd", read_image, tmp_path / "im.psd"))


def test_read_mask(tmp_path):
    m = np.zeros((10, 12), dtype=np.uint8)
    m[2:5, 3:9] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), m > 0)
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 3] = m
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "cut.png"), m > 0)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "blank.png")
    raises_input_error(tmp_path / "blank.png", read_mask, tmp_path / "blank.png")


# --------------------------------------------------------------------------- shared eval data (skip if absent)


def test_eval_pcd_binary_compressed(eval_dir):
    office = read_points(eval_dir / "formats" / "office1.pcd")
    assert len(office.points) > 100_000 and office.dropped_nonfinite > 0  # organised Kinect cloud with holes
    car = read_points(eval_dir / "formats" / "car6.pcd")
    assert len(car.points) == 10031


def test_eval_las_laz(eval_dir):
    pytest.importorskip("laspy")
    las = read_points(eval_dir / "formats" / "simple.las")
    assert las.points.shape == (1065, 3)
    pytest.importorskip("lazrs")
    laz = read_points(eval_dir / "formats" / "autzen_trim.laz")
    assert len(laz.points) == 110000
    assert np.ptp(laz.points, axis=0).max() > 100  # feet-scale aerial tile


def test_eval_xyz_exports_agree(eval_dir):
    a = read_points(eval_dir / "formats" / "points_agisoft.xyz").points
    b = read_points(eval_dir / "formats" / "points_cloudcompare.xyz").points
    assert a.shape[1] == b.shape[1] == 3 and len(a) >= 100
    np.testing.assert_allclose(a[:3], b[:3], atol=1e-5)


def test_eval_binvox_messy_header_matches_clean(eval_dir):
    clean = read_voxels(eval_dir / "voxels" / "chair_model.binvox")
    messy = read_voxels(eval_dir / "voxels" / "chair_model_messy_header.binvox")
    np.testing.assert_array_equal(clean.occupancy, messy.occupancy)
    np.testing.assert_allclose(clean.translate, messy.translate)
    assert clean.scale == messy.scale and clean.occupancy.shape == (32, 32, 32)
    assert read_voxels(eval_dir / "voxels" / "chair.binvox").occupancy.any()


def test_eval_binvox_frame_matches_its_mesh(eval_dir):
    """Occupied cell centres, mapped with translate + (i+0.5)/dim*scale, fit the chair mesh's bbox.

    binvox fills every cell the surface touches, so centres may poke out of the
    bbox by up to half a cell, and reach each bbox face to within a cell.
    """
    import trimesh

    grid = read_voxels(eval_dir / "voxels" / "chair_model.binvox")
    mesh = trimesh.load(eval_dir / "voxels" / "chair_model.obj", force="mesh")
    cell = grid.scale / 32
    centres = grid.translate + (np.argwhere(grid.occupancy) + 0.5) * cell
    lo, hi = mesh.bounds
    assert (np.abs(centres.min(axis=0) - lo) <= cell / 2 + 1e-6).all()
    assert (np.abs(centres.max(axis=0) - hi) <= cell / 2 + 1e-6).all()


def test_eval_photos_read(eval_dir):
    photos = eval_dir / "photos"
    assert read_image(photos / "banana__image_rgba.png").mode == "RGBA"
    assert read_image(photos / "rembg_car-1.jpg").mode == "RGB"
    assert read_mask(photos / "banana__mask.png").any()
