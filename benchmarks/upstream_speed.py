"""occrecon against upstream's object generator, rebuilt here, as ratios measured in one process.

The baseline is a re-implementation of upstream's ``Generator3D`` loop for objects
(``im2mesh/onet/generation.py``, ``src/conv_onet/generation.py``; upstream.md §3), written
from the facts of that code and run with the same network modules (occrecon's nets are
upstream's architectures, bit for bit):

* encode the input once;
* MISE with upstream's rule: query the unknown lattice points, scale them into the ±0.55 box
  (ONet: ``FloatTensor(points) / R`` then ``1.1 * (p - 0.5)`` in float32; ConvONet: the same in
  float64, then ``FloatTensor``), ``torch.split`` them into batches of 100,000, decode each batch,
  ``update`` in float64, repeat until nothing is left, then ``to_dense``. The octree's
  bookkeeping is :class:`occrecon.extract.MiseOctree` (checked point for point against a literal
  port of libmise in ``tests/test_mise_upstream.py``); upstream's is compiled Cython, so its time
  is also reported apart and a second ratio leaves it out of the baseline (a lower bound of
  upstream's time);
* the networks computed as upstream's modules compute them (:func:`occrecon.nets.upstream_arithmetic`);
* pad with -1e6, marching cubes at the logit threshold (PyMCubes: no half-cell shift to undo),
  vertices ``- 1``, ``/ (n - 1)``, ``* 1.1`` about the centre.

Each variant reconstructs the same cloud (``examples/chair_points.ply`` moved into the unit box,
ShapeNet's frame) with ``occrecon.reconstruct`` as a single pass (no noise, no rotations,
fitting, prior or anchors, ``--no-normalize``); the baseline is fed the identical input tensor.
Variants and baseline alternate, ``--repeat`` times, after one untimed warm-up each. Printed per
family, as ratios against the baseline:

* speed-up: the median over the rounds of baseline / variant, both timed in the same round (the
  order reverses every round, so a drifting load weighs on all alike): in wall time, in wall time
  without the baseline's MISE bookkeeping, and in this process's CPU time; the fastest run's
  seconds are printed too;
* evaluations;
* peak memory: the RSS increase during one more run of each variant after the timed ones, with
  every allocation over 64 KiB mapped on its own so that freed memory leaves the process
  (sampled every 2 ms);
* the mesh: faces equal, vertices equal, symmetric Hausdorff distance between the vertex sets.

Families: ConvONet is the bundled ``convonet-points-synthetic`` (3-plane, upstream's
architecture); ONet is upstream's ``onet-points`` architecture with seeded random weights whose
output layer is fitted by least squares to a torus (``--onet-model`` takes a real ONet points
model instead, e.g. a converted upstream checkpoint).

Variants: ``exact`` (``--mise upstream --no-normalize``: its mesh must be the baseline's),
``occrecon`` (occrecon's MISE, default rows and fast paths); ``--ablations`` adds ``unfolded``
(ONet: conditional batch norms not folded), ``unet per plane`` (ConvONet: the three planes through
the U-Net one by one), ``per-plane`` (ConvONet: three ``grid_sample`` calls) and ``exact+rows``
(upstream's rule at occrecon's default rows); ``--rows 4096,32768`` adds occrecon's rule at those
rows per pass; ``--only`` picks variants by name.

    python3 benchmarks/upstream_speed.py [--families onet,convonet] [--repeat 2] [--threads 2] [--ablations] [--rows N,...]

On 2 loaded cores one ConvONet round takes about 10 s, one ONet round about a minute (upstream's loop
alone 30-35 s): ``--families convonet --repeat 6`` or ``--families onet --repeat 1`` stay under 3 minutes.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning, as under the occrecon command (occrecon.threads);
# GNU OpenMP reads this once, when torch loads it. On a machine shared with other work, spinning
# made every variant 3-5x slower and the runs of one variant spread by as much.
# OMP_WAIT_POLICY=ACTIVE in the environment measures with spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import ctypes
import dataclasses
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import mcubes
import numpy as np
import torch
from scipy.spatial import cKDTree

import occrecon
from occrecon.extract import MiseOctree
from occrecon.io.readers import read_points
from occrecon.loading import OccupancyModel
from occrecon.nets import build_network, get_preset, upstream_arithmetic
from occrecon.nets import convonet as convonet_module
from occrecon.nets.convonet import sample_feature
from occrecon.nets.coords import normalize_coordinate
from occrecon.options import ReconstructOptions
from occrecon.preprocess import prepare_input

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_BATCH = 100_000
PADDING = 0.1


@dataclasses.dataclass
class Run:
    """One mesh and what it cost."""

    vertices: np.ndarray
    faces: np.ndarray
    evaluations: int
    seconds: float
    cpu_seconds: float = 0.0  # this process's CPU time: less disturbed than wall time on a loaded machine
    peak_mib: float = 0.0
    bookkeeping: float = 0.0  # the baseline's MISE octree time (upstream: compiled)


def release_freed_memory() -> None:
    """From now on every allocation over 64 KiB is its own mapping, returned to the system when freed.

    glibc otherwise keeps freed blocks on its heap, where the next run reuses them unseen,
    so resident memory would measure the history of the process rather than a run's peak.
    Used for the memory pass only (after the timed runs): the extra page faults cost time.
    """
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 << 10)  # M_MMAP_THRESHOLD
    libc.malloc_trim(0)


class PeakRss:
    """The largest increase of this process's resident memory while the block runs (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


