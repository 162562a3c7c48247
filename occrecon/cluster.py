"""A batch on a Ray cluster, with the local batch's promises (``occrecon points ... --ray``).

The driver (the process that runs the command) plans the outputs and decides, as the local
batch does, which inputs are finished already (:func:`occrecon.batch.triage`); only the rest
go to the cluster, as file paths on a filesystem every node shares. Each Ray actor loads the
model once and runs :func:`occrecon.batch.run_batch` on one input at a time, so each input
is skipped, reconstructed and written atomically under a claim, or failed with one line,
exactly as on one machine; its result comes back with the node that did the work.

Plain Ray actors in a :class:`ray.util.ActorPool`, not Ray Data: on the 2-core machine this was
built on, Ray Data's ``map_batches`` over an actor pool took 8.6 s more to import and about
28 s more for 40 trivial items than the same two actors in an ``ActorPool``, and an input
here takes seconds, so Ray Data's block batching buys nothing. Both recover from a killed
actor the same way: the actor restarts (``max_restarts=-1``) and its input is retried
(``max_task_retries=-1``); a mesh is only ever renamed into place whole, and the claim and
temporary file a killed actor leaves are taken over when its input is retried.

Ray is imported only when a batch runs on it: ``import occrecon`` and the CLI never load it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from occrecon.batch import BatchOptions, ItemResult
from occrecon.errors import OccreconError
from occrecon.options import ReconstructOptions

if TYPE_CHECKING:
    from occrecon.batch import BatchPlan
    from occrecon.io.provenance import Request

_HINT = 'running a batch on Ray needs the optional Ray package: pip install "occrecon[ray]"'

ENVIRONMENT_PREFIXES = ("OCCRECON_", "HF_", "HUGGINGFACE_")
"""The driver's environment variables that travel to the actors (model caches, offline mode)."""


class ClusterUnavailableError(OccreconError):
    """Ray is not installed, or the cluster cannot be reached or started."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide a batch runs on Ray.

    Attributes:
        address: the cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None: ``RAY_ADDRESS``
            when it is set, else a local Ray started for this batch (the cores free to this process,
            no dashboard) and stopped after it.
        actors: how many actors (each loads the model once); None: one per GPU where the cluster
            has GPUs (and ``device`` is not ``cpu``), else one per node.
    """

    address: str | None = None
    actors: int | None = None

    def validate(self) -> None:
        if self.actors is not None and (isinstance(self.actors, bool) or not isinstance(self.actors, int) or not 0 < self.actors <= 4096):
            raise ClusterUnavailableError(f"--ray-actors must be a whole number in [1, 4096], got {self.actors!r}")


@dataclass(frozen=True)
class ClusterJob:
    """What every actor needs to run inputs as the local batch does (pickled once per actor)."""

    kind: str
    model: str
    revision: str | None
    device: str
    options: ReconstructOptions
    batch: BatchOptions
    request: Request
    scene_model: str | None = None  # the scene model a cloud may switch to, loaded on first need


@dataclass
class NodeResult(ItemResult):
    """An :class:`~occrecon.batch.ItemResult` with where it was made: ``node`` (host name) and
    ``node_id`` (Ray's id of the node; None for results the driver decided before Ray started)."""

    node: str | None = None
    node_id: str | None = None


def on_driver(result: ItemResult) -> NodeResult:
    """A result the driver decided (skipped, missing input) with this host as its node."""
    return NodeResult(**dataclasses.asdict(result), node=socket.gethostname())


@dataclass(frozen=True)
class Layout:
    """How many actors, and what each asks Ray for."""

    actors: int
    cpus: float
    gpus: float
    threads: int
    nodes: int

    def describe(self) -> str:
        """``2 Ray actors (1 CPU each) on 1 node``."""
        each = f"1 GPU, {self.threads} CPU thread{'s' if self.threads != 1 else ''}" if self.gpus else f"{self.threads} CPU{'s' if self.threads != 1 else ''}"
        return f"{self.actors} Ray actor{'s' if self.actors != 1 else ''} ({each} each) on {self.nodes} node{'s' if self.nodes != 1 else ''}"


