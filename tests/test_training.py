"""Training: a real (short) run, exact resume, and the model folder it leaves."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from occrecon.cli.main import main
from occrecon.errors import OccreconError
from occrecon.loading import load_model, save_model_folder
from occrecon.cli.train import parse_duration
from occrecon.training import THRESHOLD_CANDIDATES, TrainConfig, _lr_at, threshold_sweep, train

SMALL = {"n_uniform": 2000, "n_near": 1000, "n_surface": 2000, "n_views": 1, "image_size": 64}


def config(tmp_path, name: str, steps: int, task: str = "points", **overrides) -> TrainConfig:
    settings = dict(
        task=task,
        out=str(tmp_path / name),
        steps=steps,
        batch_size=2,
        n_query=256,
        n_shapes=6,
        val_shapes=2,
        cache=str(tmp_path / "data"),
        val_every=2,
        checkpoint_every=2,
        workers=0,
        half=False,
        device="cpu",
        prepare_kwargs=SMALL,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight = train(config(tmp_path, "straight", 4))

    def interrupt(report):
        if report.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path, "resumed", 4), on_step=interrupt)
    resumed = train(config(tmp_path, "resumed", 4), resume=True)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    checkpoint_a = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    checkpoint_b = torch.load(resumed / "checkpoint.pt", weights_only=True)["model"]
    for key in checkpoint_a:
        assert torch.equal(checkpoint_a[key], checkpoint_b[key]), key
    assert a.keys() == b.keys()


def test_run_folder_is_a_model_folder_with_a_card(tmp_path):
    folder = train(config(tmp_path, "run", 2))
    model = load_model(folder, "cpu")
    cfg = model.config.to_dict()
    assert cfg["name"] == "convonet-points-synthetic" and cfg["task"] == "points"
    assert cfg["training"]["steps"] == 2 and cfg["training"]["batch_size"] == 2
    assert 0.0 <= cfg["training"]["validation_iou"] <= 1.0
    card = (folder / "README.md").read_text(encoding="utf-8")
    for fact in ("Steps: 2", "batch size 2", "Validation IoU", "Wall time", "seed 0", "turned about y"):
        assert fact in card
    history = json.loads((folder / "training_state.json").read_text(encoding="utf-8"))["history"]
    assert [h["step"] for h in history] == [2]
    # The threshold is the best one on the held-out shape's uniform samples.
    sweep = cfg["training"]["threshold_sweep"]
    assert set(sweep["iou"]) == {f"{t:g}" for t in THRESHOLD_CANDIDATES}
    assert sweep["items"] == 1 and sweep["uniform_samples_per_item"] == 10_000
    assert sweep["iou"][f"{cfg['generation']['threshold']:g}"] == max(sweep["iou"].values())
    assert f"Occupancy threshold {cfg['generation']['threshold']}" in card


def test_model_folder_weights_are_atomic_with_ordinary_permissions(tmp_path):
    net = torch.nn.Linear(2, 3)
    old = os.umask(0o022)
    try:
        folder = save_model_folder(net, {"task": "points", "architecture": {"method": "onet"}}, tmp_path / "model")
    finally:
        os.umask(old)
    # safetensors alone writes 0600 in place; a shared cluster folder needs the usual 0644.
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(load_file(str(folder / "model.safetensors"))["weight"], net.weight.detach())


class _ProbabilityNet(torch.nn.Module):
    """Its occupancy probability at a query is the query's x coordinate."""

    def encode(self, inputs):
        return None

    def decode(self, p, c):
        q = p[..., 0].clamp(1e-6, 1 - 1e-6)
        return torch.log(q) - torch.log1p(-q)


