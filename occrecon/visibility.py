"""Whether a cloud was seen from one side only (a single depth image, a one-view scan).

An object model trained on whole surfaces shreds such a cloud into pieces: it was never
shown an object with no back. A completion model, trained on one-view clouds, is the
one to use, and :func:`one_sided_note` says so.

The test (:func:`one_sided`): seen along the direction it was scanned from, a one-view
cloud is a single layer, since a ray from the sensor stops at the first surface it meets;
a whole surface has a front and a back along every direction. So the cloud is looked at
along :data:`VIEW_DIRECTIONS` directions spread over a hemisphere (a direction and its
opposite show the same layers), binned into a 16×16 grid across each, and a bin counts as
two layers where its depths part by a gap wider than :data:`MIN_GAP` of the longest side
and three times the spread on either side of the gap (sensor noise is a spread, not a
gap). A cloud is one-sided when along some direction at most :data:`MAX_TWO_LAYER_SHARE`
of the bins hold two layers, and the directions from its centre to its points leave part
of the sphere empty (:data:`MAX_DIRECTION_COVERAGE`; a whole thin object, a plane or a
chair seen edge-on, is one layer too, but it is all around its centre). The thresholds
were chosen on procedural one-view clouds and whole surfaces (``benchmarks/up_axis.py``).
"""

from __future__ import annotations

import numpy as np

from occrecon.planes import normalised, sample_points

VIEW_DIRECTIONS = 48
CELLS = 16
MIN_GAP = 0.015
MAX_TWO_LAYER_SHARE = 0.03
MAX_DIRECTION_COVERAGE = 0.9
SAMPLE_POINTS = 4000

PARTIAL_MODEL = "convonet-shapenet-3plane-partial"
"""Upstream's object model trained on partial clouds (loaded from the Hub)."""

BUNDLED_PARTIAL_MODEL = "convonet-partial-synthetic"
"""The bundled completion model, named in the note once its weights are in the bundled folder."""

PARTIAL_MODELS = (PARTIAL_MODEL, BUNDLED_PARTIAL_MODEL)


def sphere_directions(count: int, hemisphere: bool = False) -> np.ndarray:
    """(count, 3) unit vectors spread evenly (a Fibonacci lattice) over the sphere, or over the half with y ≥ 0."""
    total = 2 * count if hemisphere else count
    index = np.arange(total) + 0.5
    polar = np.arccos(1 - 2 * index / total)
    azimuth = np.pi * (1 + 5**0.5) * index
    directions = np.c_[np.cos(azimuth) * np.sin(polar), np.cos(polar), np.sin(azimuth) * np.sin(polar)]
    return directions[directions[:, 1] >= 0][:count] if hemisphere else directions


def two_layer_share(points: np.ndarray, direction: np.ndarray, cells: int = CELLS, min_gap: float = MIN_GAP) -> float:
    """The share of the occupied bins across ``direction`` whose points part into two layers along it (see the module's docstring)."""
    return layers(points, direction, cells, min_gap)[0]


def layers(points: np.ndarray, direction: np.ndarray, cells: int = CELLS, min_gap: float = MIN_GAP) -> tuple[float, int]:
    """(:func:`two_layer_share`, the number of occupied bins: how much of the cloud faces ``direction``)."""
    longest = float(np.ptp(points, axis=0).max())
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    across = np.cross(direction, helper)
    across /= np.linalg.norm(across)
    plane = np.c_[points @ across, points @ np.cross(direction, across)]
    depth = points @ direction / longest
    bins = np.floor((plane - plane.min(axis=0)) / (longest / cells)).astype(np.int64)
    key = bins[:, 0] * (cells + 1) + bins[:, 1]
    order = np.lexsort((depth, key))
    key, depth = key[order], depth[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    gaps = np.r_[np.where(key[1:] == key[:-1], np.diff(depth), -1.0), -1.0]  # gaps[i]: from point i to i + 1, in one bin
    bin_of = np.repeat(np.arange(len(starts)), ends - starts)
    by_gap = np.lexsort((gaps, bin_of))  # bin by bin, each bin's widest gap last
    widest = by_gap[np.r_[np.flatnonzero(np.diff(bin_of[by_gap])), len(key) - 1]]
    sums, squares = np.r_[0.0, np.cumsum(depth)], np.r_[0.0, np.cumsum(depth * depth)]

    def spread(first: np.ndarray, stop: np.ndarray) -> np.ndarray:
        count = np.maximum(stop - first, 1)
        mean = (sums[stop] - sums[first]) / count
        return np.sqrt(np.maximum((squares[stop] - squares[first]) / count - mean * mean, 0.0))

    below, above = spread(starts, widest + 1), spread(widest + 1, ends)
    enough = (widest + 1 - starts >= 2) & (ends - widest - 1 >= 2)
    two = enough & (gaps[widest] > min_gap) & (gaps[widest] > 3.0 * np.maximum(below, above))
    return float(np.count_nonzero(two)) / len(starts), len(starts)


def direction_coverage(points: np.ndarray, bins: int = 64) -> float:
    """The share of ``bins`` even patches of the sphere that the directions from the points' centroid to them reach."""
    offsets = points - points.mean(axis=0)
    lengths = np.linalg.norm(offsets, axis=1)
    offsets = offsets[lengths > 0] / lengths[lengths > 0, None]
    if not len(offsets):
        return 0.0
    return len(np.unique(np.argmax(offsets @ sphere_directions(bins).T, axis=1))) / bins


def one_sided(points: np.ndarray) -> bool:
    """Whether a cloud looks seen from one side only (see the module's docstring)."""
    cloud = normalised(sample_points(points, SAMPLE_POINTS))
    if len(cloud) < 100 or not np.ptp(cloud, axis=0).max() > 0:
        return False
    if direction_coverage(cloud) > MAX_DIRECTION_COVERAGE:
        return False
    return min(two_layer_share(cloud, view) for view in sphere_directions(VIEW_DIRECTIONS, hemisphere=True)) <= MAX_TWO_LAYER_SHARE


def one_sided_note(points: np.ndarray, model_name: str, bundled: bool = False) -> str | None:
    """A note naming the completion models when ``points`` look one-sided and ``model_name`` is not one of them.

    ``bundled``: the bundled completion model's weights are installed (it is named too).
    """
    if model_name in PARTIAL_MODELS or not one_sided(points):
        return None
    models = f"--model {BUNDLED_PARTIAL_MODEL} (bundled) or --model {PARTIAL_MODEL} (upstream's)" if bundled else f"--model {PARTIAL_MODEL} (upstream's)"
    return f"the cloud looks seen from one side only (a single view): {model_name} expects whole surfaces and may leave it in pieces; {models} completes one-view clouds"
