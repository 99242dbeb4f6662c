"""Open a search: the evaluator on a model and its data; create, join or resume the study.

:func:`open_evaluator` loads the model and the data once per process.
:func:`create_search` measures the layers' sensitivity (cached per model and data
sha256), seeds the study with the ILP's plans and creates it; other processes
:func:`join_search` it on the same storage, and :func:`open_search` does whichever is
right after a crash (join a complete study, else make it again). An ``on_step(step,
done, total)`` callback hears where the preparation is: ``loading`` and ``calibrating``
(:func:`open_evaluator`), ``sensitivity`` once per (layer, choice) measured, ``seeding``
(:func:`create_search`); steps without a count are reported once, as ``0`` of ``1``, when
they begin. The callback may raise to stop the preparation (a cancelled job).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from engine import pick_metric
from engine.data import fit_batch, load_dataset
from engine.io.importers import import_model, sha256_file
from engine.ir import is_ir_file, load_ir
from search._config import SearchConfig
from search._evaluator import Evaluator
from search._layer_cache import Reuse, layer_cache_path, layer_hashes, measure_reusing
from search._sensitivity import Sensitivity, cache_path
from search._study import Search, create_study, load_study, open_storage
from search._warm import WarmStart, layer_facts

__all__ = [
    "FULL_SENSITIVITY_MACS",
    "OnStep",
    "create_search",
    "join_search",
    "load_warm_start",
    "open_evaluator",
    "open_search",
    "sensitivity_method",
]

OnStep = Callable[[str, int, int], None]
"""``on_step(step, done, total)``: the preparation reached ``done`` of ``total`` in ``step``."""

FULL_SENSITIVITY_MACS = 2 * 10**9
"""``auto`` measures sensitivity with a forward per (layer, choice) while
``pairs x MACs per sample`` stays under this (2 G; the digits CNN with the default space:
76 pairs x 88 KMAC = 6.7 M; MiniLM: 714 x 0.68 GMAC = 485 G; EfficientNet-Lite2: 1,235 x
0.86 GMAC = 1,062 G). Below it the full method costs seconds and ranks pairs a little
better (bench/sensitivity.py); above, its cost grows as layers x choices x model cost, the
local method's as the model cost alone."""


def open_evaluator(
    config: SearchConfig, *, trust_uploads: bool = False, on_step: OnStep | None = None
) -> Evaluator:
    """Load the model (an IR file, or an upload imported safely) and the data of ``config``.

    ``config.holdout`` of the evaluation samples are held out (seeded by ``config.seed``).
    Steps: ``loading`` (the model and data files), ``calibrating`` (the float model's
    outputs on the calibration and evaluation batches, and its baseline metric).

    Raises:
        InvalidDataError: the metric needs labels and the data file has none.
    """
    step = on_step or _no_step
    step("loading", 0, 1)
    path = Path(config.model)
    ir = load_ir(path) if is_ir_file(path) else import_model(path, trust_uploads=trust_uploads).ir
    ir, data = fit_batch(ir, load_dataset(Path(config.data), ir.inputs))
    metric = pick_metric(config.metric, data)
    step("calibrating", 0, 1)
    return Evaluator(
        ir, data, metric, chunks=config.chunks, holdout=config.holdout, seed=config.seed
    )