def test_threshold_sweep_scores_every_candidate():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(3):
        q = torch.from_numpy(rng.uniform(0, 1, (4000, 3)).astype(np.float32))
        items.append({"inputs": torch.zeros(1, 3), "points": q, "occ": (q[:, 0] >= 0.42).float()})
    sweep = threshold_sweep(_ProbabilityNet(), items, torch.device("cpu"), task="points", candidates=(0.2, 0.4, 0.45, 0.6))
    # Thresholds below 0.42 add false positives, above it miss true ones: IoU = share of the larger set.
    assert sweep[0.4] == pytest.approx(0.58 / 0.60, abs=0.02)
    assert sweep[0.45] == pytest.approx(0.55 / 0.58, abs=0.02)
    assert sweep[0.2] == pytest.approx(0.58 / 0.80, abs=0.02)
    assert max(sweep, key=sweep.get) == 0.4


def test_time_budget_ends_the_run_and_the_schedule(tmp_path):
    # A budget spent by the first step: the run validates, saves and finalises at step 1.
    run = config(tmp_path, "budget", 1000, max_time_s=1e-9, shard_size=2)
    folder = train(run)
    assert load_model(folder, "cpu").config.training["steps"] == 1
    history = json.loads((folder / "training_state.json").read_text(encoding="utf-8"))["history"]
    assert [h["step"] for h in history] == [1]
    assert sorted(p.name for p in (tmp_path / "data").glob("shard_*.npz")) == [f"shard_0000{k}.npz" for k in range(4)]
    # Resumed with the budget still spent: no further step, and the saved budget is kept.
    train(config(tmp_path, "budget", 1000, shard_size=2), resume=True)
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["step"] == 1
    assert json.loads((folder / "training_state.json").read_text(encoding="utf-8"))["config"]["max_time_s"] == 1e-9

    # The learning rate follows whichever of steps and time is nearer to its end.
    timed = TrainConfig(task="points", out="x", steps=100_000, lr=1.0, max_time_s=100.0)
    assert _lr_at(50_000, timed, elapsed=10.0) == pytest.approx(_lr_at(50_000, timed, elapsed=0.0))
    assert _lr_at(1_000, timed, elapsed=50.0) == pytest.approx(0.05 + 0.95 * 0.5)
    assert _lr_at(1_000, timed, elapsed=100.0) == pytest.approx(0.05)


def test_max_time_option(tmp_path, capsys):
    assert [parse_duration(t) for t in ("600", "45m", "1.5h", "30s")] == [600.0, 2700.0, 5400.0, 30.0]
    for bad in ("0", "-5m", "soon", "inf"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "points", "--out", str(tmp_path / "never"), "--max-time", bad, "-q"])
        assert exit_info.value.code == 2
        assert "--max-time" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_existing_run_needs_resume(tmp_path):
    train(config(tmp_path, "run", 2))
    with pytest.raises(OccreconError, match="--resume"):
        train(config(tmp_path, "run", 2))
    with pytest.raises(OccreconError, match="nothing to resume"):
        train(config(tmp_path, "fresh", 2), resume=True)


def test_voxels_and_image_tasks_train(tmp_path):
    for task in ("voxels", "image"):
        folder = train(config(tmp_path, task, 1, task=task))
        assert load_model(folder, "cpu").task == task


def test_fine_tuning_starts_from_the_given_model(tmp_path):
    base = train(config(tmp_path, "base", 2))
    tuned = train(config(tmp_path, "tuned", 1, from_model=str(base)))
    cfg = load_model(tuned, "cpu").config.to_dict()
    assert cfg["base_model"] == str(base)
    # The card keeps what the base had learnt: its steps, data and time.
    assert cfg["training"]["steps"] == 1 and cfg["training"]["base"]["steps"] == 2
    card = (tuned / "README.md").read_text(encoding="utf-8")
    assert f"Fine-tuned from `{base}`: 2 steps at batch size 2 on 8 shapes" in card
    # A second fine-tune keeps the whole lineage, each stage with its own figures.
    again = train(config(tmp_path, "again", 3, from_model=str(tuned)))
    card = (again / "README.md").read_text(encoding="utf-8")
    assert f"Fine-tuned from `{tuned}`: 1 step at batch size 2 on 8 shapes" in card
    assert f"; which was fine-tuned from `{base}`: 2 steps at batch size 2 on 8 shapes" in card
    assert load_model(again, "cpu").config.training["base"]["base"]["steps"] == 2
    with pytest.raises(OccreconError, match="is a points model, not voxels"):
        train(config(tmp_path, "wrong", 1, task="voxels", from_model=str(base)))