# ---------------------------------------------------------------------------------------
# The baseline: upstream's Generator3D for objects
# ---------------------------------------------------------------------------------------
def upstream_eval_points(net: torch.nn.Module, points: torch.Tensor, c: Any) -> torch.Tensor:
    """Upstream's ``eval_points``: batches of 100,000, each decoded as a batch of one object."""
    logits = []
    for chunk in torch.split(points, UPSTREAM_BATCH):
        with torch.no_grad():
            logits.append(net.decode(chunk.unsqueeze(0), c).squeeze(0))
    return torch.cat(logits, dim=0)


def upstream_generate(net: torch.nn.Module, inputs: torch.Tensor, family: str, lattice: tuple[int, int], threshold: float) -> Run:
    """Upstream's ``generate_mesh`` → ``generate_from_latent`` → ``extract_mesh`` for one object."""
    resolution0, steps = lattice
    start = time.perf_counter()
    logit = np.log(threshold) - np.log(1.0 - threshold)
    box_size = 1 + PADDING
    bookkeeping = 0.0
    with torch.no_grad(), upstream_arithmetic(net):
        c = net.encode(inputs.unsqueeze(0))
        tick = time.perf_counter()
        mise = MiseOctree(resolution0, steps, logit)
        points, evaluations = mise.query(), 0
        bookkeeping += time.perf_counter() - tick
        while len(points):
            if family == "onet":  # scaled in float32 torch ops
                pointsf = box_size * (torch.FloatTensor(points) / mise.resolution - 0.5)
            else:  # scaled in float64 numpy, then float32
                pointsf = torch.FloatTensor(box_size * (points / mise.resolution - 0.5))
            values = upstream_eval_points(net, pointsf, c).numpy().astype(np.float64)
            evaluations += len(points)
            tick = time.perf_counter()
            mise.update(points, values)
            points = mise.query()
            bookkeeping += time.perf_counter() - tick
        tick = time.perf_counter()
        grid = mise.to_dense()
        bookkeeping += time.perf_counter() - tick
    n = grid.shape[0]
    vertices, faces = mcubes.marching_cubes(np.pad(grid, 1, "constant", constant_values=-1e6), logit)
    vertices = box_size * ((vertices - 1) / np.array([n - 1, n - 1, n - 1]) - 0.5)
    return Run(vertices, faces.astype(np.int64), evaluations, time.perf_counter() - start, bookkeeping=bookkeeping)


# ---------------------------------------------------------------------------------------
# Models and input
# ---------------------------------------------------------------------------------------
def unit_box_cloud(path: Path) -> np.ndarray:
    """The cloud moved into ShapeNet's frame (box centred at 0, longest side 1), once, outside any timing."""
    points = read_points(path).points[:, :3].astype(np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - (lo + hi) / 2) / float((hi - lo).max())


