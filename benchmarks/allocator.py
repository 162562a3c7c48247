"""CPU time with glibc's malloc as it comes against ``occrecon.tune_cpu_allocator()``, which the CLI calls.

Without tuning, glibc serves large blocks with fresh mmaps and hands freed heap
memory back to the system, so network passes pay for page faults and for the
kernel zeroing every page their activations touch. glibc adapts its thresholds as
blocks are freed (up to 32 MiB), so the cost falls mostly on a process's first
passes and on blocks over 32 MiB: exactly a CLI run. The settings cannot be undone
inside a process, so each measurement runs in a fresh child process, with the
allocator as it comes and tuned in turn, ``--repeats`` times; the figures are
medians and ratios (tuned / as it comes) from the same run of this script. Each
child times its first call of the workload after loading the model, without the
imports:

* the image model's decoder on 100,000 queries in one pass and in passes of 4,096;
* the first 10 training steps of the image model (16 images, 1,024 queries each);
* the bundled defaults on the files in examples/: the chair photo, the chair's
  point cloud and the room (the scene model's sliding window).

    python benchmarks/allocator.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "decode-100k": "image decoder, 100,000 queries in one pass",
    "decode-4096": "image decoder, 100,000 queries in passes of 4,096",
    "train-steps": "10 image training steps (16 x 1,024 queries)",
    "image": "examples/chair.png (image model)",
    "points": "examples/chair_points.ply (points model)",
    "scene": "examples/room_points.ply (scene model)",
}


def workload(name: str) -> Callable[[], object]:
    """Load what ``name`` needs and return the call to time."""
    import occrecon
    from occrecon.metrics import uniform_box_points
    from occrecon.preprocess import prepare_input
    from occrecon.registry import default_model
    from occrecon.training import backward_batch, decoder_chunks

    examples = ROOT / "examples"
    if name == "points":
        model = occrecon.load_model(default_model("points"), "cpu")
        return lambda: occrecon.reconstruct(model, "points", str(examples / "chair_points.ply"))
    if name == "scene":
        model = occrecon.load_model("convonet-scene-synthetic", "cpu")
        return lambda: occrecon.reconstruct(model, "points", str(examples / "room_points.ply"))
    model = occrecon.load_model(default_model("image"), "cpu")
    if name == "image":
        return lambda: occrecon.reconstruct(model, "image", str(examples / "chair.png"))
    if name == "train-steps":
        net = model.net.float().train()
        size = model.input_spec.image_size
        generator = torch.Generator().manual_seed(0)
        batch = {"inputs": torch.rand(16, 3, size, size, generator=generator), "points": torch.rand(16, 1024, 3, generator=generator) * 1.1 - 0.55}
        batch["occ"] = (batch["points"].norm(dim=-1) < 0.3).float()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-6)
        slices = decoder_chunks(net, batch, "image", torch.device("cpu"))

        def steps() -> None:
            for _ in range(10):
                optimizer.zero_grad(set_to_none=True)
                backward_batch(net, batch, "image", torch.device("cpu"), slices=slices)
                optimizer.step()

        return steps
    prepared = prepare_input("image", str(examples / "chair.png"), model.input_spec)
    with torch.no_grad():
        code = model.net.encode(prepared.tensor[None])
    queries = torch.from_numpy(uniform_box_points(100_000, seed=0, low=-0.55, high=0.55).astype(np.float32))
    rows = 100_000 if name == "decode-100k" else 4096

    def decode() -> object:
        with torch.inference_mode():
            return [model.net.decode(queries[i : i + rows][None], code) for i in range(0, len(queries), rows)]

    return decode


def child(name: str, tuned: bool, threads: int) -> None:
    """Time the first call of one workload in this (fresh) process and print it as JSON."""
    from occrecon.allocator import tune_cpu_allocator

    torch.set_num_threads(threads)
    if tuned and not tune_cpu_allocator():
        raise SystemExit("this C library is not glibc: nothing to tune")
    run = workload(name)
    before, start = os.times(), time.perf_counter()
    run()
    wall, after = time.perf_counter() - start, os.times()
    print(json.dumps({"wall": wall, "system": after.system - before.system}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "TUNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "1", args.threads)
        return 0
    results: dict[tuple[str, bool], list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for name in WORKLOADS:
            for tuned in (False, True):
                command = [sys.executable, __file__, "--threads", str(args.threads), "--child", name, str(int(tuned))]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                results.setdefault((name, tuned), []).append(json.loads(output.strip().splitlines()[-1]))
    median = lambda runs, key: float(np.median([r[key] for r in runs]))  # noqa: E731
    print(f"{args.threads} CPU threads; median of {args.repeats} fresh processes each; kernel CPU seconds in brackets")
    print(f"{'workload':52} {'as it comes':>18} {'tuned':>18} {'ratio':>6}")
    for name, label in WORKLOADS.items():
        plain, tuned = results[(name, False)], results[(name, True)]
        a, b = median(plain, "wall"), median(tuned, "wall")
        print(f"{label:52} {a:8.2f} s ({median(plain, 'system'):5.2f}) {b:8.2f} s ({median(tuned, 'system'):5.2f}) {b / a:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
