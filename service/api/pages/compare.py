"""``/ui/compare?ids=1&ids=2``: two to six of the team's jobs side by side.

The page overlays the jobs' Pareto fronts in one chart (``svg#fronts``, a colour per
job) and lists their plans per layer (``table#plans``: a row per layer, the union of the
jobs' layers in model order; a column per job; a cell is the layer's choice key such as
``int4/gptq/a8`` or a dash, and a row whose cells differ has them marked ``diff``), with
each job's metric, payload, compression and target at the foot.

Fewer than two ids answer a page saying how to pick jobs (tick them on the jobs list);
more than :data:`MAX_JOBS` a 422 ``invalid_request`` page; an id that is not the
team's job a 404 page, as the API would answer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.deps import SessionDep, SettingsDep
from service.api.pages.auth import PageCaller
from service.api.pages.charts_compare import SERIES_COLOURS, Series, fronts_svg
from service.api.pages.charts_plane import ChosenPoint
from service.api.pages.job import status_context
from service.api.pages.job_view import front_chart, higher_is_better, plan_choices
from service.api.pages.render import render
from service.db import repos
from service.db.models import Model
from service.domain import job_trials
from service.errors import InvalidRequestError

__all__ = ["MAX_JOBS", "PlanRow", "plan_rows", "router"]

router = APIRouter()

MAX_JOBS = 6
"""The most jobs one comparison shows."""

NONE = "\u2013"


@dataclass(frozen=True)
class PlanRow:
    """One layer across the compared jobs: its choice key in each (``NONE``: not in it)."""

    layer: str
    cells: tuple[str, ...]

    @property
    def differs(self) -> bool:
        """Whether the jobs do not all give this layer the same choice."""
        return len(set(self.cells)) > 1


def plan_rows(layers: list[list[str]], plans: list[dict[str, str]]) -> list[PlanRow]:
    """A row per layer of any job (first seen first: model order), a cell per job's plan.

    ``layers[i]`` is job ``i``'s model's layer order, ``plans[i]`` its choice per layer;
    a layer of job ``i``'s model that its plan does not name is ``"fp32"`` in it.
    """
    order: dict[str, None] = {}
    for names in layers:
        order.update(dict.fromkeys(names))
    for plan in plans:
        order.update(dict.fromkeys(plan))
    rows = []
    for layer in order:
        cells = []
        for names, plan in zip(layers, plans, strict=True):
            if layer in plan:
                cells.append(plan[layer])
            else:
                cells.append("fp32" if layer in names and plan else NONE)
        rows.append(PlanRow(layer, tuple(cells)))
    return rows


def _unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


@router.get("/compare")
def compare_page(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    settings: SettingsDep,
    ids: Annotated[list[int] | None, Query()] = None,
) -> Response:
    """Compare the jobs ``ids`` (2 to :data:`MAX_JOBS` of the team's jobs)."""
    wanted = _unique(ids or [])
    if len(wanted) > MAX_JOBS:
        raise InvalidRequestError(
            f"compare at most {MAX_JOBS} jobs at once, not {len(wanted)}; "
            "untick some on the jobs list"
        )
    if len(wanted) < 2:
        return render(request, "compare.html", viewer=viewer, jobs=[], asked=wanted)
    jobs: list[dict[str, Any]] = []
    series: list[Series] = []
    for i, job_id in enumerate(wanted):
        job = repos.get_job(session, team=viewer.team, job_id=job_id)
        model = session.get(Model, job.model_id)
        assert model is not None  # a foreign key
        records, front = job_trials(job, settings=settings)
        chart = front_chart(job, records, front)
        choices, trial = plan_choices(job)
        label = f"#{job.id} {model.name} v{model.version}"
        points = [t for t in chart.trials if t.on_front]
        chosen = chart.chosen
        if chosen is None and job.best and job.best.get("metric") is not None:
            chosen = ChosenPoint(job.best.get("number"), job.best["metric"], job.best["bytes"])
        series.append(Series(label, points, chosen))
        layers = [str(x["name"]) for x in (model.inventory or {}).get("layers") or []]
        jobs.append(
            {
                **status_context(job, model),
                "label": label,
                "colour": i % len(SERIES_COLOURS),
                "choices": choices,
                "layers": layers,
                "plan_trial": trial,
            }
        )
    metrics = {str(j["metric_name"]) for j in jobs}
    metric = next(iter(metrics)) if len(metrics) == 1 else "metric"
    return render(
        request,
        "compare.html",
        viewer=viewer,
        jobs=jobs,
        asked=wanted,
        mixed_metrics=len(metrics) > 1,
        fronts_svg=fronts_svg(series, metric=metric, higher_is_better=higher_is_better(metric)),
        rows=plan_rows([j["layers"] for j in jobs], [j["choices"] for j in jobs]),
    )
