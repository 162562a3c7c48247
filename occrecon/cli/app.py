"""`occrecon app`: the local web page (the ``[app]`` extra), served on loopback by default."""

from __future__ import annotations

from typing import Annotated

import typer

from occrecon.cli import _output as out
from occrecon.cli._options import DeviceOpt


def app_command(
    host: Annotated[str, typer.Option("--host", help="Address to serve on; 127.0.0.1 (the default) lets only this machine in, 0.0.0.0 every machine that can reach it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 7860,
    device: DeviceOpt = "auto",
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a browser.")] = False,
) -> None:
    """Serve a web page to reconstruct uploads and look at the meshes (pip install "occrecon[app]")."""
    from occrecon.app import build_app, launch  # noqa: F401 - the import error is the message
    from occrecon.device import resolve_device
    from occrecon.options import OptionError

    try:
        resolve_device(device)
    except OptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    out.note(f"occrecon app on http://{host}:{port} (Ctrl-C stops it)")
    launch(host, port, device=device, open_browser=open_browser)
