"""Option types shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Registered name (see `occrecon models`), org/name Hub id, or a model folder. Default: the bundled model for this input."),
]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub branch, tag or commit to load.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (GPU when present), cpu, cuda, cuda:N or mps.")]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, max=1024, help="CPU threads for the networks; idle threads sleep instead of spinning, unless OMP_WAIT_POLICY says otherwise. [default: OMP_NUM_THREADS when set, else the cores free to this process (affinity and cgroup quota)]"),
]
# A string, not a Path: Path() drops the trailing slash that says "a folder".
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (one input only); its suffix picks the format. An existing folder or a path ending in / means --output-dir.", show_default=False)]
OutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-d", help="Folder for outputs, named after each input's stem. Default: current folder.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", "-f", help="obj, ply, off, glb or stl. Default: from -o's suffix, else obj.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, notes or summary.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per result on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist (default: skip them).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for subsampling, input noise and refinement.")]

# ---------------------------------------------------------------------------------------
# The reconstruction commands' options: one alias per flag, each field of
# occrecon.options.ReconstructOptions or occrecon.batch.BatchOptions, or one of the
# command line's own (tests/test_cli.py keeps the three sets in step).
# ---------------------------------------------------------------------------------------
InputsArg = Annotated[list[str], typer.Argument(help="Files, folders and glob patterns.", show_default=False)]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", "-t", help="Occupancy probability of the surface. [default: the model's: 0.45 for the bundled points, voxels and scene models, 0.4 for the bundled image model, 0.2 for upstream models]")]
ResolutionOpt = Annotated[Optional[int], typer.Option("--resolution", min=2, help="Coarse MISE grid cells per axis. [default: the model's; 32 for upstream models]")]
UpsamplingOpt = Annotated[Optional[int], typer.Option("--upsampling-steps", min=0, max=6, help="MISE subdivision levels (final grid = resolution·2^steps). [default: the model's: 2, 1 for the bundled image model]")]
RefineOpt = Annotated[Optional[int], typer.Option("--refine", min=0, help="Gradient refinement steps after marching cubes (upstream demo: 30). Slow and memory-hungry: on examples/chair_points.ply with the bundled points model, 30 steps took over 18× the CPU time of the whole default reconstruction and about 10 GB of memory. [default: the model's, 0]")]
SimplifyOpt = Annotated[Optional[int], typer.Option("--simplify", min=4, help="Decimate to about this many faces.")]
BatchSizeOpt = Annotated[
    Optional[int],
    typer.Option("--points-batch-size", min=1, help="Decoder rows (points × ensemble members) per forward pass. [default: 100000 on a GPU and with --mise upstream; on a CPU about 4 MiB of activations: 4096 for ONet, 32768 for ConvONet]"),
]
MaskOpt = Annotated[Optional[Path], typer.Option("--mask", help="Object mask image (white = object) for a photo without alpha.")]
SaveInputOpt = Annotated[bool, typer.Option("--save-input", help="Also save what the network saw (<stem>.input.png/.ply).")]
PreviewOpt = Annotated[bool, typer.Option("--preview", help="Also write a preview picture beside each mesh, <stem>.png: the input, then the shaded mesh from three sides, up axis up (rendered on the CPU, well under a second). A PNG of that name that is not an occrecon preview is never replaced.")]
ColourOpt = Annotated[bool, typer.Option("--colour/--no-colour", help="Vertex colours from a coloured cloud's nearest points (PLY, PCD, XYZ with RGB columns, LAS/LAZ) or from the photo (the side the camera saw; the rest filled from it); kept by ply, obj, glb and off.")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="K/N: process every N-th input starting at K. [default: from SLURM_ARRAY_TASK_ID/COUNT]")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.")]
SceneOpt = Annotated[Optional[bool], typer.Option("--scene/--no-scene", help="Treat clouds as scenes (sliding window) or objects. [default: scene when the cloud is over 4 m across and no --model is given]")]
UnitsOpt = Annotated[Optional[str], typer.Option("--units", help="Scene units: m, cm, mm, ft or us-ft. [default: what a LAS/LAZ header states, else guessed, with a note]")]
VoxelSizeOpt = Annotated[Optional[float], typer.Option("--voxel-size", min=0.001, help="Scene voxel edge in metres. [default: the model's]")]
UpOpt = Annotated[Optional[str], typer.Option("--up", help="The cloud's up axis: y, z, x, -y, -z or -x, or auto (found from the points: a floor or flat base with the rest standing on it); it is turned y-up for the network and back. [default: z for LAS/LAZ (elevation), else auto, y where the points do not say clearly (with a note)]")]
VoxelUpOpt = Annotated[Optional[str], typer.Option("--up", help="The grid's up axis: y, z, x, -y, -z or -x; it is turned y-up for the network and the mesh back, for a grid lying on its side or back. [default: y]")]
TrimOpt = Annotated[bool, typer.Option("--trim/--no-trim", help="Scenes: drop surface farther than 1.5 voxels from every point (wall backs, floor undersides the scan cannot see).")]
InputNoiseOpt = Annotated[Optional[float], typer.Option("--input-noise", min=0.0, max=1.0, help="Gaussian noise (std, canonical units) added to an object cloud before encoding, as upstream does at test time; 0 for scans that are as noisy already. [default: model's, 0.005]")]
RotationsOpt = Annotated[Optional[int], typer.Option("--rotations", min=1, max=64, help="Encode an object cloud under this many rotations (identity + random) and average: a few times slower, better where parts overlap in the model's plane projections; 1 for one pass. [default: the model's: 8 for the bundled convonet-points-synthetic, 1 for upstream models]")]
FitStepsOpt = Annotated[Optional[int], typer.Option("--fit-steps", min=0, help="Fit the cloud's encoding to its points for this many steps, so the surface passes through them: about 2-3 s more per object on a CPU; 0 turns it off. [default: the model's: 60 for the bundled convonet-points-synthetic, 0 for upstream models]")]
WindingOpt = Annotated[Optional[bool], typer.Option("--winding-prior/--no-winding-prior", help="Add the winding number of the cloud's own points (normals signed by the network) to the network's field away from them: decides inside and outside where the network confuses overlapping parts. [default: the model's]")]
MiseOpt = Annotated[Optional[str], typer.Option("--mise", help="Whose MISE refines the lattice: occrecon (refines cells whose corners straddle the surface, for exactly 1 + upsampling-steps rounds) or upstream (upstream's rule and value filling, exactly, with its 100,000 queries per pass: on upstream's inputs, upstream's mesh face for face). [default: the model's, occrecon]")]
NormalizeOpt = Annotated[bool, typer.Option("--normalize/--no-normalize", help="Move and scale an object cloud's box into the model's frame (centre 0, longest side 1); --no-normalize uses the coordinates as given, for data already in that frame (ShapeNet's).")]
AnchorOpt = Annotated[Optional[bool], typer.Option("--anchor-points/--no-anchor-points", help="MISE: also subdivide every coarse cell near an input point, so parts thinner than a coarse cell are not lost between its corners. [default: the model's]")]
FillRuleOpt = Annotated[
    str,
    typer.Option("--fill-rule", help="How the grid's cells were filled: any (a cell filled when any part of it is inside: binvox's rule, ShapeNet's, the models'), centre (when its centre is inside, e.g. mesh.contains(centres): read as such a grid is eroded by half a cell) or auto (binvox files: any; arrays: centre where the grid shows it, else any, with a note)."),
]
RayOpt = Annotated[bool, typer.Option("--ray", help="Run the batch on a Ray cluster (RAY_ADDRESS or --ray-address; else a local Ray started for it): the model loaded once per actor, inputs and outputs on a filesystem every node shares. Needs pip install \"occrecon[ray]\".")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="The Ray cluster for --ray (host:6379, ray://host:10001 or auto). [default: RAY_ADDRESS, else a local Ray]")]
RayActorsOpt = Annotated[Optional[int], typer.Option("--ray-actors", min=1, max=4096, help="Actors for --ray, each loading the model once. [default: one per GPU where the cluster has GPUs, else one per node]")]
