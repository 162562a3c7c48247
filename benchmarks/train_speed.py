"""Training step time with the decoder run in cache-sized slices, as ratios against the whole batch at once.

On a CPU a wide global-code decoder (ONet's, 256 wide) is bound by memory
traffic; ``occrecon.training.backward_batch`` decodes each shape's queries in
interleaved slices of about 4 MiB of activations (``decoder_chunks``). This times
``--steps`` training steps (forward, backward, Adam) of the bundled image model
on random batches of ``--batch-size`` images and ``--queries`` queries each, in
one process, with the automatic slices and with the whole batch at once, and
prints the median step time of each and their ratio.

    python benchmarks/train_speed.py [--model onet-img-synthetic] [--batch-size 16] [--queries 2048] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import occrecon
from occrecon.registry import default_model
from occrecon.training import backward_batch, decoder_chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model("image"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--queries", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    model = occrecon.load_model(args.model, "cpu")
    net = model.net.float().train()
    size = model.input_spec.image_size
    generator = torch.Generator().manual_seed(0)
    batch = {
        "inputs": torch.rand(args.batch_size, 3, size, size, generator=generator),
        "points": torch.rand(args.batch_size, args.queries, 3, generator=generator) * 1.1 - 0.55,
    }
    batch["occ"] = (batch["points"].norm(dim=-1) < 0.3).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-5)
    device = torch.device("cpu")
    automatic = decoder_chunks(net, batch, model.task, device)
    seconds: dict[int, list[float]] = {1: [], automatic: []}
    for slices in seconds:  # warm-up
        backward_batch(net, batch, model.task, device, slices=slices)
    for _ in range(args.steps):
        for slices in seconds:
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            backward_batch(net, batch, model.task, device, slices=slices)
            optimizer.step()
            seconds[slices].append(time.perf_counter() - start)
    whole, sliced = float(np.median(seconds[1])), float(np.median(seconds[automatic]))
    print(f"{model.name}, {args.batch_size} images x {args.queries} queries, {torch.get_num_threads()} CPU threads:")
    print(f"  whole batch: {whole:.2f} s per step")
    print(f"  {automatic} slices of {args.queries // automatic} queries per shape: {sliced:.2f} s per step (x{sliced / whole:.2f})")


if __name__ == "__main__":
    main()
