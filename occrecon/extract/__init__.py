"""Occupancy field → mesh: hierarchical evaluation, marching cubes, refinement, simplification."""

from occrecon.extract.meshing import marching_cubes, simplify
from occrecon.extract.mise import GridValues, RefinementGuide, box_bounds, dense_grid, extract_grid, probability_to_logit
from occrecon.extract.mise_upstream import MiseOctree, UpstreamMise, extract_grid_upstream, upstream_logit
from occrecon.extract.refine import refine_vertices

__all__ = [
    "GridValues",
    "box_bounds",
    "dense_grid",
    "RefinementGuide",
    "extract_grid",
    "extract_grid_upstream",
    "marching_cubes",
    "MiseOctree",
    "probability_to_logit",
    "refine_vertices",
    "simplify",
    "UpstreamMise",
    "upstream_logit",
]
