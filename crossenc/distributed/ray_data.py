"""Score a Ray Dataset on a pool of actors, each holding one CrossEncoder (Ray Data's callable-class pattern)."""

from __future__ import annotations

import logging
import os
from typing import Any

from crossenc.distributed.scorer import DEFAULT_ROWS_PER_CALL, Scorer, ScoringSpec
from crossenc.optional import require

logger = logging.getLogger(__name__)
EXPORTING_BACKENDS = ("onnx", "openvino")  # they export on first load and cache the artifact on disk


def _ray() -> Any:
    require("ray.data", "ray", "crossenc score --ray")  # ray.data is not imported by plain `import ray`
    return require("ray", "ray", "crossenc score --ray")


def connect(address: str = "local", verbose: bool = False) -> bool:
    """Start (``"local"``) or join (``"auto"``, ``"HOST:PORT"``, ``"ray://..."``) a Ray cluster.

    Returns True when this call connected (the caller then calls ``ray.shutdown()``), False when
    Ray was already initialised. Usage stats stay off. Unless ``verbose``, Ray's logs and notices
    stay out of this process's terminal (they remain in /tmp/ray/session_*/logs).
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the C++ core worker logs to stderr
        logging.getLogger("ray").setLevel(logging.ERROR)  # start-up notices come before ray.init's own logging
        for handler in logging.getLogger("ray.data").handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)  # Ray Data's console handler; its log file keeps everything
    options: dict[str, Any] = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address == "local":
        options["include_dashboard"] = False
    ray.init(address=address, **options)
    return True


def resources_per_actor(concurrency: int, num_cpus: float | None, num_gpus: float) -> tuple[float, int]:
    """CPUs to reserve and threads to run per actor.

    GPU actors reserve 1 CPU unless told. CPU actors split the cluster's CPUs between them
    (2 actors on 2 CPUs: 1 each; 1 actor: 2), capped at the smallest node so every actor fits
    on one. Threads follow the reservation, as Ray's own OMP_NUM_THREADS does.
    """
    if num_cpus is None:
        if num_gpus:
            num_cpus = 1.0
        else:
            ray = _ray()
            total = ray.cluster_resources().get("CPU", 1)
            per_node = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
            smallest = min([cpus for cpus in per_node if cpus > 0], default=total)
            num_cpus = float(max(1, min(int(total // concurrency), int(smallest))))
    return num_cpus, max(1, int(num_cpus))


def warm_exports(spec: ScoringSpec) -> ScoringSpec:
    """Load the model once in the driver where that builds an export (ONNX, OpenVINO) or reads the
    autotune profile ("auto"), so actors on this node find the export in crossenc's cache instead of
    each exporting, and every actor runs the same backend and variant. Returns the pinned spec."""
    if spec.backend not in EXPORTING_BACKENDS + ("auto",):
        return spec
    from crossenc import CrossEncoder
    from crossenc.demo import expand_alias

    device = spec.device if spec.backend == "auto" else "cpu"  # exports do not depend on the device
    encoder = CrossEncoder(
        expand_alias(spec.model), backend=spec.backend, variant=spec.variant, device=device,
        accuracy=spec.accuracy, max_tokens=spec.max_tokens, **spec.encoder_kwargs,
    )
    info = encoder.info()
    encoder.close()
    return spec.replace(backend=info["backend"], variant=info["variant"])


def score_dataset(
    ds: Any,
    model: str,
    *,
    concurrency: int = 1,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    rows_per_call: int | None = None,
    max_restarts: int | None = None,
    max_task_retries: int | None = None,
    ray_remote_args: dict[str, Any] | None = None,
    preserve_order: bool = True,
    **options: Any,
) -> Any:
    """``ds`` with scores added, computed by ``concurrency`` actors that each load one CrossEncoder.

    ``options`` are :class:`~crossenc.distributed.scorer.ScoringSpec` fields (layout, column
    names, top_k, id_column, bad_rows, backend, variant, device, accuracy, batch_size,
    max_tokens, threads, encoder_kwargs, predict_kwargs). Work splits as blocks of
    ``rows_per_call`` rows -> actors -> crossenc's token-budget batches of at most ``batch_size``
    pairs. A dead actor is restarted and its blocks retried, so every row comes out once:
    ``max_restarts`` and ``max_task_retries`` default (None) to Ray Data's -1 (no limit). ``preserve_order`` keeps input order
    (Ray holds finished blocks until the earlier ones are done). Lazy, like any Ray Dataset, except
    when the actors reserve every CPU of the cluster: then the input is materialised first, since
    upstream read tasks would otherwise wait forever for a CPU.
    """
    ray = _ray()
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    num_cpus, threads = resources_per_actor(concurrency, num_cpus, num_gpus)
    if options.get("device") is None:
        options["device"] = "cuda" if num_gpus else "cpu"
    elif str(options["device"]).startswith("cuda") and not num_gpus:
        raise ValueError(f"device {options['device']!r} needs num_gpus > 0: Ray hides GPUs from actors that reserve none")
    if options.get("threads") is None:
        options["threads"] = threads
    spec = warm_exports(ScoringSpec(model=model, **options))
    from ray.data.dataset import MaterializedDataset

    if concurrency * num_cpus >= ray.cluster_resources().get("CPU", 0) and not isinstance(ds, MaterializedDataset):
        ds = ds.materialize()
    remote_args = dict(ray_remote_args or {})
    for name, value in (("max_restarts", max_restarts), ("max_task_retries", max_task_retries)):
        if value is not None:
            remote_args[name] = value  # Ray Data sets both to -1 itself; passing them is deprecated in 2.60
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"spec": spec},
        batch_size=rows_per_call or DEFAULT_ROWS_PER_CALL[spec.layout],
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
        **remote_args,
    )
    scored.context.execution_options.preserve_order = preserve_order
    return scored
