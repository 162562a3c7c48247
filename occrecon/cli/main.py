"""The ``occrecon`` command: assembles the sub-commands and maps errors to exit codes."""

from __future__ import annotations

import os
import sys
import traceback

import typer

from occrecon._version import __version__
from occrecon.cli import _output as out

try:  # typer >= 0.20 vendors click; older releases use click itself
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click import ClickException as _ClickException

app = typer.Typer(
    name="occrecon",
    help="Meshes from a photo, a point cloud or a voxel grid with Occupancy Networks and Convolutional Occupancy Networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        out.stdout.print(f"occrecon {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Meshes from a photo, a point cloud or a voxel grid with ONet / ConvONet."""


def _register() -> None:
    from occrecon.cli.convert import convert_command
    from occrecon.cli.eval import eval_command
    from occrecon.cli.models import models_app
    from occrecon.cli.reconstruct import image_command, points_command, voxels_command
    from occrecon.cli.train import train_command

    app.command("image")(image_command)
    app.command("points")(points_command)
    app.command("voxels")(voxels_command)
    app.add_typer(models_app, name="models")
    app.command("convert")(convert_command)
    app.command("eval")(eval_command)
    app.command("train")(train_command)


_register()


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("OCCRECON_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit 0 all done, 1 some inputs failed, 2 usage or setup problem."""
    from occrecon.allocator import tune_cpu_allocator
    from occrecon.errors import InputError, OccreconError

    tune_cpu_allocator()
    args = sys.argv[1:] if argv is None else argv
    try:
        # Without standalone mode click returns the code a command exits with.
        code = app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        out.error("aborted")
        sys.exit(130)
    except _ClickException as exc:  # bad flags, missing arguments, typer.BadParameter
        exc.show(file=sys.stderr)
        sys.exit(2)
    except InputError as exc:
        if _debugging(args):
            traceback.print_exc()
        out.error(str(exc))
        sys.exit(1)
    except (OccreconError, ValueError) as exc:
        if _debugging(args):
            traceback.print_exc()
        out.error(str(exc))
        if not _debugging(args):
            out.note("(run with --debug for the traceback)")
        sys.exit(2)
    except KeyboardInterrupt:
        out.error("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
