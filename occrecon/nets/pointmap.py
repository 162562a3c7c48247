"""The visible surface from one image: a network that predicts a point map and a mask.

The first stage of the depth-first image model (issue #23): for every pixel of a
square object crop it predicts the 3-D point seen through that pixel, in the
viewer-centred output frame (x right, y up in the image, z towards the viewer; the
visible surface's box centred, longest side 1), and whether the pixel shows the
object at all. A point map rather than depth: it needs no focal length, which a
photo does not state, and its unprojection is the identity. The masked points are a
partial cloud that a completion network turns into a closed shape.

Layout: a ResNet-18 trunk (the same module and parameter names as the ONet image
encoder, so a trained image model's trunk can start it) and a feature-pyramid
decoder that upsamples back to the input resolution, with skip connections at every
scale and the pixel's own coordinates as two extra channels at the last scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from occrecon.nets.resnet import ResNet18Features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def pixel_coordinates(batch: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, 2, H, W): each pixel centre's (u, v) scaled to [-1, 1] (u right, v down)."""
    v = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height * 2 - 1
    u = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width * 2 - 1
    grid = torch.stack(torch.meshgrid(u, v, indexing="xy"), 0)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


class PointMapNet(nn.Module):
    """Image (B, 3, S, S) in [0, 1] → point map (B, 3, S, S) and mask logits (B, 1, S, S).

    ``S`` must be a multiple of 32 (the trunk's stride).

    Args:
        widths: decoder channels at strides 16, 8, 4, 2 and 1.
    """

    def __init__(self, widths: tuple[int, int, int, int, int] = (128, 96, 64, 48, 32)) -> None:
        super().__init__()
        self.features = ResNet18Features()
        w16, w8, w4, w2, w1 = widths
        self.top = nn.Conv2d(512, w16, 1)
        self.lateral = nn.ModuleDict(
            {"s16": nn.Conv2d(256, w16, 1), "s8": nn.Conv2d(128, w8, 1), "s4": nn.Conv2d(64, w4, 1), "s2": nn.Conv2d(64, w2, 1)}
        )
        self.fuse = nn.ModuleDict(
            {
                "s16": _conv_bn_relu(w16, w16),
                "s8": _conv_bn_relu(w16 + w8, w8),
                "s4": _conv_bn_relu(w8 + w4, w4),
                "s2": _conv_bn_relu(w4 + w2 + 2, w2),
                "s1": _conv_bn_relu(w2 + 3 + 2, w1),
            }
        )
        self.head = nn.Conv2d(w1, 4, 3, padding=1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's feature maps at strides 2, 4, 8, 16 and 32."""
        f = self.features
        s2 = F.relu(f.bn1(f.conv1(x)))
        s4 = f.layer1(F.max_pool2d(s2, kernel_size=3, stride=2, padding=1))
        s8 = f.layer2(s4)
        s16 = f.layer3(s8)
        return [s2, s4, s8, s16, f.layer4(s16)]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(point map (B, 3, S, S), mask logits (B, 1, S, S)) of images in [0, 1]."""
        b, _, h, w = image.shape
        if h % 32 or w % 32:
            raise ValueError(f"image side must be a multiple of 32, got {h}x{w}")
        s2, s4, s8, s16, s32 = self._trunk((image - self.mean) / self.std)
        x = self.fuse["s16"](_up(self.top(s32), s16) + self.lateral["s16"](s16))
        x = self.fuse["s8"](torch.cat([_up(x, s8), self.lateral["s8"](s8)], 1))
        x = self.fuse["s4"](torch.cat([_up(x, s4), self.lateral["s4"](s4)], 1))
        coords2 = pixel_coordinates(b, s2.shape[2], s2.shape[3], image.device, image.dtype)
        x = self.fuse["s2"](torch.cat([_up(x, s2), self.lateral["s2"](s2), coords2], 1))
        coords1 = pixel_coordinates(b, h, w, image.device, image.dtype)
        x = self.fuse["s1"](torch.cat([_up(x, image), image, coords1], 1))
        out = self.head(x)
        return out[:, :3], out[:, 3:]


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def aligned_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 over masked pixels after the prediction's best scale and shift (one per image).

    The completion network re-centres and rescales its input cloud, so a point map
    is right up to a similarity's scale and shift; this loss asks only for that. The
    scale and shift are the least-squares ones (a closed form, differentiable).

    Args:
        pred, target: (B, 3, H, W) point maps.
        mask: (B, 1, H, W) bool or float, the pixels that count.
    """
    m = mask.to(pred.dtype)
    count = m.sum((1, 2, 3), keepdim=True).clamp_min(1.0)
    mu_p = (pred * m).sum((2, 3), keepdim=True) / count
    mu_t = (target * m).sum((2, 3), keepdim=True) / count
    dp, dt = (pred - mu_p) * m, (target - mu_t) * m
    scale = (dp * dt).sum((1, 2, 3), keepdim=True) / (dp * dp).sum((1, 2, 3), keepdim=True).clamp_min(1e-8)
    aligned = scale.clamp(0.2, 5.0) * (pred - mu_p) + mu_t
    return ((aligned - target).abs() * m).sum() / (3 * count.sum())


def pointmap_loss(pred: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, absolute_weight: float = 0.1) -> dict[str, torch.Tensor]:
    """Training loss of :class:`PointMapNet`: aligned L1, a little absolute L1, and mask BCE.

    The absolute term keeps the output in the frame (it would drift otherwise, as the
    aligned term ignores scale and shift); the mask term trains the silhouette.
    """
    m = mask.to(pred.dtype)
    aligned = aligned_l1(pred, target, m)
    absolute = ((pred - target).abs() * m).sum() / (3 * m.sum().clamp_min(1.0))
    silhouette = F.binary_cross_entropy_with_logits(logits, m)
    total = aligned + absolute_weight * absolute + silhouette
    return {"loss": total, "aligned_l1": aligned.detach(), "l1": absolute.detach(), "mask_bce": silhouette.detach()}


# --------------------------------------------------------------------------------------
# The whole image model: point map → partial cloud → completion, with carving
# --------------------------------------------------------------------------------------
CARVED_LOGIT = -12.0
"""Logit of a query the silhouette rules out (probability 6e-6): empty space, whatever the completion says."""


@dataclass(frozen=True)
class PerspectiveFit:
    """How points of the output frame project to the network's pixels, fitted to its own point map.

    ``u = cx + f * x / (depth - z)``, ``v = cy - f * y / (depth - z)`` in pixels of the
    network's square input, for ``(x, y, z)`` in the output frame (the camera on the
    +z axis at ``depth``). Fitted by least squares to the predicted points and their
    pixels, with ``depth`` chosen on a grid: the point map fixes the camera up to
    the errors of the prediction, so no focal length needs to be known.
    """

    f: float
    cx: float
    cy: float
    depth: float

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, v, in_front) of (..., 3) output-frame points."""
        w = self.depth - points[..., 2]
        safe = torch.where(w > 1e-6, w, torch.ones_like(w))
        return self.cx + self.f * points[..., 0] / safe, self.cy - self.f * points[..., 1] / safe, w > 1e-6


def fit_perspective(points: torch.Tensor, u: torch.Tensor, v: torch.Tensor, depths: tuple[float, ...] = tuple(float(d) for d in np.geomspace(0.6, 60.0, 64))) -> PerspectiveFit | None:
    """The :class:`PerspectiveFit` of (n, 3) output-frame points seen at pixel centres (u, v); None when none fits."""
    best: tuple[float, PerspectiveFit] | None = None
    x, y, z = points[:, 0].double(), points[:, 1].double(), points[:, 2].double()
    u, v = u.double(), v.double()
    for depth in depths:
        w = depth - z
        if bool((w <= 0.05).any()):
            continue
        # u = cx + f * x / w and v = cy - f * y / w: linear in (f, cx, cy) for a fixed depth.
        n = len(x)
        a = torch.zeros(2 * n, 3, dtype=torch.float64)
        a[:n, 0], a[:n, 1] = x / w, 1.0
        a[n:, 0], a[n:, 2] = -y / w, 1.0
        b = torch.cat([u, v])
        solution = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
        error = float(((a @ solution - b) ** 2).mean())
        fit = PerspectiveFit(float(solution[0]), float(solution[1]), float(solution[2]), float(depth))
        if fit.f > 0 and (best is None or error < best[0]):
            best = (error, fit)
    return None if best is None else best[1]


@dataclass
class DepthFirstEncoding:
    """What :meth:`DepthFirstNet.encode` hands to ``decode``: the completion's features and the carving."""

    features: Any
    silhouette: torch.Tensor  # (S, S) bool, dilated
    camera: PerspectiveFit | None  # None: no camera fits the point map, so nothing is carved
    cloud: torch.Tensor  # (n, 3) the partial cloud in the output frame, for inspection and fitting


