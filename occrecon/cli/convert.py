"""`occrecon convert`: upstream .pt checkpoints → model folders (and optionally the Hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from occrecon.cli import _output as out
from occrecon.cli._options import JsonOpt, QuietOpt


def convert_command(
    checkpoint: Annotated[Path, typer.Argument(help="Upstream checkpoint, e.g. shapenet_3plane.pt.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    arch: Annotated[str, typer.Option("--arch", help="Architecture (a registry name such as convonet-shapenet-3plane) or auto.")] = "auto",
    half: Annotated[bool, typer.Option("--half", help="Store float16 weights (half the size).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into an existing non-empty folder.")] = False,
    push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="Also upload the folder to this Hub repo (org/name).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Convert an original ONet/ConvONet checkpoint into config.json + model.safetensors.

    The file is never unpickled beyond tensors and numpy scalars: anything that
    would run code is refused.
    """
    from occrecon.convert import convert_checkpoint
    from occrecon.hub import push_folder
    from occrecon.loading import read_config

    if output.exists() and any(output.iterdir()) and not overwrite:
        raise typer.BadParameter(f"{output} exists and is not empty (pass --overwrite)", param_hint="--output")
    folder = convert_checkpoint(checkpoint, output, arch=arch, half=half)
    config = read_config(folder)
    url = push_folder(folder, push_to_hub, private=private) if push_to_hub else None
    if json_output:
        out.print_json({"input": str(checkpoint), "output": str(folder), "architecture": config["name"], "pushed": url})
    elif not quiet:
        out.stdout.print(f"{checkpoint} → {folder} ({config['name']})" + (f"; uploaded: {url}" if url else ""), highlight=False)
