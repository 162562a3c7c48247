"""`occrecon preview MESH...`: the preview picture of any mesh file, as `--preview` draws it beside a reconstruction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from occrecon.cli import _output as out
from occrecon.cli._options import DebugOpt, JsonOpt, QuietOpt

MESH_SUFFIXES = {".obj", ".ply", ".off", ".glb", ".gltf", ".stl"}


def preview_command(
    meshes: Annotated[list[str], typer.Argument(help="Mesh files (OBJ, PLY, OFF, GLB, STL), folders and glob patterns.", show_default=False)],
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-d", help="Folder for the pictures, <stem>.png each. Default: beside each mesh.")] = None,
    up: Annotated[str, typer.Option("--up", help="The meshes' up axis, drawn pointing up: y, z, x, -y, -z or -x.")] = "y",
    input_file: Annotated[Optional[Path], typer.Option("--input", help="Draw this input (a photo, a point cloud or a voxel grid, in the meshes' frame) as the first panel.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder arguments.")] = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write a preview picture of each mesh, <stem>.png: the shaded mesh from three sides (with its vertex colours), up axis up.

    The same picture as `--preview` on the reconstruction commands, for any mesh, e.g. beside `occrecon eval`. A PNG of that name that is not an occrecon preview is never replaced.
    """
    from occrecon.frames import UP_AXES
    from occrecon.io.paths import expand_inputs

    if up not in UP_AXES:
        raise typer.BadParameter(f"--up must be one of {', '.join(UP_AXES)}, got {up!r}")
    view_input = _input_view(input_file) if input_file is not None else None
    failed = done = 0
    for item in expand_inputs(meshes, MESH_SUFFIXES, recursive=recursive):
        target = (output_dir / f"{item.path.stem}.png") if output_dir is not None else item.path.with_suffix(".png")
        row = {"input": str(item.path), "output": str(target)}
        try:
            if item.problem:
                raise ValueError(f"{item.path}: {item.problem}")
            written = _one(item.path, target, view_input, up, protect=(item.path,) + ((input_file,) if input_file else ()))
        except Exception as exc:  # one bad file must not stop the others
            failed += 1
            message = str(exc) if str(item.path) in str(exc) else f"{item.path}: {exc}"
            if debug:
                out.print_traceback()
            if json_output:
                out.print_json({**row, "status": "failed", "error": message})
            out.error(message)
            continue
        done += 1
        if json_output:
            out.print_json({**row, "status": "ok", "preview": str(written)})
        out.ok_line(item.path, written, quiet=quiet)
    out.plain(f"{done} done, {failed} failed", quiet=quiet)
    raise typer.Exit(1 if failed else 0)


def _one(path: Path, target: Path, view_input, up: str, protect: tuple) -> Path:
    from occrecon.evaluation import load_mesh
    from occrecon.preview import check_preview_target, png_bytes, render_preview
    from occrecon.io.atomic import write_bytes_atomic

    mesh = load_mesh(path)
    if len(mesh.faces) == 0:
        raise ValueError(f"{path}: holds no faces; nothing to draw")
    check_preview_target(target, protect)
    picture = render_preview(mesh, view_input, up=up)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(target, png_bytes(picture))


def _input_view(path: Path):
    """``--input`` as a preview's first panel: a photo (as given), a cloud, or a grid's filled cells."""
    from occrecon.io.readers import IMAGE_SUFFIXES, POINT_SUFFIXES, read_image, read_points, read_voxels
    from occrecon.preview import InputView, voxel_cells

    try:
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return InputView(image=read_image(path))
        if suffix in POINT_SUFFIXES and suffix not in (".npy", ".npz"):
            cloud = read_points(path)
            return InputView(points=cloud.points, colours=cloud.colours)
        try:
            grid = read_voxels(path)
        except Exception:
            cloud = read_points(path)
            return InputView(points=cloud.points, colours=cloud.colours)
        cell = grid.scale / max(grid.occupancy.shape)
        cells, size = voxel_cells(grid.occupancy, grid.translate, cell)
        return InputView(cells=cells, cell_size=size)
    except Exception as exc:
        raise typer.BadParameter(f"--input {exc}") from None