def plan_layout(resources: dict[str, float], nodes: list[dict[str, Any]], cluster: ClusterOptions, device: str) -> Layout:
    """One actor per GPU where there are GPUs (unless ``device`` is ``cpu``), else ``cluster.actors``
    (default: one per node), each with an equal share of the CPUs that fits on one node."""
    alive = [node for node in nodes if node.get("Alive", True)]
    cpus = float(resources.get("CPU", 1.0))
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    largest = max((float(node.get("Resources", {}).get("CPU", 0.0)) for node in alive), default=cpus) or 1.0
    if gpus:
        actors = cluster.actors or gpus
        share = max(1.0, min(largest, cpus // max(actors, 1)))
        return Layout(actors, 1.0, 1.0, int(share), len(alive) or 1)
    actors = cluster.actors or max(1, len(alive))
    share = max(1.0, min(largest, float(int(cpus // actors))))
    return Layout(actors, share, 0.0, int(share), len(alive) or 1)


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ClusterUnavailableError(_HINT) from exc
    return ray


def connect(cluster: ClusterOptions) -> bool:
    """Join the cluster (``cluster.address``, else ``RAY_ADDRESS``), or start a local Ray; True when this call started Ray.

    A Ray this process joined or started before (a library user's, a test's) is used as it is.
    """
    ray = _require_ray()
    if ray.is_initialized():
        return False
    from occrecon.threads import available_cpus

    address = cluster.address or os.environ.get("RAY_ADDRESS") or None
    local = {} if address else {"num_cpus": available_cpus(), "include_dashboard": False}
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING", **local)
    except Exception as exc:  # ConnectionError, a node that timed out during start-up, ...
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterUnavailableError(f"cannot start or reach {where}: {exc}") from exc
    return True


class _Actor:
    """One worker of the pool: the model loaded once, then one input per call."""

    def __init__(self, job: ClusterJob, threads: int):
        from occrecon.threads import set_threads

        set_threads(threads)  # before torch loads: OpenMP reads its settings once
        self.job = job
        self.problem: BaseException | None = None
        try:
            self.model, self.scene_model = _load(job)
        except Exception as exc:  # said on the first input, as the error it is (a setup problem: exit 2)
            self.problem = exc
        import ray

        self.node = (socket.gethostname(), ray.get_runtime_context().get_node_id())

    def run(self, path: str, target: str) -> dict[str, Any]:
        """One input through :func:`occrecon.batch.run_batch`: its result as a dict, with this node."""
        from occrecon.batch import BatchPlan, run_batch
        from occrecon.io.paths import InputItem

        if self.problem is not None:
            raise self.problem
        job = self.job
        plan = BatchPlan([(InputItem(Path(path)), Path(target), None)])
        results = run_batch(self.model, job.kind, plan, job.options, job.batch, request=job.request, scene_model=self.scene_model)
        result = next(iter(results))
        return {**dataclasses.asdict(result), "node": self.node[0], "node_id": self.node[1]}


def _load(job: ClusterJob) -> tuple[Any, Any]:
    from occrecon.loading import ModelOnDemand, load_model

    model = load_model(job.model, job.device, revision=job.revision)
    scene = job.scene_model
    on_demand = None if scene is None else ModelOnDemand(lambda: load_model(scene, job.device, revision=job.revision))
    return model, on_demand


@dataclass
class ClusterRun:
    """One batch on Ray: :meth:`start` the actors, iterate :meth:`results`, then :meth:`close`.

    ``name`` and ``device`` say what ran where (the CLI's summary line prints them).
    """

    job: ClusterJob
    cluster: ClusterOptions = ClusterOptions()
    actors: list[Any] = field(default_factory=list)
    layout: Layout | None = None
    started_ray: bool = False

    @property
    def name(self) -> str:
        return self.job.model

    @property
    def device(self) -> str:
        return self.layout.describe() if self.layout else "Ray"

    def start(self) -> Layout:
        """Join or start Ray and create the actors (each loads the model in the background)."""
        self.cluster.validate()
        self.started_ray = connect(self.cluster)
        ray = _require_ray()
        self.layout = plan_layout(ray.cluster_resources(), ray.nodes(), self.cluster, self.job.device)
        env = {k: v for k, v in os.environ.items() if k.startswith(ENVIRONMENT_PREFIXES)}
        remote = ray.remote(_Actor).options(
            num_cpus=self.layout.cpus,
            num_gpus=self.layout.gpus,
            max_restarts=-1,  # a killed or pre-empted actor comes back...
            max_task_retries=-1,  # ...and its input is run again
            runtime_env={"env_vars": env} if env else None,
        )
        self.actors = [remote.remote(self.job, self.layout.threads) for _ in range(self.layout.actors)]
        return self.layout

    def results(self, plan: BatchPlan) -> Iterator[NodeResult]:
        """One result per planned input, in the order they finish."""
        from ray.exceptions import RayTaskError
        from ray.util import ActorPool

        work = [(str(item.path), str(target)) for item, target, _ in plan.items]
        pool = ActorPool(self.actors)
        try:
            for data in pool.map_unordered(lambda actor, args: actor.run.remote(*args), work):
                yield NodeResult(**data)
        except RayTaskError as exc:  # a setup problem raised in an actor (the model cannot load): the error itself
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else exc) from None

    def close(self) -> None:
        """Stop the actors, and Ray where this run started it."""
        if not self.actors and not self.started_ray:
            return
        ray = _require_ray()
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # gone already
                pass
        self.actors = []
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False

    def __enter__(self) -> "ClusterRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_on_ray(
    job: ClusterJob,
    plan: BatchPlan,
    cluster: ClusterOptions = ClusterOptions(),
    *,
    on_start: Callable[[ClusterRun], None] | None = None,
) -> Iterator[NodeResult]:
    """Run ``plan`` on Ray as :func:`occrecon.batch.run_batch` runs it locally, yielding a :class:`NodeResult` per input.

    ``on_start(run)`` hears the run once its actors exist (e.g. to print where it runs).
    """
    with ClusterRun(job, cluster) as run:
        run.start()
        if on_start is not None:
            on_start(run)
        yield from run.results(plan)
