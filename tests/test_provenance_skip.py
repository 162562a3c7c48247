"""Issue 27, items 5 and 6: an output is skipped only when it was made from the same input with the same
model and settings; whatever needs no model (skips, missing files, usage errors) is decided before one loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from occrecon.cli.main import main
from occrecon.io import provenance
from occrecon.io.provenance import Request, compare, record_path, write_record


def run(args: list[object], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def cloud(path: Path, seed: int = 0, radius: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(1500, 3))
    np.savetxt(path, points / np.linalg.norm(points, axis=1, keepdims=True) * radius, fmt="%.6f")
    return path


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load fails the test: what is checked here must be decided without one."""
    import occrecon.loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(occrecon.loading, "load_model", refuse)


# --------------------------------------------------------------------------- the record itself


def test_the_record_matches_the_same_bytes_and_names_what_differs(tmp_path):
    source = cloud(tmp_path / "a.xyz")
    output = tmp_path / "a.obj"
    output.write_text("mesh", encoding="utf-8")
    request = Request.of("points", "convonet-points-synthetic", None, _options(threshold=None))
    write_record(output, source, request, ("convonet-points-synthetic", None))
    assert record_path(output) == tmp_path / ".a.obj.occrecon.json"
    assert compare(output, source, request).same

    # The same bytes elsewhere, with another time: the hash says it is the same input.
    copy = tmp_path / "moved" / "a.xyz"
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    os.utime(copy, ns=(1, 1))
    assert compare(output, copy, request).same

    other = cloud(tmp_path / "b.xyz", seed=1)
    verdict = compare(output, other, request)
    assert not verdict.same and f"made from {source.resolve()}" in verdict.reason

    changed = Request.of("points", "convonet-points-synthetic", None, _options(threshold=0.3))
    verdict = compare(output, source, changed)
    assert not verdict.same and verdict.differences == ["threshold the model's default (now 0.3)"]
    verdict = compare(output, source, Request.of("image", "onet-img-synthetic", None, _options()))
    assert not verdict.same and any(d.startswith("model convonet-points-synthetic") for d in verdict.differences)

    record_path(output).unlink()
    assert compare(output, source, request).reason.startswith("no record of what made it")


def test_a_rerun_does_not_hash_an_input_whose_size_and_time_settle_it(tmp_path, monkeypatch):
    source = cloud(tmp_path / "a.xyz")
    output = tmp_path / "a.obj"
    request = Request.of("points", "m", None, _options())
    write_record(output, source, request, ("m", None))

    def no_hashing(path):
        raise AssertionError("hashed although size and time matched")

    monkeypatch.setattr(provenance, "file_hash", no_hashing)
    assert compare(output, source, request).same
    source.write_text(source.read_text(encoding="utf-8") + "0 0 0\n", encoding="utf-8")  # another size: no hash needed either
    assert not compare(output, source, request).same


def test_the_batch_size_is_not_part_of_the_record():
    assert Request.of("points", "m", None, _options(points_batch_size=4096)) == Request.of("points", "m", None, _options())


def _options(**given):
    from occrecon.options import ReconstructOptions

    return ReconstructOptions(**given)


# --------------------------------------------------------------------------- the command


def test_a_rerun_skips_without_loading_and_another_input_of_the_same_name_is_refused(points_model, tmp_path, capsys, monkeypatch):
    chair_points, chair_photo = cloud(tmp_path / "chair.xyz"), cloud(tmp_path / "other.xyz", seed=3, radius=2.0)
    target = tmp_path / "chair.obj"
    code, out, err = run(["points", chair_points, "--model", points_model, "-o", target, "--json", "-q"], capsys)
    assert code == 0, err
    assert json.loads(out)["status"] == "ok" and record_path(target).is_file()
    made = target.read_bytes()

    import occrecon.loading

    monkeypatch.setattr(occrecon.loading, "load_model", lambda *a, **k: pytest.fail("a rerun that only skips loaded a model"))
    code, out, err = run(["points", chair_points, "--model", points_model, "-o", target, "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["status"] == "skipped" and "made from this input with the same model and settings" in result["notes"][0]
    assert "no model loaded" in err

    # Another input written to the same name (the README's set-up and tour did this): said, not skipped, not replaced.
    code, out, err = run(["points", chair_photo, "--model", points_model, "-o", target, "--json"], capsys)
    result = json.loads(out)
    assert code == 1 and result["status"] == "failed"
    (line,) = [line for line in err.splitlines() if line.startswith("Error:")]
    assert f"{target} exists and was made from {chair_points.resolve()}, another input" in line and "--overwrite replaces it" in line
    assert target.read_bytes() == made

    # The same input with other settings is not the same work either.
    code, out, err = run(["points", chair_points, "--model", points_model, "-o", target, "-t", "0.3", "--json"], capsys)
    assert code == 1 and "made with other settings: threshold the model's default (now 0.3)" in json.loads(out)["error"]
    monkeypatch.undo()

    code, out, err = run(["points", chair_photo, "--model", points_model, "-o", target, "--json", "-q", "--overwrite"], capsys)
    assert code == 0 and json.loads(out)["status"] == "ok" and target.read_bytes() != made
    assert json.loads(record_path(target).read_text(encoding="utf-8"))["input"]["path"] == str(chair_photo.resolve())


def test_an_output_without_a_record_is_not_taken_for_done(points_model, tmp_path, capsys, no_model_loads):
    source = cloud(tmp_path / "a.xyz")
    (tmp_path / "a.obj").write_text("made by something else", encoding="utf-8")
    code, out, err = run(["points", source, "--model", points_model, "-d", tmp_path, "--json"], capsys)
    result = json.loads(out)
    assert code == 1 and result["status"] == "failed" and "no record of what made it" in result["error"]
    assert (tmp_path / "a.obj").read_text(encoding="utf-8") == "made by something else"


def test_a_missing_file_fails_before_any_model_loads(points_model, tmp_path, capsys, no_model_loads):
    code, out, err = run(["points", tmp_path / "nothere.xyz", "--model", points_model, "-d", tmp_path], capsys)
    assert code == 1 and "nothere.xyz" in err and "no model loaded" in err


def test_a_model_for_another_input_is_a_usage_error_before_it_loads(tmp_path, capsys, no_model_loads):
    source = cloud(tmp_path / "a.xyz")
    code, _, err = run(["points", source, "--model", "onet-img-synthetic", "-d", tmp_path], capsys)
    assert code == 2 and "takes image input" in err
    code, _, err = run(["points", source, "--model", "convonet-points-synthetic", "--scene", "-d", tmp_path], capsys)
    assert code == 2 and "--scene needs a scene model" in err


def test_the_readme_set_up_and_tour_write_different_files():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash", 2)
    setup, tour = block[1].split("```")[0], block[2].split("```")[0]
    written: dict[str, str] = {}
    for line in (setup + tour).splitlines():
        for command in line.split("#")[0].split("&&"):
            words = command.split()
            if len(words) < 3 or words[0] != "occrecon" or words[1] not in ("image", "points", "voxels"):
                continue
            inputs = [w for w in words[2:] if not w.startswith("-")][:1]
            target = words[words.index("-o") + 1] if "-o" in words else None
            if target is None and "-d" not in words:
                target = Path(inputs[0]).stem + ".obj"
            if target is not None:
                assert target not in written, f"{target} is written by both `{written.get(target)}` and `{command.strip()}`"
                written[target] = command.strip()
    assert "chair.obj" in written  # the set-up's own line was read
