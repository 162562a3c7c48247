"""Option types shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Registered name (see `occrecon models`), org/name Hub id, or a model folder. Default: the bundled model for this input."),
]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub branch, tag or commit to load.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (GPU when present), cpu, cuda, cuda:N or mps.")]
# A string, not a Path: Path() drops the trailing slash that says "a folder".
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (one input only); its suffix picks the format. An existing folder or a path ending in / means --output-dir.", show_default=False)]
OutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-d", help="Folder for outputs, named after each input's stem. Default: current folder.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", "-f", help="obj, ply, off, glb or stl. Default: from -o's suffix, else obj.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, notes or summary.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per result on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist (default: skip them).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for subsampling, input noise and refinement.")]