def torus_logits(p: np.ndarray) -> np.ndarray:
    """Occupancy logits (inside positive, clipped to ±8) of a torus about y: ring radius 0.3, tube radius 0.1."""
    ring = np.stack([np.linalg.norm(p[:, [0, 2]], axis=1) - 0.3, p[:, 1]], axis=1)
    return np.clip(-60.0 * (np.linalg.norm(ring, axis=1) - 0.1), -8.0, 8.0)


def fitted_onet(cloud: np.ndarray, seed: int) -> OccupancyModel:
    """Upstream's ``onet-points`` architecture, seeded random weights, its output layer fitted to :func:`torus_logits`.

    The last layer is a least-squares fit on the decoder's 256 features (IoU about 0.87 with
    the torus), so the field has one closed surface with a hole, as a trained model's would.
    """
    preset = get_preset("onet-points")
    net = build_network(preset["architecture"]).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dim() > 1:  # near unit gain; the query position spread over the box
                tensor.copy_(noise * (2.0 if key == "decoder.fc_p.weight" else 0.6 / tensor[0].numel() ** 0.5))
            else:
                tensor.copy_(noise * (0.5 if key == "decoder.fc_p.bias" else 0.05) + (1.0 if key.endswith("gamma.bias") else 0.0))
    model = OccupancyModel(net=net, config=preset, name="onet-points (random, fitted to a torus)", source="local", revision=None, path=None, device=torch.device("cpu"))
    inputs = prepare_input("points", cloud, dataclasses.replace(model.input_spec, noise=0.0, normalize="none"), seed=0).tensor
    rng = np.random.default_rng(seed)
    candidates = rng.uniform(-0.55, 0.55, (100_000, 3))
    near = candidates[np.abs(torus_logits(candidates)) < 7.9][:16_000]
    samples = np.concatenate([rng.uniform(-0.55, 0.55, (8_000, 3)), near])
    features = []
    hook = net.decoder.fc_out.register_forward_hook(lambda module, args, out: features.append(args[0][0].T.numpy()))
    with torch.no_grad(), upstream_arithmetic(net):
        net.decode(torch.as_tensor(samples, dtype=torch.float32)[None], net.encode(inputs[None]))
    hook.remove()
    design = np.concatenate([features[0], np.ones((len(samples), 1), np.float32)], axis=1).astype(np.float64)
    gram = design.T @ design
    gram += 1e-4 * np.trace(gram) / len(gram) * np.eye(len(gram))
    solution = np.linalg.solve(gram, design.T @ torus_logits(samples))
    with torch.no_grad():
        net.decoder.fc_out.weight.copy_(torch.as_tensor(solution[:-1], dtype=torch.float32).view(1, -1, 1))
        net.decoder.fc_out.bias.fill_(float(solution[-1]))
    return model


def per_plane_sampling(p: torch.Tensor, c_plane: dict, padding: float, mode: str = "bilinear") -> dict:
    """The decoder's plane lookups one ``grid_sample`` call per plane (before the batched lookup)."""
    return {f: sample_feature(normalize_coordinate(p, f, padding), fea, mode) for f, fea in c_plane.items()}


# ---------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------
def occrecon_run(model: OccupancyModel, cloud: np.ndarray, options: ReconstructOptions, context: Callable[[], Any] = nullcontext) -> Run:
    start = time.perf_counter()
    with context():
        result = occrecon.reconstruct(model, "points", cloud, options)
    return Run(np.asarray(result.mesh.vertices), np.asarray(result.mesh.faces), result.n_evaluations, time.perf_counter() - start)


def patched_sampling() -> Any:
    class Patch:
        def __enter__(self) -> None:
            self.saved = convonet_module.sample_planes
            convonet_module.sample_planes = per_plane_sampling

        def __exit__(self, *exc: object) -> None:
            convonet_module.sample_planes = self.saved

    return Patch()


