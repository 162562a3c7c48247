"""Refining the colour matte with GrabCut, decided on synthetic photos with exact masks.

A photo whose border is one flat colour is cut out by its colour distance to that
colour (``occrecon.preprocess.image``). Refining that cut-out with GrabCut (the
colour matte, dilated, bounds the object; everything outside is sure background)
could follow soft shadows and gradients better. The eval photos may not steer that
choice, so this script makes its own: held-out generated shapes (generator seed 0,
from shape 2240) rendered with ``occrecon.data.render_views`` and composited, by
their exact ray-cast coverage, onto near-flat studio backdrops: a base colour, a
linear gradient, vignetting, low-frequency blotches, a soft contact shadow, sensor
noise and JPEG compression. For the photos the automatic rule sends down the colour
path, it prints the IoU against the exact mask of the colour matte and of the
refined one, and the refinement's time.

    python benchmarks/matting_synthetic.py [--start 2240] [--count 12] [--size 320]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image
from scipy import ndimage

from occrecon.data.prepare import RenderStyle, canonical_lattice, render_views
from occrecon.data.shapes import random_shape
from occrecon.preprocess.image import _main_parts, _matte
from occrecon.preprocess.segment import grabcut


def coverage(mesh, K: np.ndarray, Rt: np.ndarray, size: int, supersample: int = 2) -> np.ndarray:
    """(size, size) share of each pixel the mesh covers, ray-cast with the render's camera."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    pix = (np.arange(size * supersample) + 0.5) / supersample
    uu, vv = np.meshgrid(pix, pix)
    rot, trans = Rt[:, :3].astype(np.float64), Rt[:, 3].astype(np.float64)
    dirs = np.stack([(uu.ravel() - K[0, 2]) / K[0, 0], (vv.ravel() - K[1, 2]) / K[1, 1], np.ones(uu.size)], -1) @ rot
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(-rot.T @ trans, dirs.shape), dirs], 1).astype(np.float32)
    hit = np.isfinite(scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy())
    return hit.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def backdrop(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float: a studio backdrop that is flat to the eye but not to a threshold."""
    base = rng.uniform(120, 250, 3) if rng.random() < 0.7 else rng.uniform(20, 250, 3)
    y, x = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) * rng.uniform(10, 45)
    vignette = -rng.uniform(0, 30) * 2 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    blotches = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 10)
    blotches *= rng.uniform(0, 12) / (np.abs(blotches).max() + 1e-9)
    return base[None, None, :] + (gradient + vignette + blotches)[..., None]


def synthetic_photo(index: int, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(photo (size, size, 3) uint8, exact object mask, family) for generated shape ``index``."""
    rng = np.random.default_rng([7, index])
    shape, family = random_shape(np.random.default_rng([0, index]))
    lattice = canonical_lattice(shape)
    render = render_views(lattice.mesh, rng, n_views=1, image_size=size, style=RenderStyle(fill=(0.45, 0.75)))
    cover = coverage(lattice.mesh, render["camera_K"][0], render["camera_Rt"][0], size)
    background = backdrop(rng, size)
    rows, cols = np.nonzero(cover > 0.5)
    if len(rows):  # a soft contact shadow below the object
        yy, xx = np.mgrid[0:size, 0:size]
        half = (cols.max() - cols.min()) / 2 + 5
        shadow = np.exp(-(((xx - cols.mean()) / half) ** 2 + ((yy - rows.max()) / (0.12 * half + 3)) ** 2)) * rng.uniform(0, 0.35)
        background *= 1 - shadow[..., None]
    image = cover[..., None] * render["images"][0] + (1 - cover[..., None]) * background
    image = np.clip(image + rng.normal(0, rng.uniform(1, 4), image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(80, 96)))
    return np.asarray(Image.open(buffer).convert("RGB")), cover >= 0.5, family


def refined(rgb: np.ndarray, colour_matte: np.ndarray) -> np.ndarray:
    """GrabCut bounded by the dilated colour matte (3% of the photo's side)."""
    sure_background = ~ndimage.binary_dilation(colour_matte, iterations=max(2, round(0.03 * max(rgb.shape[:2]))))
    return _main_parts(grabcut(rgb, sure_background))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=int, default=2240)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()
    rows = []
    print(f"{'shape':16} {'matte':8} {'colours':>8} {'refined':>8} {'refine s':>9}")
    for index in range(args.start, args.start + args.count):
        rgb, mask, family = synthetic_photo(index, args.size)
        notes: list[str] = []
        colour_matte, _ = _matte(rgb, None, None, "auto", None, notes)
        if any("GrabCut" in note for note in notes):
            print(f"{f'{index} {family}':16} GrabCut  (a busy border: not the colour path)")
            continue
        start = time.perf_counter()
        cut = refined(rgb, colour_matte)
        seconds = time.perf_counter() - start
        rows.append((iou(colour_matte, mask), iou(cut, mask), seconds))
        print(f"{f'{index} {family}':16} {'colours':8} {rows[-1][0]:8.3f} {rows[-1][1]:8.3f} {seconds:9.2f}", flush=True)
    if rows:
        before, after, seconds = (np.array(column) for column in zip(*rows))
        print(f"{len(rows)} colour-path photos: mean IoU {before.mean():.3f} -> {after.mean():.3f}; "
              f"better by > 0.01: {int(np.sum(after > before + 0.01))}, worse by > 0.01: {int(np.sum(after < before - 0.01))}; "
              f"median refinement {np.median(seconds):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
