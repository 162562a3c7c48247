"""Cut an object out of a photo on a busy background: GrabCut (Rother et al., SIGGRAPH 2004).

A flat backdrop is told apart by its colour alone (:func:`occrecon.preprocess.image.estimate_background`);
grass, carpet or a room is not. GrabCut models the colours of the object and of the
background each with a Gaussian mixture, labels every pixel by a minimum graph cut
that weighs those colour costs against keeping neighbouring, similar pixels
together, refits the mixtures to the new labels and cuts again. The image border is
taken as background and the rest starts as object, as GrabCut starts from a box
drawn around the object. The cut uses scipy's maximum flow, on a copy of the photo
at most :data:`CUT_SIDE` pixels wide: the network sees 128-224 pixels anyway.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

__all__ = ["grabcut", "grabcut_photo", "CUT_SIDE"]

CUT_SIDE = 160  # longest side of the copy that is cut
_COMPONENTS = 5  # mixture components per class, as in the paper
_SMOOTHNESS = 50.0  # the paper's gamma
_ITERATIONS = 4
_BORDER_BAND = 0.04  # share of the shorter side taken as sure background along each edge
_CAPACITY_SCALE = 100.0  # maximum_flow takes integer capacities
_FLAT_RANGE = 24  # a row or column whose colours span no more than this (0-255) is a bar, not photo


class _ColourMixture:
    """A Gaussian mixture over RGB colours, fitted by hard assignment as GrabCut does."""

    def __init__(self, colours: np.ndarray, labels: np.ndarray) -> None:
        kept = [k for k in np.unique(labels) if np.count_nonzero(labels == k) >= 4]
        if not kept:  # too few pixels to split: one component
            kept, labels = [0], np.zeros(len(colours), dtype=np.int64)
        members = [colours[labels == k] for k in kept]
        self.weights = np.array([len(m) for m in members], dtype=np.float64) / len(colours)
        self.means = np.array([m.mean(axis=0) for m in members])
        # The ridge keeps flat-coloured components (a white wall) invertible.
        covariances = np.array([np.cov(m.T) if len(m) > 1 else np.zeros((3, 3)) for m in members]) + np.eye(3)
        self.inverses = np.linalg.inv(covariances)
        self.log_dets = np.linalg.slogdet(covariances)[1]

    def component_costs(self, colours: np.ndarray) -> np.ndarray:
        """(n, k) negative log of each component's weighted density at each colour."""
        d = colours[:, None, :] - self.means[None]
        mahalanobis = np.einsum("nki,kij,nkj->nk", d, self.inverses, d)
        return 0.5 * mahalanobis + 0.5 * self.log_dets - np.log(self.weights)

    def costs(self, colours: np.ndarray) -> np.ndarray:
        """(n,) negative log-likelihood of each colour under the mixture."""
        c = -self.component_costs(colours)
        top = c.max(axis=1)
        return -(top + np.log(np.exp(c - top[:, None]).sum(axis=1)))

    def refitted(self, colours: np.ndarray) -> "_ColourMixture":
        return _ColourMixture(colours, self.component_costs(colours).argmin(axis=1))


