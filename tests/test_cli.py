"""`occrecon image|points|voxels|models`: batches, outputs, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from occrecon.cli.main import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err



def sphere_cloud(n=2000, center=(0.0, 0.0, 0.0), radius=1.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True) * radius + np.asarray(center)


def write_xyz(path: Path, points: np.ndarray) -> Path:
    np.savetxt(path, points, fmt="%.6f")
    return path


def test_points_batch_writes_one_mesh_per_input_and_json(points_model, tmp_path, capsys):
    inputs = [write_xyz(tmp_path / f"s{i}.xyz", sphere_cloud(seed=i)) for i in range(2)]
    code, out, err = run(["points", *inputs, "--model", points_model, "-d", tmp_path / "out", "--json"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert {Path(r["output"]).name for r in records} == {"s0.obj", "s1.obj"}
    for record in records:
        mesh = trimesh.load(record["output"], force="mesh")
        assert len(mesh.faces) == record["faces"] > 0
        assert record["model"] == str(points_model) and record["seconds"] > 0
        assert set(record) >= {"input", "output", "status", "error", "vertices", "faces", "seconds", "model", "model_revision"}


def test_mesh_comes_back_in_the_input_frame(points_model, tmp_path, capsys):
    center, radius = np.array([100.0, -20.0, 5.0]), 30.0
    src = write_xyz(tmp_path / "far.xyz", sphere_cloud(center=center, radius=radius))
    code, _, err = run(["points", src, "--model", points_model, "-o", tmp_path / "far.ply", "-q"], capsys)
    assert code == 0, err
    mesh = trimesh.load(tmp_path / "far.ply", force="mesh")
    # The model's box is ±0.55 of the normalised cloud: 1.1 × (2·radius) wide around the centre.
    half = 0.55 * 2 * radius
    assert np.all(mesh.bounds[0] >= center - half - 1e-6) and np.all(mesh.bounds[1] <= center + half + 1e-6)


def test_existing_outputs_are_skipped_unless_overwrite(points_model, tmp_path, capsys):
    src = write_xyz(tmp_path / "a.xyz", sphere_cloud())
    target = tmp_path / "a.obj"
    target.write_text("keep me", encoding="utf-8")
    # Nothing records what made it: kept, and not taken for this input's mesh (issue 27 item 5; tests/test_provenance_skip.py).
    code, out, _ = run(["points", src, "--model", points_model, "-d", tmp_path, "--json", "-q"], capsys)
    assert code == 1 and json.loads(out)["status"] == "failed" and "no record of what made it" in json.loads(out)["error"]
    assert target.read_text(encoding="utf-8") == "keep me"
    code, out, _ = run(["points", src, "--model", points_model, "-d", tmp_path, "--json", "-q", "--overwrite"], capsys)
    assert code == 0 and json.loads(out)["status"] == "ok"
    assert target.read_text(encoding="utf-8") != "keep me"


def test_one_bad_file_does_not_stop_the_batch(points_model, tmp_path, capsys):
    good = write_xyz(tmp_path / "good.xyz", sphere_cloud())
    bad = tmp_path / "bad.xyz"
    bad.write_text("", encoding="utf-8")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((10, 3), np.nan))
    out_dir = tmp_path / "out"
    code, out, err = run(["points", bad, good, nan, tmp_path / "missing.ply", "--model", points_model, "-d", out_dir, "--json"], capsys)
    assert code == 1
    status = {Path(json.loads(line)["input"]).name: json.loads(line)["status"] for line in out.splitlines()}
    assert status == {"bad.xyz": "failed", "good.xyz": "ok", "nan.npy": "failed", "missing.ply": "failed"}
    assert sorted(p.name for p in out_dir.iterdir()) == [".good.obj.occrecon.json", "good.obj"]  # the mesh and the record of what made it
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 3 and all(any(n in line for n in ("bad.xyz", "nan.npy", "missing.ply")) for line in error_lines)


def test_no_surface_says_which_thresholds_would_give_one(points_model, tmp_path, capsys):
    import re

    from occrecon import load_model, reconstruct_points
    from occrecon.errors import InputError
    from occrecon.pipeline import no_surface_message

    cloud = sphere_cloud()
    try:
        reconstruct_points(load_model(points_model), cloud, threshold=0.999999)
    except InputError as error:
        highest = float(re.search(r"highest occupancy probability is ([\d.e-]+)", str(error)).group(1))
    else:
        raise AssertionError("a random tiny model's field should not reach 0.999999")
    # The peak it names (rounded down) is a threshold at which the field has a surface.
    assert len(reconstruct_points(load_model(points_model), cloud, threshold=highest).faces) > 0
    src = write_xyz(tmp_path / "s.xyz", cloud)
    code, _, err = run(["points", src, "--model", points_model, "-d", tmp_path / "out", "--threshold", "0.999999"], capsys)
    error_lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(error_lines) == 1 and "s.xyz" in error_lines[0] and "a lower --threshold gives one" in error_lines[0]
    assert "Traceback" not in err and not (tmp_path / "out" / "s.obj").exists()
    assert "the whole box is inside" in no_surface_message(0.1, 0.3, 0.9) and "a higher --threshold" in no_surface_message(0.1, 0.3, 0.9)


@pytest.mark.parametrize("kind", ["points", "image"])
def test_no_surface_with_save_input_keeps_what_the_network_saw(kind, points_model, image_model, tmp_path, capsys):
    if kind == "points":
        src, model, seen_name = write_xyz(tmp_path / "s.xyz", sphere_cloud()), points_model, "s.input.ply"
    else:
        rgba = np.zeros((120, 160, 4), np.uint8)
        rgba[30:90, 50:110] = (200, 40, 40, 255)
        src, model, seen_name = tmp_path / "s.png", image_model, "s.input.png"
        Image.fromarray(rgba, "RGBA").save(src)
    out = tmp_path / "out"  # not there yet: -o names a file in it
    code, _, err = run([kind, src, "--model", model, "-o", out / "s.obj", "--threshold", "0.999999", "--save-input"], capsys)
    error_lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(error_lines) == 1 and "Traceback" not in err
    assert "a lower --threshold gives one" in error_lines[0] and error_lines[0].endswith(f"what the network saw: {out / seen_name}")
    assert not (out / "s.obj").exists()
    if kind == "points":
        from occrecon import load_model

        n_points = load_model(points_model).input_spec.n_points
        assert len(trimesh.load(out / seen_name).vertices) == n_points  # the subsampled cloud the network encoded
    else:
        assert Image.open(out / seen_name).size == (224, 224)


def test_a_log_file_hears_where_a_long_input_is(points_model, tmp_path, capsys, monkeypatch):
    from occrecon.cli import _output

    monkeypatch.setattr(_output, "LOG_INTERVAL_S", 0.0)  # every stage counts as a minute late
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud())
    code, _, err = run(["points", src, "--model", points_model, "-d", tmp_path / "out"], capsys)  # stderr is not a terminal here
    assert code == 0, err
    stage_lines = [line for line in err.splitlines() if line.startswith(f"  {src}: ")]
    assert any(line.startswith(f"  {src}: encoding (0m0") for line in stage_lines), err
    # Each line says how long the input has run; a line also comes while a stage runs long (issue 27 item 7:
    # the once-a-minute clock of tests/test_progress_steps.py), so a slow first stage may be named too.
    assert all(line.endswith(")") and "(0m" in line for line in stage_lines), err
    code, _, err = run(["points", src, "--model", points_model, "-d", tmp_path / "quiet", "-q"], capsys)
    assert code == 0 and err == ""


def test_folder_and_glob_inputs(points_model, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        write_xyz(folder / f"p{i}.xyz", sphere_cloud(seed=i))
    (folder / "notes.md").write_text("not a cloud", encoding="utf-8")
    code, out, _ = run(["points", folder, str(folder / "p1.*"), "--model", points_model, "-d", tmp_path / "o", "--json", "-q"], capsys)
    assert code == 0
    assert sorted(Path(json.loads(l)["input"]).name for l in out.splitlines()) == ["p0.xyz", "p1.xyz", "p2.xyz"]


def test_shards_split_the_inputs(points_model, tmp_path, capsys, monkeypatch):
    for i in range(5):
        write_xyz(tmp_path / f"p{i}.xyz", sphere_cloud(n=300, seed=i))
    code, out, _ = run(["points", tmp_path, "--model", points_model, "-d", tmp_path / "o", "--shard", "1/2", "--json", "-q", "--resolution", "4"], capsys)
    assert code == 0
    assert [Path(json.loads(l)["input"]).name for l in out.splitlines()] == ["p1.xyz", "p3.xyz"]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    code, out, _ = run(["points", tmp_path, "--model", points_model, "-d", tmp_path / "o2", "--json", "-q", "--resolution", "4"], capsys)
    assert [Path(json.loads(l)["input"]).name for l in out.splitlines()] == ["p2.xyz"]


@pytest.mark.parametrize("fmt", ["obj", "ply", "off", "glb", "stl"])
def test_every_output_format_loads_back(points_model, tmp_path, capsys, fmt):
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud(n=500))
    code, _, err = run(["points", src, "--model", points_model, "-o", tmp_path / f"mesh.{fmt}", "-q"], capsys)
    assert code == 0, err
    mesh = trimesh.load(tmp_path / f"mesh.{fmt}", force="mesh")
    assert len(mesh.faces) > 0


def test_usage_errors_exit_2(points_model, tmp_path, capsys):
    a = write_xyz(tmp_path / "a.xyz", sphere_cloud())
    b = write_xyz(tmp_path / "b.xyz", sphere_cloud(seed=3))
    assert run(["points", a, b, "--model", points_model, "-o", tmp_path / "x.obj"], capsys)[0] == 2
    assert run(["points", a, "--model", points_model, "--threshold", "1.5"], capsys)[0] == 2
    assert run(["points", a, "--model", points_model, "--format", "fbx"], capsys)[0] == 2
    assert run(["points", a, "--model", points_model, "--shard", "3/2"], capsys)[0] == 2
    code, _, err = run(["points", a, "--model", "no-such-model"], capsys)
    assert code == 2 and "unknown model 'no-such-model'" in err and "Traceback" not in err


def test_model_for_another_input_kind_is_refused(image_model, tmp_path, capsys):
    a = write_xyz(tmp_path / "a.xyz", sphere_cloud())
    code, _, err = run(["points", a, "--model", image_model], capsys)
    assert code == 2 and "takes image input" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_gpu_is_a_setup_error(points_model, tmp_path, capsys):
    a = write_xyz(tmp_path / "a.xyz", sphere_cloud())
    code, _, err = run(["points", a, "--model", points_model, "--device", "cuda"], capsys)
    assert code == 2 and "CUDA is not available" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_auto_device_says_once_that_it_uses_the_cpu(points_model, tmp_path, capsys):
    inputs = [write_xyz(tmp_path / f"s{i}.xyz", sphere_cloud(n=300, seed=i)) for i in range(2)]
    code, _, err = run(["points", *inputs, "--model", points_model, "-d", tmp_path / "o", "--resolution", "4"], capsys)
    assert code == 0 and err.count("running on the CPU") == 1


def test_image_command_saves_what_the_network_saw(image_model, tmp_path, capsys):
    rgba = np.zeros((120, 160, 4), np.uint8)
    rgba[30:90, 50:110] = (200, 40, 40, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "chair.png")
    code, _, err = run(["image", tmp_path / "chair.png", "--model", image_model, "-d", tmp_path / "o", "--save-input", "-q"], capsys)
    assert code == 0, err
    assert (tmp_path / "o" / "chair.obj").is_file()
    seen = Image.open(tmp_path / "o" / "chair.input.png")
    assert seen.size == (224, 224) and seen.getpixel((0, 0)) == (255, 255, 255)


def test_transparent_image_is_a_clear_per_file_error(image_model, tmp_path, capsys):
    Image.fromarray(np.zeros((64, 64, 4), np.uint8), "RGBA").save(tmp_path / "empty.png")
    code, _, err = run(["image", tmp_path / "empty.png", "--model", image_model, "-d", tmp_path / "o"], capsys)
    assert code == 1 and "empty.png" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "empty.obj").exists()


def test_voxels_command(voxels_model, tmp_path, capsys):
    grid = np.zeros((32, 32, 32), bool)
    grid[8:24, 4:28, 10:20] = True
    np.save(tmp_path / "block.npy", grid)
    code, out, err = run(["voxels", tmp_path / "block.npy", "--model", voxels_model, "-d", tmp_path, "--json", "-q"], capsys)
    assert code == 0, err
    assert json.loads(out)["status"] == "ok"


def test_debug_shows_tracebacks(points_model, tmp_path, capsys):
    bad = tmp_path / "bad.xyz"
    bad.write_text("1 2\n", encoding="utf-8")
    code, _, err = run(["points", bad, "--model", points_model, "--debug", "-d", tmp_path], capsys)
    assert code == 1 and "Traceback" in err


def test_models_lists_registry_as_json(capsys):
    code, out, _ = run(["models", "--json"], capsys)
    rows = {json.loads(line)["name"]: json.loads(line) for line in out.splitlines()}
    assert code == 0
    assert rows["onet-img"]["source"] == "hub" and rows["onet-img"]["cached"] is False
    assert rows["convonet-scene"]["task"] == "scene"


def test_models_table_and_version(capsys):
    code, out, _ = run(["models"], capsys)
    assert code == 0 and "convonet-shapenet-3plane" in out
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("occrecon ")


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "occrecon", "--help"], capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0
    for command in ("image", "points", "voxels", "models", "convert", "eval"):
        assert command in result.stdout


def test_unavailable_hub_model_is_a_setup_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    a = write_xyz(tmp_path / "a.xyz", sphere_cloud())
    code, _, err = run(["points", a, "--model", "convonet-shapenet-3plane"], capsys)
    assert code == 2 and "occrecon models download convonet-shapenet-3plane" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("Error:")]) == 1


def test_outputs_get_ordinary_file_permissions(points_model, tmp_path, capsys):
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud(n=500))
    old = os.umask(0o022)
    try:
        code, _, _ = run(["points", src, "--model", points_model, "-o", tmp_path / "s.obj", "-q"], capsys)
    finally:
        os.umask(old)
    assert code == 0 and (tmp_path / "s.obj").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".s.obj.*.tmp"))  # no temporary file left behind
    assert (tmp_path / ".s.obj.occrecon.json").stat().st_mode & 0o777 == 0o644  # nor an odd record


def test_input_noise_overrides_the_models_test_time_noise(points_model, tmp_path, capsys):
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud())
    code, out, err = run(["points", src, "--model", points_model, "-d", tmp_path / "a", "--json"], capsys)
    assert code == 0, err
    assert not any("noise" in note for note in json.loads(out)["notes"])  # the tiny model adds none
    code, out, err = run(["points", src, "--model", points_model, "-d", tmp_path / "b", "--json", "--input-noise", "0.02"], capsys)
    assert code == 0, err
    assert "added Gaussian noise, std 0.02 (canonical units)" in json.loads(out)["notes"]
    code, _, err = run(["points", src, "--model", points_model, "-d", tmp_path / "c", "--input-noise", "-1"], capsys)
    assert code == 2 and "--input-noise" in err


OBJECT_CLOUD_OPTIONS = [
    # (flag and value on the command line, keyword and value in the API, an invalid value for a cloud or None)
    (["--input-noise", "0.01"], {"input_noise": 0.01}, {"input_noise": -1.0}),
    (["--rotations", "2"], {"rotations": 2}, {"rotations": 0}),
    (["--fit-steps", "3"], {"fit_steps": 3}, {"fit_steps": -1}),
    (["--winding-prior"], {"winding": True}, None),
    (["--anchor-points"], {"anchor_points": True}, None),
]


@pytest.mark.parametrize("flag, given, invalid", OBJECT_CLOUD_OPTIONS, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_object_cloud_options_are_refused_for_other_inputs(flag, given, invalid, points_model, voxels_model, tmp_path, capsys):
    import occrecon

    grid = np.zeros((32, 32, 32), bool)
    grid[8:24, 8:24, 8:24] = True
    np.save(tmp_path / "cube.npy", grid)
    code, _, err = run(["voxels", tmp_path / "cube.npy", "--model", voxels_model, *flag], capsys)
    assert code == 2 and flag[0] in err
    keyword = next(iter(given))
    with pytest.raises(ValueError, match=keyword.split("_")[0]):
        occrecon.reconstruct(occrecon.load_model(str(voxels_model), "cpu"), "voxels", grid, **given)
    points = occrecon.load_model(str(points_model), "cpu")
    if invalid is not None:
        with pytest.raises(ValueError, match=keyword):
            occrecon.reconstruct(points, "points", sphere_cloud(), **invalid)
    # On a cloud the option is taken.
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud())
    code, _, err = run(["points", src, "--model", points_model, "-d", tmp_path / "out", *flag], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "s.obj").is_file()


def test_anchor_points_make_mise_subdivide_around_the_cloud(points_model):
    import occrecon

    model = occrecon.load_model(str(points_model), "cpu")
    plain = occrecon.reconstruct(model, "points", sphere_cloud(), anchor_points=False)
    anchored = occrecon.reconstruct(model, "points", sphere_cloud(), anchor_points=True)
    # Every coarse cell near a point is subdivided as well as those whose corners straddle the surface.
    assert anchored.n_evaluations > plain.n_evaluations
    assert len(anchored.mesh.faces) >= len(plain.mesh.faces) > 0
    assert any("anchored" in note for note in anchored.notes) and not any("anchored" in note for note in plain.notes)


def test_the_bundled_points_model_anchors_mise_and_its_card_says_so():
    from occrecon.registry import bundled_weights_dir
    from occrecon.training import model_card

    config = json.loads((bundled_weights_dir() / "convonet-points-synthetic" / "config.json").read_text(encoding="utf-8"))
    assert config["generation"]["anchor_points"] is True
    assert "MISE anchored at the input points by default" in model_card(config)
    config["generation"]["anchor_points"] = False
    assert "MISE anchored at the input points by default" not in model_card(config)


def test_the_package_and_the_help_do_not_import_torch_until_needed():
    # `import occrecon` resolves its names on first use: `occrecon --help` need not load torch (2 s) or trimesh (0.8 s).
    script = (
        "import sys, occrecon, occrecon.cli.main\n"
        "assert 'torch' not in sys.modules, 'torch imported at start-up'\n"
        "assert 'trimesh' not in sys.modules, 'trimesh imported at start-up'\n"
        "try:\n    occrecon.cli.main.main(['--help'])\nexcept SystemExit as done:\n    assert done.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported by occrecon --help'\n"
        "assert occrecon.load_model is occrecon.loading.load_model and 'torch' in sys.modules\n"
        "assert occrecon.reconstruct is __import__('occrecon.pipeline').pipeline.reconstruct\n"
        "assert set(occrecon.__all__) <= set(dir(occrecon))\n"
        "try:\n    occrecon.no_such_name\nexcept AttributeError:\n    pass\nelse:\n    raise AssertionError('unknown names must raise AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_eval_help_states_the_metrics_default_f_thresholds():
    from occrecon.cli.eval import DEFAULT_F_THRESHOLDS_TEXT
    from occrecon.metrics import DEFAULT_F_THRESHOLDS

    assert DEFAULT_F_THRESHOLDS_TEXT == ",".join(f"{t:g}" for t in DEFAULT_F_THRESHOLDS)


def test_listing_models_does_not_import_torch():
    # The registry reads the architecture presets, plain data in occrecon.nets; the networks load torch only when used.
    script = (
        "import sys\n"
        "from occrecon.registry import list_models\n"
        "names = list_models()\n"
        "assert 'onet-img-synthetic' in names and 'convonet-points-synthetic' in names, names\n"
        "assert 'torch' not in sys.modules, 'torch imported by list_models'\n"
        "import occrecon.nets as nets\n"
        "assert 'occrecon.nets.coords' not in sys.modules and nets.coords is sys.modules['occrecon.nets.coords']\n"
        "assert nets.build_network is __import__('occrecon.nets.model').nets.model.build_network and 'torch' in sys.modules\n"
        "assert set(nets.__all__) <= set(dir(nets))\n"
        "try:\n    nets.no_such_name\nexcept AttributeError:\n    pass\nelse:\n    raise AssertionError('unknown names must raise AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_output_naming_a_folder_writes_into_it(points_model, tmp_path, capsys):
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud(n=500))
    code, _, err = run(["points", src, "--model", points_model, "-o", f"{tmp_path / 'new'}/", "-q", "--resolution", "8"], capsys)
    assert code == 0, err
    assert (tmp_path / "new" / "s.obj").is_file() and not (tmp_path / "new.obj").exists()
    (tmp_path / "there").mkdir()
    code, _, err = run(["points", src, "--model", points_model, "-o", tmp_path / "there", "-q", "--resolution", "8", "-f", "ply"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "there").iterdir()) == [".s.ply.occrecon.json", "s.ply"]


@pytest.mark.parametrize(
    "name, extra, problem",
    [("mesh.xyz", [], "suffix '.xyz' names no mesh format"), ("mesh", [], "it has no suffix"), ("mesh.ply", ["--format", "obj"], "says .ply but --format says obj")],
)
def test_output_whose_name_lies_about_its_format_is_refused(points_model, tmp_path, capsys, name, extra, problem):
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud(n=500))
    code, _, err = run(["points", src, "--model", points_model, "-o", tmp_path / name, *extra], capsys)
    assert code == 2 and problem in " ".join(err.split()) and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.xyz"]


def test_output_without_mesh_suffix_is_written_in_the_format_asked(points_model, tmp_path, capsys):
    src = write_xyz(tmp_path / "s.xyz", sphere_cloud(n=500))
    code, _, err = run(["points", src, "--model", points_model, "-o", tmp_path / "mesh.txt", "--format", "ply", "-q", "--resolution", "8"], capsys)
    assert code == 0, err
    assert (tmp_path / "mesh.txt").read_bytes().startswith(b"ply")
