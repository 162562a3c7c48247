"""Single-image preprocessing: make a photo look like ONet's training renders.

ONet's image model was trained on Choy et al. (3D-R2N2) ShapeNet renders: one
object, centred, on a **white** background (alpha removed onto white), resized
to 224 px and fed as RGB in [0, 1] (the encoder applies the ImageNet
normalisation itself, so we must not). Upstream's demo loader does none of
this for user images (it drops alpha without compositing and squashes the
aspect ratio), which is the main reason users' photos fail. We therefore:

1. find the object: the alpha channel when it has any transparency, else a
   user mask, else the background colour estimated from the image border;
2. composite the image on white using that matte;
3. crop to the object's bounding box and pad it to a centred square with a
   margin, so the object's longer side covers ``1 - 2 * margin`` of the frame;
4. resize to the model's input size (bilinear, as torchvision's Resize).

The default margin (:data:`DEFAULT_MARGIN` = 0.2) is measured, not guessed: on
ONet's demo renders (nine Choy views, 224 px) the object's longer bbox side
covers 52-78 % of the frame, median 59 % (mean 63 %), so
``margin = (1 - 0.59) / 2 ~= 0.2`` reproduces the typical framing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from occrecon.config import DEFAULT_MARGIN
from occrecon.errors import InputError
from occrecon.frames import FrameTransform
from occrecon.io.readers import _downscaled_size, normalise_image_mode, read_mask

from ._base import PreparedInput
from .segment import grabcut_photo

__all__ = ["prepare_image", "estimate_background", "DEFAULT_MARGIN", "BACKGROUNDS"]

# DEFAULT_MARGIN (occrecon.config): blank space on each side of the object, as a fraction of the
# output side (the object's longer side fills 1 - 2 * margin = 60 % of the frame).

#: ``auto``: alpha if informative, else border colour; ``alpha``: alpha only;
#: ``border``: border colour even if there is alpha; ``none``: whole image is the object.
BACKGROUNDS = ("auto", "alpha", "border", "none")

# Border estimation. Colour distance is the largest per-channel difference
# (0-255). JPEG noise on a flat background stays well under 24; a noisier
# border raises the threshold so the noise is not taken for object.
_BORDER_FRACTION = 0.02
_MIN_THRESHOLD = 24.0
_MAX_THRESHOLD = 96.0
# Detached blobs smaller than this fraction of the largest one are specks
# (noise, dust, a stray shadow), not object parts, and must not widen the crop.
_MIN_PART_FRACTION = 0.01
# Background colours kept from the border, and the share of the border each
# must cover; an object touching the border rarely fills 12 % of it.
_MAX_BACKGROUND_COLOURS = 3
# Below this share of border pixels near a background colour the backdrop is busy (grass, a room): GrabCut cuts it.
_UNIFORM_BORDER_SHARE = 0.6
_MIN_COLOUR_SHARE = 0.12


def _mask_for(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask file read for an image of ``shape`` (h, w).

    Files over :data:`occrecon.io.readers.DOWNSCALE_PIXELS` are downscaled while read; an image
    passed as an array or a PIL image is not, so a mask file of its size comes back smaller.
    Such a mask (exactly the size the image's own file would have been read at) is scaled back
    up to the image (nearest); any other size is left for the size check to refuse.
    """
    h, w = shape
    if mask.shape != (h, w) and _downscaled_size((w, h)) == (mask.shape[1], mask.shape[0]):
        return np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    return mask


