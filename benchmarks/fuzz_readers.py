"""Mutation fuzzing of occrecon's input readers: every broken file must end in one clean error line.

Valid files of every format the readers take are generated (seeded), then mutated with the
standard library's ``random``: byte and bit flips, truncations, insertions of random bytes and of
hostile tokens (huge counts, negative sizes, NaN, terminal escapes), deletions and duplicated
chunks. Each mutant is read by ``read_points`` / ``read_voxels`` / ``read_image`` in a worker
process, with a timeout and an address-space limit, so that a hang, a memory bomb or a crash is
counted instead of stopping the run.

Every read ends in one of:

* ``ok``: the mutant still reads (a flipped digit is still a number);
* ``clean``: :class:`occrecon.errors.InputError`, one line, naming the file;
* ``messy``: an InputError on several lines or not naming the file;
* ``masked``: an InputError wrapping an exception raised in occrecon's own code (a bug of ours
  that the readers' catch-all turned into "malformed file");
* ``traceback``: any other exception (the reader let a parser's exception through);
* ``warning``: read or refused, but a Python warning (numpy, Pillow) leaked on the way;
* ``noise``: read or refused, but something was printed to stderr on the way (a native library
  such as libtiff writing to file descriptor 2, a parser's ``print``);
* ``hang``: no answer within ``--timeout`` seconds (the worker is killed and restarted);
* ``crash``: the worker died (a segfault in a native parser, the memory limit).

The target is 0 of every kind but ``ok`` and ``clean``. The exit status is 1 when any other kind
was seen, so the script can gate CI. About 15-20 s on one core with the defaults.

    python benchmarks/fuzz_readers.py                     # 300 mutants per format, seed 0
    python benchmarks/fuzz_readers.py --per-format 50 --only ply,binvox --show 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

OUTCOMES = ("ok", "clean", "messy", "masked", "traceback", "warning", "noise", "hang", "crash")

# Tokens a hostile file would hold: counts that do not fit, negative and huge sizes, non-numbers,
# terminal escapes, markup, format keywords.
TOKENS = [
    b"999999999999", b"4294967295", b"-1", b"0", b"nan", b"inf", b"-inf", b"1e308", b"1e30", b"\x1b[2J",
    b"[/red]", b"\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\n", b"\r\n", b"end_header\n", b"data\n",
    b"element vertex 2147483647\n", b"DATA binary\n", b"POINTS 100000000\n", b"dim 100000 100000 100000\n",
    b"property list uchar int vertex_indices\n", b"%PDF", b"PK\x03\x04",
]


# --------------------------------------------------------------------------- seeds


def make_seeds(folder: Path, rng_seed: int) -> dict[str, tuple[str, Path]]:
    """Valid small files, one per format: name -> (reader kind, path)."""
    import numpy as np
    import trimesh
    from PIL import Image

    from occrecon.io.writers import write_binvox

    rng = np.random.default_rng(rng_seed)
    points = rng.normal(size=(300, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    seeds: dict[str, tuple[str, Path]] = {}

    def add(name: str, kind: str, path: Path) -> None:
        seeds[name] = (kind, path)

    cloud = trimesh.PointCloud(points)
    (folder / "ascii.ply").write_bytes(cloud.export(file_type="ply", encoding="ascii"))
    add("ply-ascii", "points", folder / "ascii.ply")
    (folder / "binary.ply").write_bytes(cloud.export(file_type="ply", encoding="binary"))
    add("ply-binary", "points", folder / "binary.ply")
    mesh = trimesh.creation.icosphere(subdivisions=2)
    (folder / "mesh.ply").write_bytes(mesh.export(file_type="ply"))
    add("ply-mesh", "points", folder / "mesh.ply")
    try:
        import open3d as o3d

        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        for data in ("ascii", "binary", "compressed"):
            path = folder / f"{data}.pcd"
            o3d.io.write_point_cloud(str(path), pcd, write_ascii=data == "ascii", compressed=data == "compressed")
            add(f"pcd-{data}", "points", path)
    except ImportError:
        pass
    np.savetxt(folder / "cloud.xyz", points, fmt="%.6f")
    add("xyz", "points", folder / "cloud.xyz")
    (folder / "cloud.csv").write_text("x,y,z\n" + "\n".join(",".join(f"{v:.5f}" for v in row) for row in points) + "\n")
    add("csv", "points", folder / "cloud.csv")
    np.save(folder / "cloud.npy", points)
    add("npy-points", "points", folder / "cloud.npy")
    np.savez_compressed(folder / "cloud.npz", points=points.astype(np.float32))
    add("npz-points", "points", folder / "cloud.npz")
    for suffix in ("obj", "off", "stl"):
        path = folder / f"mesh.{suffix}"
        data = mesh.export(file_type=suffix)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        add(suffix, "points", path)
    try:
        import laspy

        header = laspy.LasHeader(point_format=3, version="1.2")
        header.scales = np.array([0.001, 0.001, 0.001])
        las = laspy.LasData(header)
        las.x, las.y, las.z = points[:, 0] * 10, points[:, 1] * 10, points[:, 2] * 10
        las.write(folder / "cloud.las")
        add("las", "points", folder / "cloud.las")
    except ImportError:
        pass

    occupancy = np.zeros((16, 16, 16), dtype=bool)
    occupancy[4:12, 3:13, 5:11] = True
    write_binvox(folder / "grid.binvox", occupancy, translate=(-0.5, -0.5, -0.5), scale=1.0)
    add("binvox", "voxels", folder / "grid.binvox")
    np.save(folder / "grid.npy", occupancy)
    add("npy-voxels", "voxels", folder / "grid.npy")
    np.savez_compressed(folder / "grid.npz", occupancy=occupancy.astype(np.float32))
    add("npz-voxels", "voxels", folder / "grid.npz")

    pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    pixels[10:30, 20:40] = (200, 40, 40)
    image = Image.fromarray(pixels)
    rgba = Image.fromarray(np.dstack([pixels, np.full((48, 64), 255, np.uint8)]))
    image.save(folder / "photo.jpg", quality=90)
    add("jpeg", "image", folder / "photo.jpg")
    rgba.save(folder / "cut.png")
    add("png", "image", folder / "cut.png")
    image.convert("P").save(folder / "palette.gif")
    add("gif", "image", folder / "palette.gif")
    image.save(folder / "photo.bmp")
    add("bmp", "image", folder / "photo.bmp")
    image.save(folder / "photo.tif", compression="tiff_lzw")
    add("tiff", "image", folder / "photo.tif")
    try:
        image.save(folder / "photo.webp")
        add("webp", "image", folder / "photo.webp")
    except (OSError, KeyError):
        pass
    return seeds


# --------------------------------------------------------------------------- mutations


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four stacked mutations of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        n = len(out)
        if n == 0:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            continue
        pos = rng.randrange(n)
        if kind == 0:  # random byte
            out[pos] = rng.randrange(256)
        elif kind == 1:  # bit flip
            out[pos] ^= 1 << rng.randrange(8)
        elif kind == 2:  # truncation
            del out[rng.randrange(n) :]
        elif kind == 3:  # insertion of random bytes
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif kind == 4:  # hostile token inserted
            out[pos:pos] = rng.choice(TOKENS)
        elif kind == 5:  # hostile token written over
            token = rng.choice(TOKENS)
            out[pos : pos + len(token)] = token
        elif kind == 6:  # deletion
            del out[pos : pos + rng.randint(1, 64)]
        else:  # a chunk duplicated
            end = min(n, pos + rng.randint(1, 256))
            out[pos:pos] = out[pos:end]
        # Headers are where the trouble is: aim a third of the mutations at the first 256 bytes.
    return bytes(out)


def mutate_header_biased(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.35 and len(data) > 16:
        head = min(len(data), 256)
        return mutate(data[:head], rng) + data[head:]
    return mutate(data, rng)


# --------------------------------------------------------------------------- worker


def worker(memory_limit: int) -> None:
    """Read files named on stdin (JSON lines), answer one JSON line each on stdout."""
    import resource
    import warnings

    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    from occrecon.errors import InputError
    from occrecon.io import readers

    read = {"points": readers.read_points, "voxels": readers.read_voxels, "image": readers.read_image}
    try:  # warm the lazy imports, so that the first job of each kind is not timed with them
        import open3d  # noqa: F401
        import trimesh  # noqa: F401
    except ImportError:
        pass
    out = sys.stdout
    sys.stdout = sys.stderr  # a parser printing must not break the protocol
    # Everything written to file descriptor 2 (Python or native code) lands in this file, emptied per job.
    noise = tempfile.TemporaryFile()
    os.dup2(noise.fileno(), 2)
    for line in sys.stdin:
        job = json.loads(line)
        path = job["path"]
        noise.seek(0)
        noise.truncate()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                read[job["kind"]](path)
                outcome, detail = "ok", ""
            except InputError as exc:
                message = str(exc)
                clean = "\n" not in message and "\r" not in message and Path(path).name in message
                outcome, detail = ("clean" if clean else "messy"), message
                cause = exc.__cause__
                wrapped = getattr(exc, "parser_failure", False)  # made by the readers' catch-all
                if clean and wrapped and cause is not None and cause.__traceback__ is not None:
                    innermost = traceback.extract_tb(cause.__traceback__)[-1]
                    if f"{os.sep}occrecon{os.sep}" in innermost.filename:
                        outcome, detail = "masked", f"{message} <- {type(cause).__name__}: {cause} at {innermost.filename}:{innermost.lineno}"
            except BaseException as exc:  # noqa: BLE001 - that is what is counted
                outcome, detail = "traceback", f"{type(exc).__name__}: {exc}"[:300]
        if caught and outcome in ("ok", "clean"):
            outcome, detail = "warning", f"{caught[0].category.__name__}: {caught[0].message}"[:300]
        sys.stderr.flush()
        if outcome in ("ok", "clean") and os.fstat(noise.fileno()).st_size:
            noise.seek(0)
            outcome, detail = "noise", noise.read(300).decode("utf-8", "replace").strip()
        out.write(json.dumps({"outcome": outcome, "detail": detail}) + "\n")
        out.flush()


class Worker:
    """A reading process that can be killed and restarted."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--memory-limit", str(self.memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def read(self, kind: str, path: Path, timeout: float) -> tuple[str, str]:
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process is not None and self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write((json.dumps({"kind": kind, "path": str(path)}) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return "crash", "worker gone"
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return "hang", f"no answer in {timeout:g} s"
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.process = None
            return "crash", f"worker died (exit {code})"
        answer = json.loads(line)
        return answer["outcome"], answer["detail"]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-format", type=int, default=300, help="mutants per seed format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds one read may take before it counts as a hang")
    parser.add_argument("--memory-limit", type=int, default=6 * 1024**3, help="address-space limit of the worker, bytes (0: none)")
    parser.add_argument("--only", default="", help="comma-separated seed names (e.g. ply-ascii,binvox)")
    parser.add_argument("--show", type=int, default=3, help="examples shown per bad outcome")
    parser.add_argument("--keep", type=Path, default=None, help="copy every mutant that was not ok/clean here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.memory_limit)
        return 0

    started = time.perf_counter()
    rng = random.Random(args.seed)
    totals: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    runner = Worker(args.memory_limit)
    with tempfile.TemporaryDirectory(prefix="occrecon-fuzz-") as tmp:
        folder = Path(tmp)
        (folder / "seeds").mkdir()
        seeds = make_seeds(folder / "seeds", args.seed)
        only = {name for name in args.only.split(",") if name}
        print(f"{'format':<14}{'tried':>7}" + "".join(f"{o:>10}" for o in OUTCOMES))
        for name, (kind, seed_path) in seeds.items():
            if only and name not in only:
                continue
            data = seed_path.read_bytes()
            counts: Counter[str] = Counter()
            for i in range(args.per_format):
                mutant = folder / f"{name}-{i}{seed_path.suffix}"
                mutant.write_bytes(mutate_header_biased(data, rng))
                outcome, detail = runner.read(kind, mutant, args.timeout)
                counts[outcome] += 1
                if outcome not in ("ok", "clean"):
                    examples.setdefault(outcome, []).append(f"{name} #{i}: {detail}")
                    if args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        (args.keep / mutant.name).write_bytes(mutant.read_bytes())
                mutant.unlink()
            totals.update(counts)
            print(f"{name:<14}{args.per_format:>7}" + "".join(f"{counts[o]:>10}" for o in OUTCOMES), flush=True)
        runner.stop()
    tried = sum(totals.values())
    print(f"{'total':<14}{tried:>7}" + "".join(f"{totals[o]:>10}" for o in OUTCOMES))
    print(
        f"\ntried {tried}, ok {totals['ok']}, clean errors {totals['clean']}, tracebacks {totals['traceback']}, "
        f"hangs {totals['hang']}, crashes {totals['crash']}, messy errors {totals['messy']}, masked bugs {totals['masked']}, "
        f"leaked warnings {totals['warning']}, stderr noise {totals['noise']} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    for outcome in OUTCOMES[2:]:
        for line in examples.get(outcome, [])[: args.show]:
            print(f"  {outcome}: {line}")
    bad = sum(totals[o] for o in OUTCOMES[2:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
