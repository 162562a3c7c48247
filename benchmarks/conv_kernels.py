"""The scene U-Net's 3-D convolutions: PyTorch's own kernel choice against always oneDNN on the CPU.

For a batch of one, PyTorch runs a float convolution with a kernel at most 3 wide on
its native kernel whenever N·C·D·H ≤ 20480, which covers the U-Net's coarser levels
(20³ and 10³ for the bundled scene model). ``occrecon.nets.unet.Conv3d`` always takes
oneDNN's kernel at inference. This prints, as ratios against PyTorch's choice run in
this same process:

* the U-Net alone on one crop's feature grid;
* the whole example room through the sliding window (``reconstruct_scene``),
  whose mesh must come out the same.

    python benchmarks/conv_kernels.py [--model convonet-scene-synthetic] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

import occrecon
from occrecon.io.readers import read_points
from occrecon.metrics import nearest_neighbors
from occrecon.nets.unet import Conv3d, UNet3D
from occrecon.scene import reconstruct_scene

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def pytorch_choice() -> Iterator[None]:
    """Run occrecon's Conv3d as plain ``nn.Conv3d`` (PyTorch's own kernel choice)."""
    forward = Conv3d.forward
    Conv3d.forward = nn.Conv3d.forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        Conv3d.forward = forward  # type: ignore[method-assign]


def best_time(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: oneDNN builds its primitives on first use
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convonet-scene-synthetic")
    parser.add_argument("--room", type=Path, default=ROOT / "examples" / "room_points.ply")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = occrecon.load_model(args.model, "cpu")
    unets = [m for m in model.net.modules() if isinstance(m, UNet3D)]
    if not unets:
        raise SystemExit(f"{model.name} has no 3-D U-Net")
    unet = unets[0]
    resolution = int(model.config.architecture["encoder_kwargs"]["grid_resolution"])
    channels = unet.encoders[0].basic_module.SingleConv1.conv.in_channels
    grid = torch.randn(1, channels, resolution, resolution, resolution, generator=torch.Generator().manual_seed(0))
    print(f"{model.name}: U-Net on a {channels}×{resolution}³ grid, {args.threads} threads, best of {args.repeats}")

    with torch.inference_mode():
        with pytorch_choice():
            reference = unet(grid)
            base = best_time(lambda: unet(grid), args.repeats)
        ours = unet(grid)
        fast = best_time(lambda: unet(grid), args.repeats)
    print(f"U-Net per crop: PyTorch's choice {base * 1000:.1f} ms, oneDNN always {fast * 1000:.1f} ms: x{fast / base:.3f}; "
          f"largest difference {float((ours - reference).abs().max()):.2e}")

    points = read_points(args.room).points
    with pytorch_choice():
        start = time.perf_counter()
        before = reconstruct_scene(model, points, units="m")
        base_room = time.perf_counter() - start
    start = time.perf_counter()
    after = reconstruct_scene(model, points, units="m")
    room = time.perf_counter() - start
    # Features differ in the last float bits, so a few lattice values near the threshold flip.
    distance, _ = nearest_neighbors(np.asarray(after.mesh.vertices), np.asarray(before.mesh.vertices))
    print(f"example room ({len(points):,} points, {after.n_crops - after.n_skipped} crops): PyTorch's choice {base_room:.2f} s "
          f"(encoding {before.timings['encode']:.2f} s), oneDNN always {room:.2f} s (encoding {after.timings['encode']:.2f} s): "
          f"x{room / base_room:.3f}")
    print(f"mesh: {len(after.mesh.faces)} faces against {len(before.mesh.faces)}; vertices from the other mesh: "
          f"median {np.median(distance):.1e} m, 99.9th percentile {np.percentile(distance, 99.9):.1e} m, max {distance.max():.1e} m")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
