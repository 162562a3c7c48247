"""`occrecon app`: a local web page over the same Python API as the command line (the ``[app]`` extra, Gradio).

Upload a photo, a point cloud or a voxel grid, pick a model and the main options, and see the
mesh in an interactive 3D viewer beside its preview picture, with the mesh to download in any
output format. The page holds no reconstruction logic of its own: a run is
:func:`occrecon.load_model` (each model loaded once), :func:`occrecon.reconstruct` with a
:class:`~occrecon.ReconstructOptions`, :func:`occrecon.io.mesh.write_mesh` and
:func:`occrecon.preview.render_preview`; a bad upload gets the one-line message the CLI prints.

Gradio is imported only by :func:`build_app`, so ``import occrecon`` never pays for it.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from occrecon.errors import OccreconError

__all__ = ["AppSettings", "build_app", "launch", "reconstruct_upload"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
UP_CHOICES = ("default", "auto", "y", "z", "x", "-y", "-z", "-x")
SCENE_CHOICES = ("auto", "object", "scene")
FORMATS = ("glb", "obj", "ply", "off", "stl")
DEFAULT_MODEL = "(the bundled model for the input)"

_HINT = 'the web app needs the optional Gradio package: pip install "occrecon[app]"'


class AppUnavailableError(OccreconError):
    """The ``[app]`` extra (Gradio) is not installed."""


class AppSettings:
    """What one page serves with: the device its models run on, and the models loaded so far (each once)."""

    def __init__(self, device: str = "auto", workdir: str | Path | None = None):
        self.device = device
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="occrecon-app-"))
        self.models: dict[str, Any] = {}
        self.lock = threading.Lock()  # one reconstruction at a time: the CPU threads are the process's

    def model(self, name: str) -> Any:
        from occrecon.loading import load_model

        if name not in self.models:
            self.models[name] = load_model(name, self.device, progress=False)
        return self.models[name]


def input_kind(path: str | Path, chosen: str = "auto") -> str:
    """``chosen`` unless ``auto``; else the kind the file's suffix names (a ``.npy``/``.npz`` array: a voxel grid when it reads as one, else a cloud)."""
    from occrecon.io.readers import IMAGE_SUFFIXES, VOXEL_SUFFIXES

    if chosen != "auto":
        return chosen
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in (".npy", ".npz"):
        try:
            from occrecon.io.readers import read_voxels

            read_voxels(path)
            return "voxels"
        except Exception:  # noqa: BLE001 - not a 3-D grid: a cloud (its reader says what is wrong, if anything)
            return "points"
    return "voxels" if suffix in VOXEL_SUFFIXES else "points"


def _options(threshold: float | None, resolution: str, steps: str, scene: str, up: str, colour: bool, kind: str) -> Any:
    from occrecon.options import ReconstructOptions

    def number(value: Any) -> int | None:
        return None if value in (None, "", "default") else int(value)

    clouds = kind == "points"
    return ReconstructOptions(
        threshold=float(threshold) if threshold else None,
        resolution=number(resolution),
        upsampling_steps=number(steps),
        scene={"auto": None, "object": False, "scene": True}[scene] if clouds else None,
        up=None if up == "default" or kind == "image" or (up == "auto" and kind == "voxels") else up,
        colour=bool(colour),
    )