def variants(family: str, model: OccupancyModel, args: argparse.Namespace) -> dict[str, Callable[[np.ndarray], Run]]:
    """The occrecon runs to compare, by name."""
    single = ReconstructOptions(
        resolution=args.resolution, upsampling_steps=args.upsampling_steps, input_noise=0.0, rotations=1, fit_steps=0,
        winding=False, anchor_points=False, normalize=False, seed=0,
    )
    runs: dict[str, Callable[[np.ndarray], Run]] = {
        "exact": lambda cloud: occrecon_run(model, cloud, single.replace(mise_rule="upstream")),
        "occrecon": lambda cloud: occrecon_run(model, cloud, single.replace(mise_rule="occrecon")),
    }
    if args.ablations:
        runs["exact+rows"] = lambda cloud: occrecon_run(model, cloud, single.replace(mise_rule="upstream", points_batch_size=model.query_rows))
        # Each fast path turned off on its own: upstream_arithmetic turns off the family's fast_eval
        # path (ONet: the folded batch norms; ConvONet: the planes through the U-Net as one batch).
        slow = "unfolded" if family == "onet" else "unet per plane"
        runs[slow] = lambda cloud: occrecon_run(model, cloud, single.replace(mise_rule="occrecon"), lambda: upstream_arithmetic(model.net))
        if family == "convonet":
            runs["per-plane"] = lambda cloud: occrecon_run(model, cloud, single.replace(mise_rule="occrecon"), patched_sampling)
    for rows in args.rows:
        runs[f"rows {rows}"] = lambda cloud, rows=rows: occrecon_run(model, cloud, single.replace(mise_rule="occrecon", points_batch_size=rows))
    return runs


def compare(run: Run, base: Run) -> tuple[bool, bool, float]:
    """(faces equal, vertices equal, symmetric Hausdorff distance between the vertex sets)."""
    same_faces = run.faces.shape == base.faces.shape and bool(np.array_equal(run.faces, base.faces))
    same_vertices = run.vertices.shape == base.vertices.shape and bool(np.array_equal(run.vertices, base.vertices))
    if same_vertices or not len(run.vertices) or not len(base.vertices):
        return same_faces, same_vertices, 0.0 if same_vertices else float("inf")
    there = cKDTree(base.vertices).query(run.vertices)[0].max()
    back = cKDTree(run.vertices).query(base.vertices)[0].max()
    return same_faces, same_vertices, float(max(there, back))


def measured(fn: Callable[[], Run]) -> Run:
    cpu = time.process_time()
    with PeakRss() as rss:
        run = fn()
    run.peak_mib, run.cpu_seconds = rss.mib, time.process_time() - cpu
    return run


def benchmark_family(family: str, args: argparse.Namespace) -> bool | None:
    """Print the family's table; whether the exact variant's mesh is the baseline's (None: not run)."""
    cloud = unit_box_cloud(args.cloud)
    if family == "convonet":
        model = occrecon.load_model(args.convonet_model, "cpu")
    else:
        model = occrecon.load_model(args.onet_model, "cpu") if args.onet_model else fitted_onet(cloud, args.seed)
    threshold = ReconstructOptions().resolve(model, "points").threshold
    spec = dataclasses.replace(model.input_spec, noise=0.0, normalize="none")
    inputs = prepare_input("points", cloud, spec, seed=0).tensor  # what occrecon's pipeline feeds the encoder
    lattice = (args.resolution, args.upsampling_steps)
    runs = {"upstream loop": lambda: upstream_generate(model.net, inputs, family, lattice, threshold)}
    chosen = variants(family, model, args)
    if args.only:
        chosen = {name: fn for name, fn in chosen.items() if name in args.only}
    runs.update({name: (lambda fn=fn: fn(cloud)) for name, fn in chosen.items()})
    for fn in runs.values() if args.warmup else ():  # first-call costs (allocations, kernel selection) out of the timings
        fn()
    results: dict[str, list[Run]] = {name: [] for name in runs}
    for repeat in range(args.repeat):
        # Forward, then backward: a load that drifts during a round weighs on all variants alike.
        for name in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
            results[name].append(measured(runs[name]))
    memory: dict[str, float] = {}
    if args.memory:
        release_freed_memory()
        for name, fn in runs.items():
            memory[name] = measured(fn).peak_mib
    print(f"\n{family}: {model.name}, threshold {threshold:g}, lattice {lattice[0]}/{lattice[1]}")
    return report(results, memory, args.verbose)


