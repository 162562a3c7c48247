"""Training items for the point-map network (:mod:`occrecon.nets.pointmap`).

They come from the partial-cloud dataset (:func:`occrecon.data.cache.build_partial_dataset`),
whose items keep each view's render and its true depth: the target of a pixel is the
surface point seen through its centre, in the viewer-centred frame of the *clean*
visible surface (its box centred, longest side 1; the frame the completion network's
input is normalised to). Renders are augmented so that photos fall in range: colour,
contrast and saturation jitter, blur, sensor noise, JPEG artefacts and mirroring.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occrecon import camera as cam
from occrecon.data.cache import PartialDataset


def nearest_pixels(source: int, size: int) -> np.ndarray:
    """Index of the ``source``-grid pixel whose span holds each ``size``-grid pixel centre."""
    return np.minimum(((np.arange(size) + 0.5) * source / size).astype(np.int64), source - 1)


def pointmap_target(depth: np.ndarray, K: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A depth map's point map at ``size`` pixels, in the clean visible surface's viewer-centred frame.

    Args:
        depth: (S, S) z in the OpenCV camera frame, 0 where nothing is seen.
        K: (3, 3) intrinsics of ``depth``'s pixel grid.
        size: side of the point map (pixels sampled at their centres, nearest).

    Returns:
        (3, size, size) float32 points (0 outside the mask) and (size, size) bool mask.
    """
    depth = np.asarray(depth, dtype=np.float64)
    camera = cam.Camera.from_matrix(np.asarray(K, dtype=np.float64), depth.shape[1], depth.shape[0])
    valid = depth > 0
    frame = cam.ViewerFrame.of_points(cam.unproject(depth, valid, camera))
    rows, cols = nearest_pixels(depth.shape[0], size), nearest_pixels(depth.shape[1], size)
    z = depth[np.ix_(rows, cols)]
    mask = z > 0
    u, v = cols[None, :] + 0.5, rows[:, None] + 0.5
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    points = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)
    out = np.where(mask[..., None], frame.from_camera(points.reshape(-1, 3)).reshape(size, size, 3), 0.0)
    return out.transpose(2, 0, 1).astype(np.float32), mask


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A render (H, W, 3) uint8 made to look like a photo's cut-out: colour, blur, noise, JPEG.

    The white background stays near white (a cut-out is composited on white), so
    brightness and contrast act on the object's pixels around the white point.
    """
    from PIL import Image, ImageFilter

    x = image.astype(np.float32) / 255.0
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)  # exposure and white balance
    x = 1.0 - (1.0 - x) * rng.uniform(0.8, 1.2)  # contrast about white
    x = x * gain
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.5, 1.4)  # saturation
    x = np.clip(x, 0, 1)
    img = Image.fromarray(np.round(x * 255).astype(np.uint8))
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    out = np.asarray(img).astype(np.float32)
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(1, 6), out.shape)
    img = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(35, 95)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(img)


def resized_image(image: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: an antialiased resize (what the image preprocessing does to a photo)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, reducing_gap=None))


class PointMapDataset(PartialDataset):
    """Point-map training items of a partial-cloud dataset (its ``image`` and ``depth`` arrays).

    Each item: ``image`` (3, size, size) float32 in [0, 1]; ``target`` (3, size, size)
    float32 point map; ``mask`` (1, size, size) float32; ``index``, ``view``.

    Args:
        root: a partial-cloud dataset (format version 2 or later: renders and depth kept).
        size: image side (a multiple of 32).
        shapes: subset of shape indices (all views of each).
        augment: photometric augmentation and random mirroring.
    """

    def __init__(self, root: str | Path, *, size: int = 128, shapes: Any = None, augment: bool = False):
        super().__init__(root, shapes=shapes)
        if int(self.manifest.get("partial_version", "1")) < 2:
            raise ValueError(f"{root}: this partial dataset keeps no renders (version < 2); rebuild it")
        self.size, self.augment = int(size), bool(augment)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i = int(self.indices[idx])
        shard_size = self.manifest["shard_size"]
        sh = self._shard(i // shard_size)
        j = i % shard_size
        image = np.asarray(sh["image"][j])
        target, mask = pointmap_target(np.asarray(sh["depth"][j], dtype=np.float32), sh["camera_K"][j], self.size)
        if self.augment:
            rng = self._rng()
            image = photometric(image, rng)
            if rng.random() < 0.5:  # a mirror image: columns reversed, x negated
                image, target, mask = image[:, ::-1], target[:, :, ::-1] * np.array([-1, 1, 1], np.float32)[:, None, None], mask[:, ::-1]
        image = resized_image(np.ascontiguousarray(image), self.size)
        return {
            "image": torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)[None].astype(np.float32)),
            "index": int(sh["index"][j]),
            "view": int(sh["view"][j]),
        }