def test_train_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([
            "train", "points", "--out", str(tmp_path / "cli"), "--steps", "1", "--batch-size", "2", "--shapes", "4",
            "--val-shapes", "1", "--val-every", "1", "--cache", str(tmp_path / "cli-data"), "--workers", "0",
            "--queries", "128", "--device", "cpu", "--json", "-q", "--any-up",
        ])
    assert exit_info.value.code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1] == {"model": str(tmp_path / "cli")}
    # --any-up reaches the data (48 symmetries), the config and the card's limits.
    assert load_model(tmp_path / "cli", "cpu").config.training["augment_any_up"] is True
    card = (tmp_path / "cli" / "README.md").read_text(encoding="utf-8")
    assert "one of the 48 signed axis permutations" in card and "any axis up" in card and "canonical pose" not in card


def test_train_command_logs_plain_lines_when_not_on_a_terminal(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([
            "train", "points", "--out", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "2", "--shapes", "4",
            "--val-shapes", "1", "--val-every", "1", "--cache", str(tmp_path / "cli-data"), "--workers", "0",
            "--queries", "128", "--device", "cpu",
        ])
    err = capsys.readouterr().err
    assert exit_info.value.code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("data: 0/5 shapes ready") and lines[1].startswith("data: 5/5 shapes ready")
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 2 and all("val IoU" in line and "shapes/s" in line for line in steps)  # both steps validate
    assert steps[-1].startswith("step 2/2: loss ")


def test_log_lines_are_throttled_but_keep_validations_and_the_end():
    from occrecon.cli.train import LogLines
    from occrecon.training import StepReport

    lines: list[str] = []
    log = LogLines(lines.append, steps=10, budget_s=None, interval_s=3600)
    log.data(0, 8)
    log.data(4, 8)
    log.data(8, 8)
    assert lines[0].startswith("data: 0/8") and lines[1].startswith("data: 8/8") and len(lines) == 2
    log.step(StepReport(step=1, loss=2.0, shapes_per_second=3.0))
    log.step(StepReport(step=2, loss=2.0, shapes_per_second=3.0))
    log.step(StepReport(step=3, loss=1.5, shapes_per_second=3.0, val_iou=0.5, best_iou=0.5))
    log.step(StepReport(step=10, loss=1.0, shapes_per_second=3.0))
    steps = lines[2:]
    assert [line.split(":")[0] for line in steps] == ["step 3/10", "step 10/10"]
    assert "val IoU 0.500 (best 0.500)" in steps[0] and "left" in steps[0] and "left" not in steps[1]
    budgeted: list[str] = []
    log = LogLines(budgeted.append, steps=10, budget_s=600.0, interval_s=0.0)
    log.step(StepReport(step=1, loss=2.0, shapes_per_second=3.0))
    log.step(StepReport(step=2, loss=2.0, shapes_per_second=3.0))
    assert len(budgeted) == 2 and not any("left" in line for line in budgeted)  # the budget may end it first


def test_training_on_a_folder_of_meshes(tmp_path):
    import trimesh

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.icosphere(subdivisions=2).export(meshes / "ball.obj")
    trimesh.creation.box(extents=(1.0, 0.5, 0.3)).export(meshes / "brick.ply")
    trimesh.creation.cylinder(radius=0.3, height=1.0).export(meshes / "can.stl")
    folder = train(config(tmp_path, "mine", 1, data=str(meshes), cache=None, val_shapes=1))
    assert load_model(folder, "cpu").config.training["data"] == "user meshes"

    open_mesh = trimesh.creation.icosphere(subdivisions=2)
    open_mesh.update_faces(open_mesh.triangles_center[:, 2] < 0.2)  # a bowl: one big hole
    open_mesh.export(meshes / "open.obj")
    from occrecon.errors import InputError

    with pytest.raises(InputError, match="open.obj.*not watertight"):
        train(config(tmp_path, "broken", 1, data=str(meshes), cache=str(tmp_path / "broken-data"), val_shapes=1))


def test_scene_model_trains_on_rooms_and_runs_the_sliding_window(tmp_path):
    from occrecon.data.rooms import prepare_room, random_room  # noqa: F401  (the generator under test)
    from occrecon.scene import reconstruct_scene

    run = config(tmp_path, "scene", 1, task="scene", n_shapes=1, val_shapes=1, n_query=128, cache=str(tmp_path / "rooms"))
    run.room_prepare_kwargs = {"surface_density": 300.0, "uniform_density": 300.0, "near_density": 200.0}
    folder = train(run)
    model = load_model(folder, "cpu")
    assert model.task == "scene" and model.config.architecture["encoder_kwargs"]["grid_resolution"] == 40
    threshold = model.config.generation.threshold
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 1.5, 3000), rng.normal(0, 0.003, 3000), rng.uniform(0, 1.0, 3000)]
    # One step of training is no model yet: move the output bias so that the threshold
    # sits at the median logit around the floor, then the window must find a surface.
    from occrecon.training import _crop_batch

    lower = torch.tensor([[-0.3, -0.8, -0.3]])
    batch = {
        "points": torch.from_numpy(floor[:2000].astype(np.float32))[None],
        "query": lower[:, None] + torch.rand(1, 500, 3) * 1.6,
        "lower": lower,
        "upper": lower + 1.6,
    }
    with torch.no_grad():
        encoder_inputs, decoder_inputs = _crop_batch(batch, 40, torch.device("cpu"))
        median = model.net.decode(decoder_inputs, model.net.encode(encoder_inputs)).median()
        model.net.decoder.fc_out.bias -= median - np.log(threshold / (1 - threshold))
    result = reconstruct_scene(model, floor, units="m")
    assert result.n_crops - result.n_skipped >= 2 and len(result.mesh.faces) > 0


