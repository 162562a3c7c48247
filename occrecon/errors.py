"""Typed exceptions raised by the library.

The CLI maps them to exit codes in one table (``occrecon.cli._errors``): input
problems are per-file failures (exit 1 in a batch), everything else is a setup
or usage problem (exit 2).
"""

from __future__ import annotations

from pathlib import Path


class OccreconError(Exception):
    """Base class of every error occrecon raises on purpose."""


class InputError(OccreconError):
    """An input file (or array) cannot be used; the message names it and the problem."""

    def __init__(self, source: str | Path | None, problem: str):
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)


class NoSurfaceError(InputError):
    """The network's field does not cross the threshold anywhere in the box: there is no mesh to make.

    ``preview`` is what the network saw (as ``Reconstruction.preview``), so that a caller can
    show whether the input was read as meant (``--save-input`` writes it).
    """

    def __init__(self, source: str | Path | None, problem: str, preview: object = None):
        super().__init__(source, problem)
        self.preview = preview


class UnknownModelError(OccreconError):
    """A model name is neither registered, a local folder, nor an ``org/name`` Hub id."""


class ModelUnavailableError(OccreconError):
    """A known model cannot be fetched (offline, missing or gated repo, no network)."""


class InvalidModelFolderError(OccreconError):
    """A model folder lacks ``config.json``/``model.safetensors`` or they do not fit together."""


class CheckpointMismatchError(OccreconError):
    """An upstream checkpoint's keys or shapes do not fit the requested architecture."""


class UnsafeCheckpointError(OccreconError):
    """A checkpoint would need arbitrary code to unpickle; it is refused."""


class OutputExistsError(OccreconError):
    """The output file exists and overwriting was not asked for."""


class NonFiniteFieldError(OccreconError):
    """The occupancy network returned NaN or infinite values: there is no surface to trust.

    Its input or its weights are not finite (an infinite ``--input-noise``, weights that are NaN
    or overflow); a mesh made from such a field would be NaN vertices reported as success.
    """


class NonFiniteMeshError(OccreconError):
    """A mesh has NaN or infinite vertex coordinates; it is never written nor scored."""


class OptionError(OccreconError, ValueError):
    """A setting is out of range or does not apply to this input (a usage error; a ValueError for the API's callers)."""
