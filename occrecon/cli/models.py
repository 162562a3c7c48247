"""`occrecon models`: what can be loaded, where it comes from, and prefetching for offline use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from occrecon.cli import _output as out
from occrecon.cli._options import JsonOpt, QuietOpt, RevisionOpt

models_app = typer.Typer(help="List known models, or download them into the Hugging Face cache.", no_args_is_help=False)


def _folder_size(path: Path) -> int | None:
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    except OSError:
        return None


def _hub_weights_size(repo_id: str, revision: str | None) -> int | None:
    from huggingface_hub import try_to_load_from_cache

    from occrecon import hub

    weights = try_to_load_from_cache(repo_id, "model.safetensors", cache_dir=hub.hub_cache_dir(), revision=revision)
    return os.path.getsize(weights) if isinstance(weights, str) else None


def model_rows(task: str | None = None) -> list[dict[str, Any]]:
    """One dict per registered model: where it comes from and whether (and from where) it is cached.

    Keys: ``name``, ``task``, ``source`` (``bundled`` or ``hub``: what the registry
    names), ``comes_from`` (``bundled``; ``hub`` or ``url`` once cached from there;
    ``hub, else url`` before: the Hub repo is tried first, the original checkpoint
    where the repo does not exist), ``cached``, ``cached_from``, ``path``,
    ``size_bytes`` (the cached folder's), ``weights_bytes`` (float32 weights, what a
    download converts to), ``repo_id``, ``revision``, ``url`` (the original
    checkpoint), ``sha256_prefix`` (its file name's), ``sha256`` (of the file a
    cached conversion came from), ``description``.
    """
    from occrecon import hub, registry, upstream

    rows = []
    for name in registry.list_models(task=task):
        entry = registry.get_entry(name)
        assert entry is not None
        row: dict[str, Any] = dict(
            name=name, task=entry.task, source=entry.source, comes_from="bundled", cached=True, cached_from="bundled",
            path=None, size_bytes=None, weights_bytes=upstream.upstream_weight_bytes(entry), repo_id=entry.repo_id,
            revision=entry.revision, url=entry.url, sha256_prefix=entry.sha256_prefix, sha256=None, description=entry.description,
        )
        if entry.source == "bundled":
            folder = registry.bundled_weights_dir() / name
            row.update(path=str(folder), size_bytes=_folder_size(folder))
        elif hub.is_cached(entry.repo_id, entry.revision):
            row.update(comes_from="hub", cached_from="hub", size_bytes=_hub_weights_size(entry.repo_id, entry.revision))
        elif entry.url and (record := upstream.cache_record(name)) is not None:
            folder = record["path"]
            row.update(comes_from="url", cached_from="url", path=str(folder), size_bytes=_folder_size(folder), sha256=record["sha256"])
        else:
            row.update(comes_from="hub, else url" if entry.url else "hub", cached=False, cached_from=None)
        rows.append(row)
    return rows


def _human(size: int | None, about: bool = False) -> str:
    if size is None:
        return "–"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            return f"~{text}" if about else text
        value /= 1024
    return str(size)


_FROM_LABELS = {"bundled": "bundled", "hub": "Hub", "url": "original .pt", "hub, else url": "Hub, else .pt"}


@models_app.callback(invoke_without_command=True)
def list_command(
    ctx: typer.Context,
    task: Annotated[Optional[str], typer.Option("--task", help="Only models for image, points, voxels, scene or unconditional.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List the known models: task, where each comes from (bundled, Hub, original checkpoint), size, whether cached."""
    if ctx.invoked_subcommand is not None:
        return
    from occrecon.config import TASKS

    if task is not None and task not in TASKS:
        raise typer.BadParameter(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    rows = model_rows(task)
    if json_output:
        for row in rows:
            out.print_json(row)
        return
    # Piped (grep, a file) every column comes, unwrapped: no terminal width to fit. On a terminal
    # narrower than 120 columns the description is left out rather than squeezed to nothing, and the
    # line under the table says where it is.
    console = out.stdout if out.stdout.is_terminal else Console(width=1000, highlight=False, emoji=False, soft_wrap=True)
    wide = console.width >= 120
    table = Table(title="occrecon models", box=None, header_style="bold underline", pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("name", "task", "from", "size", "cached"):
        table.add_column(column, no_wrap=True)
    if wide:
        table.add_column("description", overflow="fold", min_width=30)
    for row in rows:
        size = _human(row["size_bytes"]) if row["cached"] else _human(row["weights_bytes"], about=True)
        cells = [row["name"], row["task"], _FROM_LABELS.get(row["comes_from"], row["comes_from"]), size, "yes" if row["cached"] else "no"]
        if wide:
            cells.append(row["description"])
        table.add_row(*(Text(str(cell)) for cell in cells))
    console.print(table)
    if not wide:
        out.stdout.print(Text("Descriptions: a terminal 120 columns wide, or `occrecon models --json`.", style="dim"))
    if any(row["url"] for row in rows):
        out.stdout.print()
        out.stdout.print(
            Text(
                "Hub: the repo occrecon/<name> (HF_ENDPOINT picks a mirror). Where it does not exist, the original "
                "upstream .pt (MIT) is downloaded from its authors' S3 bucket (OCCRECON_UPSTREAM_ENDPOINT picks a mirror), "
                "checked and converted into the Hugging Face cache. Sizes with ~ are the weights to come. "
                "`occrecon models --json` gives each URL; `occrecon models download NAME...` prefetches.",
                style="dim",
            )
        )


@models_app.command("download")
def download_command(
    names: Annotated[list[str], typer.Argument(help="Registered names or org/name Hub ids.")],
    revision: RevisionOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Fetch models into the Hugging Face cache so later runs work offline.

    A registered upstream model comes from its Hub repo, or where that does not
    exist from the original checkpoint, downloaded, verified and converted once.
    """
    from occrecon import hub
    from occrecon.errors import OccreconError
    from occrecon.loading import locate_model

    failed = 0
    for name in names:
        try:
            with hub.fetching():  # a failure's advice is about the network, not to run this command again
                folder, display, source, rev = locate_model(name, revision=revision, progress=not quiet)
        except OccreconError as exc:
            failed += 1
            if json_output:
                out.print_json({"model": name, "status": "failed", "error": str(exc)})
            out.error(str(exc))
            continue
        if json_output:
            out.print_json({"model": display, "status": "ok", "source": source, "revision": rev, "path": str(folder)})
        elif not quiet:
            where = {"upstream": "converted original checkpoint", "hub": "Hub model", "bundled": "bundled model"}.get(source, f"{source} model")
            text = f"{display}: {where} at {folder}" + (f" (revision {rev})" if rev and source == "hub" else "")
            out.stdout.print(Text(text), highlight=False)
        else:
            out.stdout.print(Text(str(folder)), highlight=False)
    if failed:
        raise typer.Exit(2)