def _array_to_rgba(arr: np.ndarray, source: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an (H, W), (H, W, 3) or (H, W, 4) array into uint8 RGB and float alpha.

    uint8 is taken as 0-255, uint16 as 0-65535, floats as [0, 1].

    Raises:
        InputError: wrong shape, or floats outside [0, 1].
    """
    if arr.ndim == 2:
        arr = arr[..., None].repeat(3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise InputError(source, f"expected an (H, W, 3|4) image array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        f = arr.astype(np.float64) / 255.0
    elif arr.dtype == np.uint16:
        f = arr.astype(np.float64) / 65535.0
    elif arr.dtype.kind == "f":
        f = np.asarray(arr, dtype=np.float64)
        if not np.isfinite(f).all() or f.min() < 0.0 or f.max() > 1.0:
            raise InputError(source, "float image values must be finite and in [0, 1]")
    else:
        raise InputError(source, f"unsupported image dtype {arr.dtype} (use uint8, uint16 or float in [0, 1])")
    rgb = np.rint(f[..., :3] * 255.0).astype(np.uint8)
    alpha = f[..., 3] if f.shape[2] == 4 else None
    return rgb, alpha


def _to_rgba(image: Image.Image | np.ndarray, source: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (H, W, 3) uint8 RGB and (H, W) float alpha in [0, 1] (None without alpha)."""
    if isinstance(image, Image.Image):
        im = normalise_image_mode(image)
        arr = np.asarray(im)
        if im.mode == "RGBA":
            return np.ascontiguousarray(arr[..., :3]), arr[..., 3].astype(np.float64) / 255.0
        return np.ascontiguousarray(arr), None
    return _array_to_rgba(np.asarray(image), source)


def _border_ring(rgb: np.ndarray) -> np.ndarray:
    """The pixels of a thin frame along the image border, as (n, 3) float64."""
    h, w = rgb.shape[:2]
    b = max(1, int(round(_BORDER_FRACTION * min(h, w))))
    parts = [rgb[:b], rgb[-b:], rgb[:, :b], rgb[:, -b:]]
    return np.concatenate([p.reshape(-1, 3) for p in parts]).astype(np.float64)


def _distance_to(colours: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Largest per-channel difference from each pixel to its nearest colour.

    Args:
        colours: (k, 3) float.
        pixels: (..., 3).

    Returns:
        (...) float distances in 0-255 units.
    """
    px = pixels.astype(np.float64)
    return np.min([np.abs(px - c).max(axis=-1) for c in colours], axis=0)


def estimate_background(rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Estimate the background colour(s) from the image border.

    Usually the border is one flat colour, but photos are often padded or
    letterboxed (black bars plus a coloured backdrop), so up to
    :data:`_MAX_BACKGROUND_COLOURS` dominant colours are kept: border colours
    are binned (16 levels per channel) and every bin holding at least
    :data:`_MIN_COLOUR_SHARE` of the border contributes its median colour.
    Without any dominant bin (a gradient or a cluttered border) the median of
    the whole border is used.

    Args:
        rgb: (H, W, 3) uint8.

    Returns:
        ((k, 3) float background colours, distance threshold, fraction of
        border pixels within the threshold of a background colour).
    """
    ring = _border_ring(rgb)
    q = ring.astype(np.int64) // 16
    keys = q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(counts)[::-1][:_MAX_BACKGROUND_COLOURS]
    dominant = [k for k in order if counts[k] >= _MIN_COLOUR_SHARE * len(ring)]
    if dominant:
        colours = np.array([np.median(ring[inverse.ravel() == k], axis=0) for k in dominant])
    else:
        # The median ignores the part of the object that may touch the border.
        colours = np.median(ring, axis=0)[None]
    dist = _distance_to(colours, ring)
    spread = float(np.percentile(dist, 75))
    threshold = float(np.clip(3.0 * spread, _MIN_THRESHOLD, _MAX_THRESHOLD))
    return colours, threshold, float((dist <= threshold).mean())


def _main_parts(fg: np.ndarray) -> np.ndarray:
    """Keep the connected parts of ``fg`` that are not tiny specks.

    Args:
        fg: (H, W) bool.

    Returns:
        (H, W) bool with components smaller than 1 % of the largest removed.
    """
    labels, count = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return fg
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= _MIN_PART_FRACTION * sizes.max()) + 1
    return np.isin(labels, keep)


def _matte_from_border(rgb: np.ndarray, source: str | None, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Segment the object from a flat background.

    Returns:
        (object pixels (H, W) bool, compositing weights (H, W) float in [0, 1]).

    Raises:
        InputError: nothing differs from the background.
    """
    colours, threshold, match = estimate_background(rgb)
    # A border spread beyond what a flat backdrop's shading and noise give (grass, carpet) is busy too.
    if match < _UNIFORM_BORDER_SHARE or threshold >= _MAX_THRESHOLD:
        cut = _main_parts(grabcut_photo(rgb))
        # A cut that keeps (almost) the whole frame found nothing to separate: fall back to the colours.
        if cut.any() and cut.mean() < 0.9:
            notes.append("the border is not a uniform colour: object cut out by GrabCut (colour mixtures and a graph cut); pass a mask or an RGBA cut-out if it is poor")
            return cut, cut.astype(np.float64)
    dist = _distance_to(colours, rgb)
    # Opening removes isolated JPEG/noise pixels before the components are counted.
    fg = ndimage.binary_opening(dist > threshold, structure=np.ones((3, 3), dtype=bool))
    fg = _main_parts(fg) if fg.any() else fg
    rgb_txt = " / ".join("(" + ", ".join(str(int(round(c))) for c in colour) + ")" for colour in colours)
    if not fg.any():
        raise InputError(source, f"found no object: every pixel is within {threshold:.0f} of the background colour(s) {rgb_txt}; pass a mask")
    notes.append(f"object separated from the background colour(s) {rgb_txt} estimated on the border (threshold {threshold:.0f}/255)")
    if match < _UNIFORM_BORDER_SHARE:
        notes.append("the border is not a uniform colour; the cut-out may be poor (pass a mask or an RGBA cut-out)")
    # A soft ramp around the threshold keeps anti-aliased edges from leaving a
    # halo of background colour; restricting it to near the kept parts drops specks.
    soft = np.clip((dist - 0.5 * threshold) / threshold, 0.0, 1.0)
    near = ndimage.binary_dilation(fg, iterations=2)
    return fg, np.where(fg, 1.0, soft * near)


def _matte(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    mask: np.ndarray | None,
    background: str,
    source: str | None,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Choose how to find the object and return (object pixels, compositing weights).

    Raises:
        InputError: mask of the wrong size, fully transparent image, or no object found.
    """
    h, w = rgb.shape[:2]
    if mask is not None:
        if mask.shape != (h, w):
            raise InputError(source, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}")
        if not mask.any():
            raise InputError(source, "mask is empty")
        weights = mask.astype(np.float64) * (alpha if alpha is not None else 1.0)
        fg = mask & (weights >= 0.5)
        if not fg.any():
            raise InputError(source, "the masked region is fully transparent; nothing to reconstruct")
        notes.append("object taken from the mask")
        return fg, weights
    if background == "none":
        notes.append("no background removal: the whole image is the object")
        fg = np.ones((h, w), dtype=bool)
        return fg, (alpha if alpha is not None else np.ones((h, w)))
    informative_alpha = alpha is not None and alpha.min() < 1.0
    if background == "alpha" and not informative_alpha:
        raise InputError(source, "has no transparency to take the object from (background='alpha')")
    if informative_alpha and background in ("auto", "alpha"):
        if alpha.max() == 0.0:
            raise InputError(source, "image is fully transparent; nothing to reconstruct")
        fg = alpha >= 0.5
        if not fg.any():
            raise InputError(source, "no pixel is more than 50 % opaque; nothing to reconstruct")
        notes.append("object taken from the alpha channel")
        return _main_parts(fg), alpha
    return _matte_from_border(rgb, source, notes)


def _bbox(fg: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the True pixels, end-exclusive."""
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _square_on_white(
    composite: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int
) -> tuple[Image.Image, float]:
    """Resample the object's square, centred and padded with white, to ``size`` px.

    The square has side ``max(h, w) / (1 - 2 * margin)`` and is centred on the
    bbox centre with sub-pixel accuracy (Pillow's ``resize(box=...)`` takes a
    float source box), so odd sizes do not shift the object by half a pixel.

    Args:
        composite: (H, W, 3) uint8 image already composited on white.
        box: (top, bottom, left, right), end-exclusive.
        margin: blank fraction on each side.
        size: output side.

    Returns:
        (the (size, size) RGB image, the square's side in source pixels).
    """
    top, bottom, left, right = box
    side = max(bottom - top, right - left) / (1.0 - 2.0 * margin)
    y0, x0 = (top + bottom - side) / 2.0, (left + right - side) / 2.0
    # Integer window holding the float square; outside the photo it is white.
    wy0, wx0 = int(np.floor(y0)), int(np.floor(x0))
    wy1, wx1 = int(np.ceil(y0 + side)), int(np.ceil(x0 + side))
    window = np.full((wy1 - wy0, wx1 - wx0, 3), 255, dtype=np.uint8)
    h, w = composite.shape[:2]
    sy0, sx0, sy1, sx1 = max(wy0, 0), max(wx0, 0), min(wy1, h), min(wx1, w)
    window[sy0 - wy0 : sy1 - wy0, sx0 - wx0 : sx1 - wx0] = composite[sy0:sy1, sx0:sx1]
    src = (x0 - wx0, y0 - wy0, x0 - wx0 + side, y0 - wy0 + side)
    return Image.fromarray(window, mode="RGB").resize((size, size), Image.Resampling.BILINEAR, box=src), side


def prepare_image(
    image: Image.Image | np.ndarray,
    *,
    size: int = 224,
    mask: np.ndarray | str | Path | None = None,
    margin: float = DEFAULT_MARGIN,
    background: str = "auto",
    render_size: int | None = None,
    source: str | None = None,
) -> PreparedInput:
    """Cut out, centre and resize an image the way ONet's image encoder expects.

    Args:
        image: a PIL image (any mode) or an (H, W, 3|4) / (H, W) array
            (uint8, uint16, or float in [0, 1]). Use
            :func:`occrecon.io.readers.read_image` for files (it applies EXIF orientation).
        size: output side S (224 for ONet).
        mask: optional (H, W) bool object mask, or a mask image file; it
            overrides alpha and border estimation.
        margin: blank space on each side as a fraction of the output side, in
            [0, 0.5). Default 0.2: see :data:`DEFAULT_MARGIN`.
        background: one of :data:`BACKGROUNDS`.
        render_size: when set (137 mimics Choy's renders), the square is first
            resized to this size and then to ``size``, reproducing the softness
            of the upsampled training images.
        source: name used in messages.

    Returns:
        :class:`PreparedInput` with tensor (3, S, S) float32 in [0, 1] (RGB on
        white, no ImageNet normalisation), identity transform, preview the
        (S, S) RGB PIL image the network sees, and notes.

    Raises:
        InputError: fully transparent image, empty or mismatched mask, no
            object found, or a bad array.
    """
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    notes: list[str] = []
    rgb, alpha = _to_rgba(image, source)
    if isinstance(mask, (str, Path)):
        mask = _mask_for(read_mask(mask), rgb.shape[:2])
    elif mask is not None:
        mask = np.asarray(mask).astype(bool)
    fg, weights = _matte(rgb, alpha, mask, background, source, notes)

    # Composite on white: what ImageMagick's "-background white -alpha remove" did upstream.
    wts = weights[..., None]
    composite = np.rint(rgb * wts + 255.0 * (1.0 - wts)).astype(np.uint8)
    box = _bbox(fg)
    h, w = rgb.shape[:2]
    if background != "none" and (box[0] == 0 or box[2] == 0 or box[1] == h or box[3] == w):
        notes.append("the object touches the image edge; it may be cut off")
    # Choy's renders were 137 px upsampled to 224; render_size reproduces that softness.
    first = int(render_size) if render_size else size
    preview, side = _square_on_white(composite, box, margin, first)
    if first != size:
        preview = preview.resize((size, size), Image.Resampling.BILINEAR)
    notes.append(
        f"cropped {box[3] - box[2]}x{box[1] - box[0]} px, centred on a white {side:.0f} px square "
        f"(margin {margin:g}), resized to {size} px" + (f" via {first} px" if first != size else "")
    )
    tensor = torch.from_numpy(np.asarray(preview, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return PreparedInput(tensor=tensor, transform=FrameTransform.identity(), preview=preview, notes=notes)
