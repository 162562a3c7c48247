"""The architecture's promises, checked: a layered import graph, one options object that matches the CLI, a validated config."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest

import occrecon
from occrecon.batch import BatchOptions
from occrecon.cli.reconstruct import CommandLine, image_command, points_command, voxels_command
from occrecon.config import GenerationDefaults, ModelConfig
from occrecon.errors import InvalidModelFolderError, OptionError
from occrecon.options import OBJECT_CLOUD_FIELDS, SCENE_FIELDS, VOXEL_FIELDS, ReconstructOptions

PACKAGE = Path(occrecon.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """occrecon module -> the occrecon modules it imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                submodules = {f"{base}.{alias.name}" for alias in node.names} & set(modules)
                edges |= submodules
                if len(submodules) < len(node.names):
                    edges.add(base)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def test_the_import_graph_has_no_cycles_function_level_imports_included():
    graph = import_graph()
    visiting, done, cycles = set(), set(), []

    def visit(node: str, path: list[str]) -> None:
        visiting.add(node)
        for nxt in sorted(graph[node]):
            if nxt in visiting:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        visiting.discard(node)
        done.add(node)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_lower_layers_do_not_import_the_orchestration():
    graph = import_graph()
    for module in ("occrecon.field", "occrecon.fitting", "occrecon.winding", "occrecon.surface", "occrecon.scene.window", "occrecon.config", "occrecon.options"):
        assert "occrecon.pipeline" not in graph[module] and "occrecon.batch" not in graph[module], module


def _function_sizes():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
                if args.args and args.args[0].arg in ("self", "cls"):
                    count -= 1
                yield path.relative_to(PACKAGE), node.name, node.end_lineno - node.lineno + 1, count


def test_no_function_is_over_100_lines():
    long = [f"{path}:{name} ({lines} lines)" for path, name, lines, _ in _function_sizes() if lines > 100]
    assert not long, long


def test_no_function_outside_the_cli_takes_more_than_10_parameters():
    wide = [f"{path}:{name} ({count})" for path, name, _, count in _function_sizes() if count > 10 and path.parts[0] != "cli"]
    assert not wide, wide


def _parameters(command) -> set[str]:
    return set(inspect.signature(command).parameters)


