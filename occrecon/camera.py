"""Pinhole cameras, unprojection of depth maps, and the viewer-centred output frame.

Three frames appear in a depth-first image model:

* the **OpenCV camera frame** (``opencv``): x right, y down, z forward (away from
  the viewer), origin at the centre of projection. ``occrecon.data.prepare``'s
  renderer stores its cameras this way (``camera_Rt`` maps the canonical object frame
  into it), and depth maps hold this frame's z.
* the **viewer frame**: the same axes turned so that x points right, y up in the
  image and z towards the viewer (OpenGL's camera axes). It is the OpenCV frame
  rotated half a turn about x, ``(x, y, z) -> (x, -y, -z)``: a proper rotation
  (determinant +1), so shapes keep their handedness. :data:`OPENCV_TO_VIEWER`.
* the **viewer-centred output frame**: the viewer frame with the object centred on
  its bounding box and its longest side 1, as every occrecon object mesh is
  (:class:`ViewerFrame`). Which box (the visible points' own, or another one) is the
  caller's choice: at test time only the visible surface is known.

Pixel convention (as the renderer's): pixel ``(row j, column i)`` spans
``[i, i + 1) x [j, j + 1)`` in image coordinates ``(u, v)``, so its centre is
``(i + 0.5, j + 0.5)``; ``u`` grows to the right, ``v`` downwards.

Depth convention: a depth map holds the z of the surface seen through each pixel
centre in the OpenCV camera frame (not the distance along the ray); a pixel with
no surface holds 0 (and is False in its mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPENCV_TO_VIEWER = np.diag([1.0, -1.0, -1.0])
"""(3, 3) rotation from OpenCV camera axes (x right, y down, z forward) to viewer axes
(x right, y up, z towards the viewer); it is its own inverse."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera without distortion.

    Attributes:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (image coordinates, see the module's pixel convention).
        width, height: image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int | None = None, cx: float | None = None, cy: float | None = None) -> "Camera":
        """A camera of horizontal field of view ``fov_deg`` across ``width`` pixels, square pixels.

        ``f = 0.5 * width / tan(fov / 2)``, the renderer's rule; the principal point
        defaults to the image centre ``(width / 2, height / 2)``.
        """
        if not 0.0 < fov_deg < 180.0:
            raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        height = width if height is None else height
        f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
        return cls(float(f), float(f), float(width / 2 if cx is None else cx), float(height / 2 if cy is None else cy), int(width), int(height))

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int | None = None) -> "Camera":
        """A camera from a (3, 3) intrinsic matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (skew must be 0)."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or abs(K[0, 1]) > 1e-9 * abs(K[0, 0]) or not np.allclose(K[2], [0.0, 0.0, 1.0]):
            raise ValueError("K must be a (3, 3) pinhole matrix without skew")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(width if height is None else height))

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fov_deg(self) -> float:
        """Horizontal field of view in degrees."""
        return float(np.degrees(2 * np.arctan(0.5 * self.width / self.fx)))

    def resized(self, width: int, height: int | None = None) -> "Camera":
        """The same camera for the image resized to ``width x height`` (pixel-edge convention: exact)."""
        height = width if height is None else height
        sx, sy = width / self.width, height / self.height
        return Camera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))


def pixel_centres(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates ``(u, v)`` of every pixel centre, each (height, width) float64."""
    return np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)