def test_a_wide_decoder_is_trained_in_slices_with_the_whole_batchs_gradients():
    from occrecon.training import backward_batch, decoder_chunks
    from tiny_models import tiny_network

    net = tiny_network("image")  # a 256-wide ONet decoder: 4096 rows per slice on a CPU
    generator = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.rand(4, 3, 224, 224, generator=generator), "points": torch.rand(4, 2048, 3, generator=generator) - 0.5}
    batch["occ"] = (batch["points"].norm(dim=-1) < 0.3).float()
    cpu = torch.device("cpu")
    assert decoder_chunks(net, batch, "image", cpu) == 2
    assert decoder_chunks(net, {**batch, "points": batch["points"][:, :512]}, "image", cpu) == 1

    def gradients(slices: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        net.zero_grad(set_to_none=True)
        net.train()
        for module in net.decoder.modules():  # batch statistics would differ between slices and the whole
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        loss = backward_batch(net, batch, "image", cpu, slices=slices)
        return loss.detach(), {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}

    whole_loss, whole = gradients(1)
    sliced_loss, sliced = gradients(2)
    torch.testing.assert_close(sliced_loss, whole_loss, rtol=1e-5, atol=1e-4)
    assert whole.keys() == sliced.keys() and any(name.startswith("encoder.") for name in whole)
    for name in whole:
        torch.testing.assert_close(sliced[name], whole[name], rtol=1e-3, atol=1e-5)

    # In training mode the running statistics move once per slice, with the step's decay.
    norm = next(m for m in net.decoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    net.train()
    before = norm.running_mean.clone()
    seen: list[float] = []
    hook = norm.register_forward_pre_hook(lambda module, args: seen.append(module.momentum))
    backward_batch(net, batch, "image", cpu)
    hook.remove()
    assert seen == pytest.approx([1 - 0.9**0.5] * 2)  # two slices decay like one step at 0.1
    assert norm.momentum == 0.1 and not torch.equal(norm.running_mean, before)
