"""The pinhole camera, unprojection, projection, carving and the viewer-centred frame (occrecon.camera)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from occrecon import camera as cam


def _random_camera(rng: np.random.Generator, width: int = 64, height: int = 48) -> cam.Camera:
    base = cam.Camera.from_fov(rng.uniform(25, 55), width, height)
    return cam.Camera(base.fx, base.fy * rng.uniform(0.9, 1.1), base.cx + rng.uniform(-5, 5), base.cy + rng.uniform(-5, 5), width, height)


def test_from_fov_focal_principal_point_and_resize():
    c = cam.Camera.from_fov(40.0, 137)
    assert c.fx == c.fy == pytest.approx(0.5 * 137 / np.tan(np.radians(20)))
    assert (c.cx, c.cy, c.width, c.height) == (68.5, 68.5, 137, 137)
    assert c.fov_deg == pytest.approx(40.0)
    big = c.resized(224)
    assert big.fov_deg == pytest.approx(40.0) and big.cx == pytest.approx(112.0)
    np.testing.assert_allclose(cam.Camera.from_matrix(c.matrix, 137).matrix, c.matrix)
    with pytest.raises(ValueError):
        cam.Camera.from_fov(180.0, 10)
    with pytest.raises(ValueError):
        cam.Camera.from_matrix(np.array([[100.0, 3.0, 5.0], [0.0, 100.0, 5.0], [0.0, 0.0, 1.0]]), 10)


def test_unproject_then_project_is_exact():
    rng = np.random.default_rng(0)
    for _ in range(5):
        c = _random_camera(rng)
        depth = rng.uniform(0.5, 4.0, (c.height, c.width))
        mask = rng.random((c.height, c.width)) < 0.6
        depth[rng.random(depth.shape) < 0.05] = 0.0  # no reading: left out whatever the mask says
        depth[0, 0] = np.inf
        pts = cam.unproject(depth, mask, c)
        keep = mask & (depth > 0) & np.isfinite(depth)
        assert len(pts) == keep.sum()
        rows, cols = np.nonzero(keep)
        uv, z = cam.project(pts, c)
        np.testing.assert_allclose(uv[:, 0], cols + 0.5, atol=1e-5)
        np.testing.assert_allclose(uv[:, 1], rows + 0.5, atol=1e-5)
        np.testing.assert_allclose(z, depth[rows, cols], rtol=1e-12)
        # Without a mask, every finite depth above 0 is used.
        assert len(cam.unproject(depth, None, c)) == (np.isfinite(depth) & (depth > 0)).sum()


def test_project_marks_points_behind_the_camera():
    c = cam.Camera.from_fov(40, 32)
    uv, z = cam.project(np.array([[0.0, 0.0, 1.0], [0.1, 0.0, -1.0], [0.0, 0.0, 0.0]]), c)
    np.testing.assert_allclose(uv[0], [16.0, 16.0])
    assert np.isnan(uv[1:]).all() and z[1] == -1.0


def test_viewer_frame_is_a_proper_rotation_with_y_up_and_z_towards_the_viewer():
    m = cam.OPENCV_TO_VIEWER
    np.testing.assert_allclose(m @ m.T, np.eye(3))
    assert np.linalg.det(m) == pytest.approx(1.0)
    x, y, z = m  # viewer axes expressed in OpenCV axes
    np.testing.assert_allclose(np.cross(x, y), z)  # right-handed
    c = cam.Camera.from_fov(40, 64)
    # A pixel above the centre (smaller row) is up (+y); a nearer point has larger z (towards the viewer).
    up = cam.opencv_to_viewer(cam.unproject(np.where(np.arange(64)[:, None] == 10, 2.0, 0.0) * np.ones((1, 64)), None, c))
    assert (up[:, 1] > 0).all()
    right = cam.opencv_to_viewer([[0.3, 0.0, 2.0]])
    assert right[0, 0] > 0
    near, far = cam.opencv_to_viewer([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    assert near[2] > far[2]
    np.testing.assert_allclose(cam.viewer_to_opencv(right), [[0.3, 0.0, 2.0]])


def test_viewer_frame_normalises_the_box_and_maps_back():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(200, 3)) * [0.3, 0.2, 0.1] + [0.0, 0.1, 2.5]
    frame = cam.ViewerFrame.of_points(p)
    q = frame.from_camera(p)
    lo, hi = q.min(0), q.max(0)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)
    assert max(hi - lo) == pytest.approx(1.0)
    np.testing.assert_allclose(frame.to_camera(q), p, atol=1e-12)
    # The world-to-output similarity agrees with going through the camera frame, and is proper.
    R = trimesh.transformations.random_rotation_matrix(rng.random(3))[:3, :3]
    Rt = np.concatenate([R, [[0.1], [-0.2], [2.0]]], 1)
    w = rng.normal(size=(50, 3))
    A, b = frame.world_to_output(Rt)
    np.testing.assert_allclose(w @ A.T + b, frame.from_camera(cam.world_to_camera(w, Rt)), atol=1e-12)
    assert np.linalg.det(A * frame.scale) == pytest.approx(1.0)
    np.testing.assert_allclose(cam.camera_to_world(cam.world_to_camera(w, Rt), Rt), w, atol=1e-12)
    with pytest.raises(ValueError):
        cam.ViewerFrame.of_points(np.zeros((0, 3)))


def test_a_rendered_box_unprojects_onto_its_visible_faces():
    from occrecon.data.prepare import render_views

    half = np.array([0.5, 0.3, 0.2])
    box = trimesh.creation.box(extents=2 * half)
    out = render_views(box, np.random.default_rng(5), n_views=3, image_size=96, depth=True)
    assert out["depth"].dtype == np.float32 and out["mask"].dtype == bool
    assert np.array_equal(out["mask"], out["depth"] > 0)
    normals = np.concatenate([np.eye(3), -np.eye(3)])
    for v in range(3):
        c = cam.Camera.from_matrix(out["camera_K"][v], 96)
        Rt = out["camera_Rt"][v]
        pts = cam.camera_to_world(cam.unproject(out["depth"][v], out["mask"][v], c), Rt)
        assert len(pts) > 500
        # On the box's surface: on a face plane (to float32 precision) and inside the box.
        on_face = np.abs(np.abs(pts) / half - 1.0) < 1e-4
        assert on_face.any(axis=1).all()
        assert (np.abs(pts) <= half * (1 + 1e-4)).all()
        # Every point lies on a face turned towards the camera, and every face turned
        # clearly towards it receives points.
        eye = cam.camera_to_world(np.zeros((1, 3)), Rt)[0]
        for n in normals:
            axis = int(np.flatnonzero(n)[0])
            on = np.abs(pts[:, axis] - n[axis] * half[axis]) < 1e-4 * half[axis]
            facing = float(n @ (eye - n * half))  # > 0: the face's plane is seen from its outer side
            if facing <= 0:
                assert not on.any()
            cos = facing / np.linalg.norm(eye - n * half)
            if cos > 0.2:
                assert on.sum() > 20
        # The mask agrees with the image's object pixels up to the antialiased edge.
        dark = out["images"][v].min(-1) < 250
        assert (out["mask"][v] & ~dark).sum() <= 0.02 * out["mask"][v].sum()
        assert (dark & ~out["mask"][v]).sum() <= 0.1 * dark.sum()


def test_carving_keeps_points_inside_the_mask_only():
    rng = np.random.default_rng(2)
    c = _random_camera(rng, 40, 30)
    mask = np.zeros((30, 40), bool)
    mask[8:20, 10:25] = True
    mask[12, 30] = True
    pts = np.concatenate([rng.uniform([-1.5, -1.5, 0.5], [1.5, 1.5, 3.0], (3000, 3)), [[0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
    inside = cam.carve(pts, mask, c)
    uv, z = cam.project(pts, c)
    for p_in, (u, v), d in zip(inside, uv, z):
        expect = d > 0 and 0 <= u < 40 and 0 <= v < 30 and mask[int(np.floor(v)), int(np.floor(u))]
        assert p_in == expect
    assert inside.any() and not inside[-2:].any()
    # Pixel centres of masked pixels, at any depth, are kept; dilation only adds.
    rows, cols = np.nonzero(mask)
    depth = np.zeros(mask.shape)
    depth[rows, cols] = rng.uniform(0.5, 3.0, len(rows))
    assert cam.carve(cam.unproject(depth, None, c), mask, c).all()
    grown = cam.carve(pts, mask, c, dilate=1)
    assert (grown >= inside).all() and grown.sum() > inside.sum()
    with pytest.raises(ValueError):
        cam.carve(pts, mask[:-1], c)