def test_the_cli_flags_and_the_settings_objects_are_the_same_set():
    fields = [{f.name for f in dataclasses.fields(group)} for group in (ReconstructOptions, BatchOptions, CommandLine)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not fields[a] & fields[b], "a field belongs to two settings objects"
    everything = set().union(*fields)
    # `points` takes every setting but the voxel grids' ones; the others every setting but the point-cloud ones
    # (and `mask` is the image's, the voxel grids' settings the voxels command's).
    assert _parameters(points_command) == everything - {"mask"} - set(VOXEL_FIELDS)
    assert _parameters(image_command) == everything - set(OBJECT_CLOUD_FIELDS) - set(SCENE_FIELDS) - set(VOXEL_FIELDS)
    assert _parameters(voxels_command) == everything - set(OBJECT_CLOUD_FIELDS) - (set(SCENE_FIELDS) - {"up"}) - {"mask"}  # a grid has an up axis too


def test_options_are_validated_once_with_their_flag_named():
    with pytest.raises(OptionError, match="--input-noise"):
        ReconstructOptions(input_noise=float("inf")).validate("points")
    with pytest.raises(OptionError, match="--seed"):
        ReconstructOptions(seed=-1).validate("image")
    with pytest.raises(OptionError, match="--rotations"):
        ReconstructOptions(rotations=2).validate("voxels")
    with pytest.raises(OptionError, match="1024"):
        ReconstructOptions(resolution=256, upsampling_steps=6).validate("voxels")
    ReconstructOptions(rotations=1, fit_steps=0, winding=False).validate("image")  # values that change nothing pass


def test_options_resolve_against_the_model_config_once():
    config = ModelConfig.from_dict({"task": "points", "architecture": {"method": "convonet"}, "input": {"kind": "points", "noise": 0.005}, "generation": {"threshold": 0.45, "rotations": 8, "fit_steps": 60}})
    resolved = ReconstructOptions(threshold=0.3, fit_steps=0).resolve_config(config, "points", query_rows=4096)
    assert (resolved.threshold, resolved.rotations, resolved.fit_steps, resolved.input_noise) == (0.3, 8, 0, 0.005)
    assert (resolved.resolution, resolved.upsampling_steps, resolved.points_batch_size) == (GenerationDefaults.resolution, GenerationDefaults.upsampling_steps, 4096)


def _bundled_configs() -> list[Path]:
    from occrecon.registry import bundled_weights_dir

    return sorted(bundled_weights_dir().glob("*/config.json"))


@pytest.mark.parametrize("path", _bundled_configs(), ids=lambda p: p.parent.name)
def test_todays_config_files_read_and_write_back_unchanged(path: Path):
    stored = json.loads(path.read_text(encoding="utf-8"))
    config = ModelConfig.from_dict(stored)
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config
    written = config.to_dict()
    for key, value in stored.items():  # every key of the file is written back with its value (new defaults may be added)
        if key == "generation":
            assert {k: written[key][k] for k in value} == value
        else:
            assert written[key] == value, key


HOSTILE_CONFIGS = [
    ({"task": "points", "architecture": ["convonet"]}, "architecture must be an object"),
    ({"task": "points", "architecture": None}, "architecture must be an object"),
    ({"task": ["points"], "architecture": {"method": "convonet"}}, "task must be one of"),
    ({"task": "points", "architecture": {"method": "/etc/passwd"}}, "method must be one of"),
    ({"task": "points", "architecture": {"method": "convonet", "c_dim": -4}}, "c_dim must be in"),
    ({"task": "points", "architecture": {"method": "convonet", "decoder_kwargs": {"hidden_size": 2_000_000}}}, "hidden_size must be in"),
    ({"task": "points", "architecture": {"method": "convonet", "encoder_kwargs": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}, "nested"),
    ({"task": "points", "architecture": {"method": "convonet"}, "generation": {"upsampling_steps": 20}}, "upsampling_steps must be in"),
    ({"task": "points", "architecture": {"method": "convonet"}, "generation": {"rotations": 100_000}}, "rotations must be in"),
    ({"task": "points", "architecture": {"method": "convonet"}, "generation": {"resolution": 512, "upsampling_steps": 4}}, "lattice"),
    ({"task": "points", "architecture": {"method": "convonet"}, "input": {"kind": "points", "n_points": "all"}}, "n_points must be an integer"),
    ([1, 2, 3], "must hold a JSON object"),
]


@pytest.mark.parametrize("data, problem", HOSTILE_CONFIGS, ids=lambda v: v if isinstance(v, str) else None)
def test_hostile_configs_are_refused_with_the_problem_named(data, problem):
    with pytest.raises(InvalidModelFolderError, match=problem):
        ModelConfig.from_dict(data)


def test_a_huge_network_is_refused_before_any_weight_is_allocated(tmp_path: Path, monkeypatch):
    import torch

    from occrecon import loading

    config = occrecon.load_model("convonet-points-synthetic", "cpu").config.to_dict()
    config["architecture"]["encoder_kwargs"]["hidden_dim"] = 4096
    config["architecture"]["c_dim"] = 4096
    config["architecture"]["decoder_kwargs"]["hidden_size"] = 4096
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    built = []
    monkeypatch.setattr(loading, "MAX_PARAMETERS", 10_000_000)
    original = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: built.append(self) or original(self, *a, **k))
    with pytest.raises(InvalidModelFolderError, match="parameters"):
        occrecon.load_model(str(folder), "cpu")
    assert not built


def test_a_bug_is_not_reported_as_a_usage_error(monkeypatch, capsys):
    from occrecon.cli import main as cli_main

    def broken(*args, **kwargs):
        raise ValueError("list index out of range")

    monkeypatch.setattr("occrecon.cli.reconstruct.run_reconstruction", broken)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["points", "examples/chair_points.ply", "-q"])
    assert exit_info.value.code == cli_main.EXIT_INTERNAL
    assert "internal error" in capsys.readouterr().err


def test_a_usage_problem_exits_2_before_the_model_loads(monkeypatch, capsys, tmp_path):
    from occrecon import loading
    from occrecon.cli import main as cli_main

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for flags in (["--seed", "-1"], ["--input-noise", "inf"], ["--device", "meta"], ["--rotations", "100000"]):
        with pytest.raises(SystemExit) as exit_info:
            cli_main.main(["points", "examples/chair_points.ply", "-d", str(tmp_path), *flags])
        assert exit_info.value.code == 2, flags
    assert not any(tmp_path.iterdir())


def test_a_model_prints_as_one_line():
    model = occrecon.load_model("convonet-points-synthetic", "cpu")
    text = repr(model)
    assert "\n" not in text and "convonet-points-synthetic" in text and "task='points'" in text and "device='cpu'" in text
    assert f"parameters={sum(p.numel() for p in model.net.parameters()):,}" in text
