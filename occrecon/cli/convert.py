"""`occrecon convert`: upstream .pt checkpoints → model folders (and optionally the Hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from occrecon.cli import _output as out
from occrecon.cli._options import JsonOpt, QuietOpt

EXIT_SETUP = 2


def _fail(message: str) -> NoReturn:
    """One escaped error line, exit 2 (a setup problem: where to write, the network)."""
    out.error(message)
    raise typer.Exit(EXIT_SETUP)


def _check_output_folder(output: Path, overwrite: bool) -> None:
    """Refuse ``-o`` before converting anything: a file, a non-empty folder without --overwrite, an unwritable place."""
    if output.exists() or output.is_symlink():
        if not output.is_dir():
            _fail(f"{output}: exists and is not a folder; -o names the model folder to write")
        try:
            non_empty = any(output.iterdir())
        except OSError as error:
            _fail(out.os_error_message(error, output, "cannot read the folder"))
        if non_empty and not overwrite:
            _fail(f"{output}: exists and is not empty (pass --overwrite)")
        return
    # The nearest existing folder above must be a folder (not a file) that we can create entries in.
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        _fail(f"{output}: {parent} is a file, not a folder")


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

    Where to write is checked first; a write that fails all the same (read-only, disk full) or an
    upload that cannot reach the Hub ends with one line and exit code 2.
    """
    from occrecon.convert import convert_checkpoint
    from occrecon.errors import OccreconError
    from occrecon.hub import push_folder
    from occrecon.loading import read_config

    _check_output_folder(output, overwrite)
    try:
        folder = convert_checkpoint(checkpoint, output, arch=arch, half=half)
        config = read_config(folder)
    except OSError as error:
        target = error.filename if error.filename is not None else output
        doing = "cannot read the checkpoint" if str(target) == str(checkpoint) else "cannot write the model folder"
        _fail(out.os_error_message(error, target, doing))
    architecture = config.name if hasattr(config, "name") else config["name"]
    url = None
    if push_to_hub:
        try:
            url = push_folder(folder, push_to_hub, private=private)
        except OccreconError:
            raise  # already one line (the CLI's main prints it)
        except Exception as error:  # noqa: BLE001 - offline, refused, unauthorised: huggingface_hub raises many types
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            _fail(f"{push_to_hub}: upload failed ({type(error).__name__}: {reason[:300]}); the converted model is in {folder}")
    if json_output:
        out.print_json({"input": str(checkpoint), "output": str(folder), "architecture": architecture, "pushed": url})
    elif not quiet:
        out.result_line(str(checkpoint), " → ", str(folder), f" ({architecture})", *([f"; uploaded: {url}"] if url else []))
