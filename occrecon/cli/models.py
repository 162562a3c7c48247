"""`occrecon models`: what can be loaded, and prefetching for offline use."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from occrecon.cli import _output as out
from occrecon.cli._options import JsonOpt, QuietOpt, RevisionOpt

models_app = typer.Typer(help="List known models, or download one into the Hub cache.", no_args_is_help=False)


def _folder_size(path) -> int | None:
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    except OSError:
        return None


def model_rows(task: str | None = None) -> list[dict]:
    """One dict per registered model: name, task, source, size, cached, description."""
    from occrecon import hub, registry

    rows = []
    for name in registry.list_models(task=task):
        entry = registry.get_entry(name)
        assert entry is not None
        if entry.source == "bundled":
            folder = registry.bundled_weights_dir() / name
            rows.append(dict(name=name, task=entry.task, source="bundled", size_bytes=_folder_size(folder), cached=True, repo_id=None, revision=None, description=entry.description))
            continue
        size = None
        cached = hub.is_cached(entry.repo_id, entry.revision)
        if cached:
            from huggingface_hub import try_to_load_from_cache

            weights = try_to_load_from_cache(entry.repo_id, "model.safetensors", cache_dir=hub.hub_cache_dir(), revision=entry.revision)
            if isinstance(weights, str):
                import os

                size = os.path.getsize(weights)
        rows.append(dict(name=name, task=entry.task, source="hub", size_bytes=size, cached=cached, repo_id=entry.repo_id, revision=entry.revision, description=entry.description))
    return rows


def _human(size: int | None) -> str:
    if size is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


@models_app.callback(invoke_without_command=True)
def list_command(
    ctx: typer.Context,
    task: Annotated[Optional[str], typer.Option("--task", help="Only models for image, points, voxels, scene or unconditional.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List the known models (name, task, source, size, whether cached)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = model_rows(task)
    if json_output:
        for row in rows:
            out.print_json(row)
        return
    table = Table(title="occrecon models", show_lines=False)
    for column in ("name", "task", "source", "size", "cached"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", overflow="fold")
    for row in rows:
        table.add_row(
            row["name"],
            row["task"],
            row["source"] if row["source"] == "bundled" else f"hub: {row['repo_id']}",
            _human(row["size_bytes"]),
            "yes" if row["cached"] else "no",
            row["description"],
        )
    out.stdout.print(table)


@models_app.command("download")
def download_command(
    names: Annotated[list[str], typer.Argument(help="Registered names or org/name Hub ids.")],
    revision: RevisionOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Fetch models into the Hugging Face cache so later runs work offline."""
    from occrecon.loading import locate_model

    for name in names:
        folder, display, source, rev = locate_model(name, revision=revision, progress=not quiet)
        if json_output:
            out.print_json({"model": display, "source": source, "revision": rev, "path": str(folder)})
        elif not quiet:
            out.stdout.print(f"{display}: {source} model at {folder}" + (f" (revision {rev})" if rev else ""), highlight=False)
        else:
            out.stdout.print(str(folder), highlight=False)