def paired_ratio(base: list[Run], runs: list[Run], of: Callable[[Run], float]) -> float:
    """Median over the rounds of baseline / variant, each pair measured in the same round."""
    ratios = sorted(of(b) / max(of(r), 1e-9) for b, r in zip(base, runs))
    return ratios[len(ratios) // 2] if len(ratios) % 2 else (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2


def report(results: dict[str, list[Run]], memory: dict[str, float], verbose: bool) -> bool | None:
    """Print the family's table; whether the exact variant's mesh is the baseline's (None: not run)."""
    base_runs = results["upstream loop"]
    base = base_runs[0]
    base_mib = max(memory.get("upstream loop", 0.0), 1e-9)
    bookkeeping = sorted(r.bookkeeping for r in base_runs)[len(base_runs) // 2]
    print(
        f"  baseline: {min(r.seconds for r in base_runs):.2f} s fastest, {bookkeeping:.2f} s of it MISE bookkeeping; "
        f"{base.evaluations} evaluations, {base_mib:.0f} MiB peak, {len(base.faces)} faces"
    )
    print(f"  {'variant':<14} {'fastest':>8} {'speed-up':>9} {'w/o bk':>7} {'cpu':>7} {'evals':>6} {'memory':>7} {'faces=':>6} {'verts=':>6} {'Hausdorff':>10}")
    exact_identical: bool | None = None
    for name, rs in results.items():
        same_faces, same_vertices, hausdorff = compare(rs[0], base)
        if name == "exact":
            exact_identical = same_faces and same_vertices
        elif name == "upstream loop":
            same_faces = same_vertices = all(np.array_equal(r.faces, base.faces) and np.array_equal(r.vertices, base.vertices) for r in rs)
        print(
            f"  {name:<14} {min(r.seconds for r in rs):8.2f} {paired_ratio(base_runs, rs, lambda r: r.seconds):8.2f}x "
            f"{paired_ratio(base_runs, rs, lambda r: r.seconds - r.bookkeeping) if name != 'upstream loop' else 1.0:6.2f}x "
            f"{paired_ratio(base_runs, rs, lambda r: r.cpu_seconds):6.2f}x {rs[0].evaluations / base.evaluations:6.2f} "
            f"{memory.get(name, float('nan')) / base_mib:7.2f} {str(same_faces):>6} {str(same_vertices):>6} {hausdorff:10.2e}"
        )
    if verbose:
        for name, rs in results.items():
            print(f"  {name}: " + ", ".join(f"{r.seconds:.2f} s ({r.cpu_seconds:.2f} s cpu)" for r in rs) + f"; {memory.get(name, float('nan')):.0f} MiB peak")
    return exact_identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="onet,convonet", help="comma-separated: onet, convonet")
    parser.add_argument("--repeat", type=int, default=2, help="alternating timed runs per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=32, help="MISE coarse cells per axis (upstream: 32)")
    parser.add_argument("--upsampling-steps", type=int, default=2, help="MISE levels (upstream: 2)")
    parser.add_argument("--ablations", action="store_true", help="also time each fast path turned off, and the exact rule at occrecon's rows")
    parser.add_argument("--rows", default="", help="comma-separated decoder rows per pass to time occrecon's rule at")
    parser.add_argument("--only", default="", help="comma-separated variant names to run (default: all asked for)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed first run of each variant")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory pass (one more run of each variant, after the timed ones)")
    parser.add_argument("--cloud", type=Path, default=ROOT / "examples" / "chair_points.ply")
    parser.add_argument("--convonet-model", default="convonet-points-synthetic")
    parser.add_argument("--onet-model", default=None, help="an ONet points model (name or folder) instead of the fitted random one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print every run's seconds and memory")
    args = parser.parse_args()
    args.rows = [int(r) for r in args.rows.split(",") if r.strip()]
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"torch {torch.__version__}, {args.threads} threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), {os.cpu_count()} CPUs, "
        f"load average {load} at start, {args.repeat} alternating runs per variant"
    )
    identical = [benchmark_family(family.strip(), args) for family in args.families.split(",") if family.strip()]
    print(f"\nload average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    checked = [same for same in identical if same is not None]
    print("exact variant identical to the baseline:", "not run" if not checked else "yes" if all(checked) else "NO")
    return 0 if all(checked) else 1


if __name__ == "__main__":
    sys.exit(main())
