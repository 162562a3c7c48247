"""The ``occrecon`` command: assembles the sub-commands and maps errors to exit codes."""

from __future__ import annotations

import os
import sys

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
    # Help texts say "[default: ...]" and name files like "scan[final].ply": never read them as rich markup.
    rich_markup_mode=None,
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
    from occrecon.cli.fit import extract_command, fit_command
    from occrecon.cli.models import models_app
    from occrecon.cli.app import app_command
    from occrecon.cli.preview import preview_command
    from occrecon.cli.sample import sample_command
    from occrecon.cli.reconstruct import iter_commands
    from occrecon.cli.train import train_command

    for name, command in iter_commands():
        app.command(name)(command)
    app.add_typer(models_app, name="models")
    app.command("convert")(convert_command)
    app.command("eval")(eval_command)
    app.command("train")(train_command)
    app.command("sample")(sample_command)
    app.command("preview")(preview_command)
    app.command("app")(app_command)
    app.command("fit")(fit_command)
    app.command("extract")(extract_command)


_register()


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("OCCRECON_DEBUG", "") not in ("", "0")


EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""Exit codes: all done; some inputs failed; a usage or setup problem; a bug in occrecon; interrupted."""


def _exit_code(exc: BaseException) -> tuple[int, str]:
    """The one table from exceptions to exit codes, with the line to show.

    Inputs that cannot be used are per-file failures (1); every other error occrecon raises
    on purpose (options, models, setup) is a usage or setup problem (2), as is an operating
    system error outside any input (a full disk, a read-only folder) or running out of memory.
    Anything else is a bug in occrecon (3), never a usage error.
    """
    from occrecon.errors import InputError, OccreconError

    if isinstance(exc, InputError):
        return EXIT_SOME_FAILED, str(exc)
    if isinstance(exc, OccreconError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, OSError):
        return EXIT_USAGE, out.os_error_message(exc, doing="cannot read or write")
    if isinstance(exc, MemoryError):
        return EXIT_USAGE, "not enough memory; lower --resolution, --upsampling-steps or --points-batch-size"
    return EXIT_INTERNAL, f"internal error (a bug in occrecon, please report it): {type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit 0 all done, 1 some inputs failed, 2 usage or setup problem, 3 a bug, 130 interrupted."""
    from occrecon.allocator import tune_cpu_allocator
    from occrecon.io.atomic import Terminated, install_sigterm_handler

    tune_cpu_allocator()
    install_sigterm_handler()  # SLURM's SIGTERM unwinds like Ctrl-C: temporary files and claims are removed
    args = sys.argv[1:] if argv is None else argv
    try:
        # Without standalone mode click returns the code a command exits with.
        code = app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        out.error("aborted")
        sys.exit(EXIT_INTERRUPTED)
    except _ClickException as exc:  # bad flags, missing arguments, typer.BadParameter
        out.click_error(exc)
        sys.exit(EXIT_USAGE)
    except Terminated as exc:
        out.error(f"terminated (signal {exc.signum})")
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        out.error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        code, message = _exit_code(exc)
        if _debugging(args):
            out.print_traceback()
        out.error(message)
        if code != EXIT_SOME_FAILED and not _debugging(args):
            out.note("(run with --debug for the traceback)")
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