def reconstruct_upload(settings: AppSettings, upload: str, kind: str, model: str, options: Any, file_format: str, on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One upload → a mesh file for the viewer (GLB), one in ``file_format`` to download, and the preview picture.

    Raises:
        OccreconError: the CLI's one-line message (a bad upload, an unknown model, no surface...).
    """
    from occrecon import registry
    from occrecon.io.mesh import write_mesh
    from occrecon.pipeline import ModelOnDemand, reconstruct
    from occrecon.preview import render_preview

    path = Path(upload)
    name = model if model and model != DEFAULT_MODEL else registry.default_model("scene" if options.scene else kind)
    with settings.lock:
        loaded = settings.model(name)
        scene_model = None
        if kind == "points" and (not model or model == DEFAULT_MODEL) and options.scene is None:
            scene_model = ModelOnDemand(lambda: settings.model(registry.default_model("scene")))
        result = reconstruct(loaded, kind, path, options, scene_model=scene_model, on_stage=on_stage)
    folder = Path(tempfile.mkdtemp(dir=settings.workdir))
    viewer = write_mesh(result.mesh, folder / f"{path.stem}.glb", file_format="glb")
    download = viewer if file_format == "glb" else write_mesh(result.mesh, folder / f"{path.stem}.{file_format}", file_format=file_format)
    picture = render_preview(result.mesh, result.input_view, up=result.up)
    summary = f"{len(result.mesh.vertices)} vertices, {len(result.mesh.faces)} faces, {result.timings.get('total', 0.0):.1f} s with {result.model_name}"
    return {"viewer": str(viewer), "download": str(download), "preview": picture, "summary": summary, "notes": list(result.notes)}


def one_line(exc: BaseException) -> str:
    """The message a page shows for a failed run: the CLI's line for occrecon's errors, else an internal error."""
    from occrecon.cli._output import safe_text

    if isinstance(exc, (OccreconError, ValueError, OSError)):
        return "Error: " + safe_text(str(exc))
    return "Error: internal error (a bug in occrecon, please report it): " + safe_text(f"{type(exc).__name__}: {exc}")


def _model_choices() -> list[str]:
    from occrecon import registry

    return [DEFAULT_MODEL] + [name for name in registry.list_models() if registry.get_entry(name).task != "unconditional"]


def build_app(settings: AppSettings | None = None) -> Any:
    """The Gradio page (a ``gradio.Blocks``); :func:`launch` serves it.

    Raises:
        AppUnavailableError: Gradio is not installed (``pip install "occrecon[app]"``).
    """
    try:
        import gradio as gr
    except ImportError as exc:
        raise AppUnavailableError(_HINT) from exc
    settings = settings or AppSettings()

    def run(upload: Any, model: str, threshold: Any, resolution: str, steps: str, scene: str, up: str, colour: bool, file_format: str, progress: Any = gr.Progress()) -> tuple:
        if upload is None:
            return None, None, None, "Error: upload a photo, a point cloud or a voxel grid first"
        path = upload if isinstance(upload, str) else getattr(upload, "name", str(upload))
        try:
            chosen = input_kind(path)
            options = _options(threshold, resolution, steps, scene, up, colour, chosen)
            options.validate(chosen)
            progress(0, desc="loading model")
            done = reconstruct_upload(settings, path, chosen, model, options, file_format, on_stage=lambda stage: progress(None, desc=stage))
        except Exception as exc:  # noqa: BLE001 - every failure is one line in the page
            return None, None, None, one_line(exc)
        return done["viewer"], done["download"], done["preview"], f"Done: {Path(path).name}: " + done["summary"]

    with gr.Blocks(title="occrecon") as page:
        gr.Markdown("## occrecon: a mesh from a photo, a point cloud or a voxel grid")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Photo, point cloud or voxel grid", type="filepath", elem_id="upload")
                model = gr.Dropdown(_model_choices(), value=DEFAULT_MODEL, label="Model", allow_custom_value=True, elem_id="model")
                with gr.Row():
                    threshold = gr.Number(value=None, label="Threshold (empty: the model's)", minimum=0, maximum=1, elem_id="threshold")
                    resolution = gr.Dropdown(["default", "16", "32", "64"], value="default", label="Resolution", elem_id="resolution")
                    steps = gr.Dropdown(["default", "0", "1", "2", "3"], value="default", label="Upsampling steps", elem_id="steps")
                with gr.Row():
                    scene = gr.Radio(list(SCENE_CHOICES), value="auto", label="Scene mode (clouds)", elem_id="scene")
                    up = gr.Dropdown(list(UP_CHOICES), value="default", label="Up axis", elem_id="up")
                with gr.Row():
                    colour = gr.Checkbox(value=True, label="Colours from the input", elem_id="colour")
                    file_format = gr.Dropdown(list(FORMATS), value="glb", label="Download format", elem_id="format")
                go = gr.Button("Reconstruct", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Textbox(label="Status", interactive=False, lines=1, max_lines=1, elem_id="status")
                viewer = gr.Model3D(label="Mesh", elem_id="viewer", height=420)
                preview = gr.Image(label="Preview", interactive=False, elem_id="preview")
                download = gr.File(label="Download", interactive=False, elem_id="download")
        go.click(run, [upload, model, threshold, resolution, steps, scene, up, colour, file_format], [viewer, download, preview, status])
    return page


def launch(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str = "auto", open_browser: bool = False) -> None:
    """Serve the page on ``host:port`` (loopback by default: nothing outside this machine reaches it) until interrupted."""
    page = build_app(AppSettings(device=device))
    page.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, inbrowser=open_browser, share=False, show_error=False, quiet=True)