def unproject(depth: np.ndarray, mask: np.ndarray | None, camera: Camera) -> np.ndarray:
    """The 3-D points seen through the pixel centres of a depth map, in the OpenCV camera frame.

    Args:
        depth: (height, width) z in the camera frame (not the distance along the ray).
        mask: (height, width) bool, the pixels to use, or None for every pixel with a
            finite depth above 0. Pixels whose depth is not finite or not above 0 are
            left out in any case.
        camera: the camera the depth map was taken with.

    Returns:
        (n, 3) float64 points, in row-major pixel order.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth map is {depth.shape}, the camera's image is {(camera.height, camera.width)}")
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != depth.shape:
            raise ValueError(f"mask is {mask.shape}, depth map is {depth.shape}")
        valid &= mask
    rows, cols = np.nonzero(valid)
    z = depth[rows, cols]
    x = (cols + 0.5 - camera.cx) / camera.fx * z
    y = (rows + 0.5 - camera.cy) / camera.fy * z
    return np.stack([x, y, z], axis=1)


def project(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates of points in the OpenCV camera frame.

    Returns:
        ``uv`` (n, 2) float64 image coordinates (NaN for points at or behind the
        centre of projection, z <= 0) and ``z`` (n,) their depth.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([camera.fx * p[:, 0] / z + camera.cx, camera.fy * p[:, 1] / z + camera.cy], axis=1)
    uv[z <= 0] = np.nan
    return uv, z


def carve(points: np.ndarray, mask: np.ndarray, camera: Camera, dilate: int = 0) -> np.ndarray:
    """Silhouette carving: which points (OpenCV camera frame) project inside the object mask.

    A point is inside when it lies in front of the camera and the pixel its projection
    falls in (``floor(u), floor(v)``) is in the mask, dilated by ``dilate`` pixels
    (a square neighbourhood) to forgive a mask that is a pixel too tight. Points
    projecting outside the image are outside: the object is assumed to be in frame.

    Returns:
        (n,) bool.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (camera.height, camera.width):
        raise ValueError(f"mask is {mask.shape}, the camera's image is {(camera.height, camera.width)}")
    if dilate > 0:
        from scipy.ndimage import binary_dilation

        mask = binary_dilation(mask, np.ones((2 * dilate + 1, 2 * dilate + 1), bool))
    uv, z = project(points, camera)
    inside = np.zeros(len(uv), dtype=bool)
    ok = np.isfinite(uv).all(axis=1) & (z > 0)
    cols = np.floor(uv[ok, 0])
    rows = np.floor(uv[ok, 1])
    in_image = (cols >= 0) & (cols < camera.width) & (rows >= 0) & (rows < camera.height)
    idx = np.flatnonzero(ok)[in_image]
    inside[idx] = mask[rows[in_image].astype(np.int64), cols[in_image].astype(np.int64)]
    return inside


def opencv_to_viewer(points: np.ndarray) -> np.ndarray:
    """Points from OpenCV camera axes to viewer axes (x right, y up, z towards the viewer): ``(x, -y, -z)``."""
    return np.asarray(points, dtype=np.float64) @ OPENCV_TO_VIEWER.T


def viewer_to_opencv(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`opencv_to_viewer` (the same half turn)."""
    return np.asarray(points, dtype=np.float64) @ OPENCV_TO_VIEWER.T


def world_to_camera(points: np.ndarray, Rt: np.ndarray) -> np.ndarray:
    """Points from a world (object) frame into the OpenCV camera frame of extrinsics ``Rt`` (3, 4): ``R p + t``."""
    Rt = np.asarray(Rt, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ Rt[:, :3].T + Rt[:, 3]


def camera_to_world(points: np.ndarray, Rt: np.ndarray) -> np.ndarray:
    """Inverse of :func:`world_to_camera` (``R`` orthonormal): ``R^T (p - t)``."""
    Rt = np.asarray(Rt, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) - Rt[:, 3]) @ Rt[:, :3]


@dataclass(frozen=True)
class ViewerFrame:
    """The viewer-centred output frame: viewer axes, a box's centre at the origin, its longest side 1.

    ``output = (opencv_to_viewer(p) - centre) / scale`` for ``p`` in the OpenCV camera frame.

    Attributes:
        centre: (3,) the box centre in viewer axes (camera units).
        scale: the box's longest side (camera units).
    """

    centre: tuple[float, float, float]
    scale: float

    @classmethod
    def of_box(cls, lo: np.ndarray, hi: np.ndarray) -> "ViewerFrame":
        """The frame of the box ``[lo, hi]`` given in viewer axes."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        scale = float(np.max(hi - lo))
        if not scale > 0:
            raise ValueError("the box has no extent")
        centre = (lo + hi) / 2
        return cls((float(centre[0]), float(centre[1]), float(centre[2])), scale)

    @classmethod
    def of_points(cls, camera_points: np.ndarray) -> "ViewerFrame":
        """The frame of the bounding box of points given in the OpenCV camera frame (e.g. the visible ones)."""
        v = opencv_to_viewer(camera_points)
        if len(v) == 0:
            raise ValueError("no points to frame")
        return cls.of_box(v.min(axis=0), v.max(axis=0))

    def from_camera(self, camera_points: np.ndarray) -> np.ndarray:
        """(n, 3) OpenCV camera-frame points into the output frame."""
        return (opencv_to_viewer(camera_points) - np.asarray(self.centre)) / self.scale

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) output-frame points back into the OpenCV camera frame."""
        return viewer_to_opencv(np.asarray(points, dtype=np.float64) * self.scale + np.asarray(self.centre))

    def world_to_output(self, Rt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The similarity from a world frame (extrinsics ``Rt``) into this frame: ``output = world @ A.T + b``.

        Returns:
            (3, 3) ``A`` (a rotation divided by ``scale``) and (3,) ``b``.
        """
        Rt = np.asarray(Rt, dtype=np.float64)
        A = OPENCV_TO_VIEWER @ Rt[:, :3] / self.scale
        b = (OPENCV_TO_VIEWER @ Rt[:, 3] - np.asarray(self.centre)) / self.scale
        return A, b
