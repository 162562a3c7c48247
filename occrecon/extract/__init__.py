"""Occupancy field → mesh: hierarchical evaluation, marching cubes, refinement, simplification."""

from occrecon.extract.meshing import marching_cubes, simplify
from occrecon.extract.mise import GridValues, RefinementGuide, box_bounds, dense_grid, extract_grid, probability_to_logit
from occrecon.extract.refine import refine_vertices

__all__ = [
    "GridValues",
    "box_bounds",
    "dense_grid",
    "RefinementGuide",
    "extract_grid",
    "marching_cubes",
    "probability_to_logit",
    "refine_vertices",
    "simplify",
]