def create_search(
    config: SearchConfig,
    ev: Evaluator,
    *,
    storage_url: str | None = None,
    name: str = "mpq-search",
    progress: Callable[[int, int], None] | None = None,
    on_step: OnStep | None = None,
    warm: WarmStart | None = None,
) -> Search:
    """Measure sensitivity (cached), seed by ILP, and create the study.

    ``progress(done, total)`` hears the sensitivity steps alone; ``on_step`` hears them
    as ``sensitivity`` and then ``seeding``. Sensitivity is read back per layer from the
    layer-keyed cache where the layer's weights are unchanged (:mod:`search._layer_cache`),
    and each layer's shape and weight hash are stored (the study's ``layers`` attribute)
    for a later warm start; ``reuse`` holds ``layers_reused``, ``layers_measured`` and
    ``sensitivity_s`` (seconds to obtain the table). With ``warm`` the study starts from its plans
    (:mod:`search._warm`) and records ``warm_start`` (``from_job``, ``seeded_plans``,
    ``layers_reused``, ``layers_measured``, ``sensitivity_s``) as a user attribute.
    """
    step = on_step or _no_step

    def measured(done: int, total: int) -> None:
        step("sensitivity", done, total)
        if progress is not None:
            progress(done, total)

    method = sensitivity_method(config, ev)
    model_cache = layer_cache = None
    if config.cache_dir is not None:
        model_sha = sha256_file(Path(config.model))
        data_sha = sha256_file(Path(config.data))
        cache_dir = Path(config.cache_dir)
        model_cache = cache_path(cache_dir, model_sha, data_sha, config.metric, method=method)
        layer_cache = layer_cache_path(cache_dir, data_sha, config.metric, method=method)
    sensitivity: Sensitivity = {}
    reuse = Reuse(0, 0)
    hashes = layer_hashes(ev)
    t0 = time.perf_counter()
    if config.ilp_seeds > 0:  # only the seeding needs it; a plain TPE/random search skips it
        sensitivity, reuse = measure_reusing(
            ev,
            config.space,
            method=method,
            seed=config.seed,
            hashes=hashes,
            layer_cache=layer_cache,
            model_cache=model_cache,
            progress=measured,
        )
    seconds = time.perf_counter() - t0
    step("seeding", 0, 1)
    reused = {
        "layers_reused": reuse.layers_reused,
        "layers_measured": reuse.layers_measured,
        "sensitivity_s": round(seconds, 3),
    }
    attrs: dict[str, Any] = {"layers": layer_facts(ev, hashes), "reuse": reused}
    if warm is not None:
        attrs["warm_start"] = {"from_job": warm.from_job, **reused}
    storage = open_storage(storage_url)
    return create_study(
        config, ev, sensitivity, storage=storage, name=name, method=method, warm=warm, attrs=attrs
    )


def sensitivity_method(config: SearchConfig, ev: Evaluator) -> str:
    """``local`` or ``full``: the configured method, ``auto`` resolved by model cost.

    ``auto`` is ``full`` when ``pairs x total MACs per sample <= FULL_SENSITIVITY_MACS``
    (``pairs``: the (layer, choice) pairs of the space), else ``local``. A count, not a
    timing, so the same job picks the same method on every machine.
    """
    if config.sensitivity != "auto":
        return config.sensitivity
    pairs = sum(len(ev.choices(config.space, x.name)) for x in ev.layers)
    return "full" if pairs * ev.total_macs <= FULL_SENSITIVITY_MACS else "local"


def join_search(storage_url: str, name: str, *, worker: int, read_only: bool = False) -> Search:
    """Open a search another process created (same storage), as worker ``worker``.

    ``read_only``: only to read trials (see :func:`search._study.open_storage`).
    """
    storage = open_storage(storage_url, read_only=read_only)
    assert storage is not None
    return load_study(storage, name, worker=worker)


def open_search(
    config: SearchConfig,
    ev: Evaluator,
    *,
    storage_url: str,
    name: str,
    on_step: OnStep | None = None,
    warm: WarmStart | None = None,
) -> Search:
    """Join study ``name`` if it is complete, else (re)create it: safe to repeat after a crash.

    A study whose creation was interrupted (a killed process) is deleted and made again
    (``on_step`` hears that creation's steps, see :func:`create_search`).
    """
    storage = open_storage(storage_url)
    assert storage is not None
    try:
        return load_study(storage, name)
    except KeyError:
        pass
    if name in {s.study_name for s in optuna.get_all_study_summaries(storage, False)}:
        optuna.delete_study(study_name=name, storage=storage)
    return create_search(config, ev, storage_url=storage_url, name=name, on_step=on_step, warm=warm)


def load_warm_start(
    storage_url: str,
    study_name: str,
    *,
    from_job: int | None,
    chosen_trial: int | None,
    front: list[int],
    chosen_bytes: int | None = None,
) -> WarmStart:
    """Read the plans of trials ``chosen_trial`` and ``front`` from an earlier study.

    Raises:
        KeyError: no study ``study_name`` in the storage.
    """
    storage = open_storage(storage_url, read_only=True)
    assert storage is not None
    study = optuna.load_study(study_name=study_name, storage=storage)
    wanted = [n for n in [chosen_trial, *front] if n is not None]
    trials = {t.number: t for t in study.get_trials(deepcopy=False) if t.number in wanted}
    plans: list[dict[str, str]] = []
    for n in wanted:
        t = trials.get(n)
        if t is None or not t.params:
            continue
        plan = {k: str(v) for k, v in t.params.items()}
        if plan not in plans:
            plans.append(plan)
    layers = study.user_attrs.get("layers") or {}
    return WarmStart(from_job, tuple(plans), dict(layers), chosen_bytes)


def _no_step(step: str, done: int, total: int) -> None:
    pass
