"""Peak memory and time of the published crop model's 3D U-Net on one 160³ crop (issue #32).

Each way runs in a process of its own (peak resident memory only grows): the whole-volume
decoder levels (upstream's arithmetic, ``upstream_arithmetic``) against occrecon's default,
whose large decoder levels run their first convolution in slabs (``Decoder3d.forward_in_slabs``).
Random weights (group norms' affine parameters drawn too) and a random input of the grid's
shape: memory and time depend on the shapes alone. The outputs are compared value for value.

    python benchmarks/unet_memory.py [--resolution 160] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(way: str, resolution: int, threads: int, out: Path) -> dict:
    import numpy as np
    import torch

    from occrecon.nets.fast import upstream_arithmetic
    from occrecon.nets.unet import UNet3D

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = UNet3D(in_channels=32, out_channels=32, f_maps=32, num_levels=4).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.GroupNorm):
            module.weight.data.normal_(1.0, 0.2)
            module.bias.data.normal_(0.0, 0.2)
    grid = torch.randn(1, 32, resolution, resolution, resolution)
    before = _peak_mib()
    tick = time.perf_counter()
    with torch.inference_mode():
        if way == "whole":
            with upstream_arithmetic(net):
                result = net(grid)
        else:
            result = net(grid)
    seconds = time.perf_counter() - tick
    np.save(out, result.numpy())
    return {"way": way, "seconds": seconds, "peak_mib": _peak_mib(), "peak_above_input_mib": _peak_mib() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--way", choices=["whole", "slabs"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(run_one(args.way, args.resolution, args.threads, args.out)))
        return

    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for way in ("whole", "slabs"):
            out = Path(folder) / f"{way}.npy"
            line = subprocess.run(
                [sys.executable, __file__, "--way", way, "--out", str(out), "--resolution", str(args.resolution), "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            results[way] = json.loads(line)
        whole, slabs = np.load(Path(folder) / "whole.npy"), np.load(Path(folder) / "slabs.npy")
        difference = float(np.abs(whole - slabs).max())
        scale = float(np.abs(whole).max())
    w, s = results["whole"], results["slabs"]
    print(f"3D U-Net, 4 levels, 32 channels, one {args.resolution}³ crop, {args.threads} threads")
    print(f"whole volume: {w['seconds']:.1f} s, peak {w['peak_mib']:.0f} MiB ({w['peak_above_input_mib']:.0f} above the input)")
    print(f"slabs:        {s['seconds']:.1f} s, peak {s['peak_mib']:.0f} MiB ({s['peak_above_input_mib']:.0f} above the input)")
    print(f"ratios (slabs / whole): time {s['seconds'] / w['seconds']:.2f}×, peak {s['peak_mib'] / w['peak_mib']:.2f}×, "
          f"peak above the input {s['peak_above_input_mib'] / w['peak_above_input_mib']:.2f}×")
    print(f"largest difference {difference:.2e} (largest value {scale:.2f})")


if __name__ == "__main__":
    main()