def _kmeans_labels(colours: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 8) -> np.ndarray:
    centres = colours[rng.choice(len(colours), size=min(k, len(colours)), replace=False)]
    labels = np.zeros(len(colours), dtype=np.int64)
    for _ in range(iterations):
        labels = ((colours[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
        centres = np.array([colours[labels == j].mean(axis=0) if np.any(labels == j) else centres[j] for j in range(len(centres))])
    return labels


def _neighbour_links(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-neighbour pixel pairs (m, 2) and their smoothness weights (m,): high between similar colours."""
    h, w = rgb.shape[:2]
    index = np.arange(h * w).reshape(h, w)
    pairs, lengths = [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = index[: h - dy, : w - dx] if dx >= 0 else index[: h - dy, -dx:]
        b = index[dy:, dx:] if dx >= 0 else index[dy:, : w + dx]
        pairs.append(np.stack([a.ravel(), b.ravel()], axis=1))
        lengths.append(np.full(a.size, np.hypot(dy, dx)))
    pair = np.concatenate(pairs)
    colours = rgb.reshape(-1, 3)
    squared = ((colours[pair[:, 0]] - colours[pair[:, 1]]) ** 2).sum(axis=1)
    beta = 1.0 / (2.0 * squared.mean() + 1e-9)  # the paper's contrast normalisation
    return pair, _SMOOTHNESS * np.exp(-beta * squared) / np.concatenate(lengths)


def _minimum_cut(pair: np.ndarray, smooth: np.ndarray, object_cost: np.ndarray, background_cost: np.ndarray) -> np.ndarray:
    """Labels (n,) bool, True for object, minimising the colour costs plus the cut smoothness links."""
    n = len(object_cost)
    source, sink = n, n + 1  # source side = object
    # A pixel left on the source side pays its object cost through its sink link, and vice versa.
    rows = np.concatenate([pair[:, 0], pair[:, 1], np.full(n, source), np.arange(n)])
    cols = np.concatenate([pair[:, 1], pair[:, 0], np.arange(n), np.full(n, sink)])
    capacity = np.concatenate([smooth, smooth, background_cost, object_cost])
    capacity = np.clip(np.round(capacity * _CAPACITY_SCALE), 0, 2**30).astype(np.int32)
    graph = csr_matrix((capacity, (rows, cols)), shape=(n + 2, n + 2))
    graph.sum_duplicates()
    residual = graph - maximum_flow(graph, source, sink, method="dinic").flow
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = np.zeros(n + 2, dtype=bool)
    reached[breadth_first_order(residual, source, directed=True, return_predecessors=False)] = True
    return reached[:n]


def grabcut(rgb: np.ndarray, sure_background: np.ndarray, *, iterations: int = _ITERATIONS, seed: int = 0) -> np.ndarray:
    """Object pixels of an image whose ``sure_background`` pixels are known to be background.

    Args:
        rgb: (H, W, 3) colours in 0-255 (any numeric dtype).
        sure_background: (H, W) bool; every other pixel starts as object.
        iterations: cut-and-refit rounds.
        seed: seeds the k-means that starts the mixtures (results are reproducible).

    Returns:
        (H, W) bool, True on the object; all False when nothing stands out.
    """
    h, w = sure_background.shape
    colours = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    sure = sure_background.ravel()
    labels = ~sure
    if np.count_nonzero(labels) < 8 or np.count_nonzero(sure) < 8:
        return labels.reshape(h, w)
    rng = np.random.default_rng(seed)
    pair, smooth = _neighbour_links(colours.reshape(h, w, 3))
    object_model = _ColourMixture(colours[labels], _kmeans_labels(colours[labels], _COMPONENTS, rng))
    background_model = _ColourMixture(colours[~labels], _kmeans_labels(colours[~labels], _COMPONENTS, rng))
    for _ in range(iterations):
        object_cost, background_cost = object_model.costs(colours), background_model.costs(colours)
        floor = min(object_cost.min(), background_cost.min())
        object_cost, background_cost = object_cost - floor, background_cost - floor
        # Sure background never pays to be background and cannot afford to be object.
        object_cost[sure], background_cost[sure] = 1e6, 0.0
        labels = _minimum_cut(pair, smooth, object_cost, background_cost)
        if np.count_nonzero(labels) < 8:
            break
        object_model, background_model = object_model.refitted(colours[labels]), background_model.refitted(colours[~labels])
    return labels.reshape(h, w)


def _content_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), end-exclusive, of the photo inside flat bars along its edges (letterboxing, padding)."""
    flat_rows = np.ptp(rgb, axis=1).max(axis=-1) <= _FLAT_RANGE
    flat_cols = np.ptp(rgb, axis=0).max(axis=-1) <= _FLAT_RANGE

    def inner(flat: np.ndarray) -> tuple[int, int]:
        if flat.all():  # one flat colour: nothing to trim
            return 0, len(flat)
        return int(np.argmin(flat)), len(flat) - int(np.argmin(flat[::-1]))

    (top, bottom), (left, right) = inner(flat_rows), inner(flat_cols)
    return top, bottom, left, right


def grabcut_photo(rgb: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Object pixels of an (H, W, 3) uint8 photo whose object lies inside its frame.

    Flat bars along the edges (letterboxing) are background; within them, a band
    along the photo's own edges is, and GrabCut decides the rest.
    """
    top, bottom, left, right = _content_box(rgb)
    full = np.zeros(rgb.shape[:2], dtype=bool)
    if bottom - top < 16 or right - left < 16:
        return full
    full[top:bottom, left:right] = _grabcut_inside(np.ascontiguousarray(rgb[top:bottom, left:right]), seed)
    return full


def _grabcut_inside(rgb: np.ndarray, seed: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = min(1.0, CUT_SIDE / max(h, w))
    small_size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = np.asarray(Image.fromarray(rgb).resize(small_size, Image.Resampling.BILINEAR))
    band = max(2, round(_BORDER_BAND * min(small.shape[:2])))
    border = np.zeros(small.shape[:2], dtype=bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True
    labels = grabcut(small, border, seed=seed)
    # Back to full size: a smooth edge from the bilinear upsampling, halved at 0.5.
    upsampled = Image.fromarray(labels.astype(np.uint8) * 255).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(upsampled) >= 128