def visible_surface(pointmap: PointMapNet, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The partial cloud a point-map network sees in one (1, 3, S, S) image.

    Returns:
        points (n, 3) of the predicted mask's inner pixels, their box centred and longest
        side 1 (the completion network's input frame); their pixel centres (n, 2) as
        (u, v); the predicted mask (S, S) bool.

    Raises:
        ValueError: the mask holds fewer than 16 pixels.
    """
    pred, logits = pointmap(image)
    mask = logits[0, 0] > 0
    if int(mask.sum()) < 16:
        raise ValueError("the image model sees no object in the picture")
    # Points at the rim and at depth jumps are blends of the two sides ("flying pixels");
    # the completion network was trained with those pixels dropped, so drop them here too.
    core = -F.max_pool2d(-mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    rows, cols = torch.nonzero(core if int(core.sum()) >= 16 else mask, as_tuple=True)
    points = pred[0].permute(1, 2, 0)[rows, cols]
    lo, hi = points.min(0).values, points.max(0).values
    points = (points - (lo + hi) / 2) / (hi - lo).max().clamp_min(1e-6)
    pixels = torch.stack([cols, rows], 1).to(points.dtype) + 0.5
    return points, pixels, mask


class DepthFirstNet(nn.Module):
    """The depth-first image model: point map, partial cloud, completion, silhouette carving.

    ``encode((1, 3, S, S) image in [0, 1])`` predicts the visible surface, takes the
    pixels of the predicted mask as a partial cloud, puts it in its own viewer-centred
    frame (its box centred, longest side 1: the frame the completion network was
    trained in) and encodes it; ``decode(points, encoding)`` is the completion's field,
    carved by the silhouette: a query whose projection leaves the (dilated) mask, or
    lies behind the camera, is outside. The output frame is that viewer-centred frame.

    Args:
        pointmap: a :class:`PointMapNet`.
        completion: an occupancy network for clouds (ConvONet points).
        n_points: points given to the completion network (its training input size).
        dilate: pixels the silhouette is grown by before carving (mask errors at the rim).
    """

    method = "depthfirst"

    def __init__(self, pointmap: PointMapNet, completion: nn.Module, n_points: int = 3000, dilate: int = 2) -> None:
        super().__init__()
        self.pointmap = pointmap
        self.completion = completion
        self.n_points, self.dilate = int(n_points), int(dilate)

    @property
    def decoder(self) -> nn.Module:
        return self.completion.decoder

    def visible_surface(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(points (n, 3) in the output frame, pixel (n, 2) centres (u, v), mask (S, S)) of one image."""
        return visible_surface(self.pointmap, image)

    def encode(self, inputs: torch.Tensor, batch_size: int = 1) -> DepthFirstEncoding:
        if inputs.shape[0] != 1:
            raise ValueError("the depth-first image model encodes one image at a time")
        points, pixels, mask = self.visible_surface(inputs)
        camera = fit_perspective(points, pixels[:, 0], pixels[:, 1])
        # Evenly spread picks (deterministic): every pixel's point once when there are few.
        pick = torch.linspace(0, len(points) - 1, self.n_points, device=points.device).round().long()
        features = self.completion.encode(points[pick][None])
        grown = F.max_pool2d(mask[None, None].float(), 2 * self.dilate + 1, stride=1, padding=self.dilate)[0, 0] > 0
        return DepthFirstEncoding(features, grown, camera, points)

    def decode(self, points: torch.Tensor, c: DepthFirstEncoding, **kwargs: Any) -> torch.Tensor:
        logits = self.completion.decode(points, c.features, **kwargs)
        if c.camera is None:
            return logits
        u, v, in_front = c.camera.project(points)
        size_v, size_u = c.silhouette.shape
        col, row = torch.floor(u).long(), torch.floor(v).long()
        inside_image = in_front & (col >= 0) & (col < size_u) & (row >= 0) & (row < size_v)
        seen = torch.zeros_like(inside_image)
        seen[inside_image] = c.silhouette[row[inside_image], col[inside_image]]
        return torch.where(seen, logits, torch.full_like(logits, CARVED_LOGIT))


def build_depthfirst(arch: dict[str, Any], build_network: Any) -> DepthFirstNet:
    """The :class:`DepthFirstNet` an architecture block describes (``completion`` is itself one)."""
    widths = tuple(int(w) for w in arch.get("pointmap", {}).get("widths", (128, 96, 64, 48, 32)))
    if len(widths) != 5:
        raise ValueError("pointmap.widths must list 5 channel counts")
    return DepthFirstNet(PointMapNet(widths), build_network(arch["completion"]), int(arch.get("n_points", 3000)), int(arch.get("dilate", 2)))
