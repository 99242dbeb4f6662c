"""``/ui/models``: the team's models by name, and one model's inventory, jobs and sensitivity.

A model page shows what the importer found (:mod:`engine.inventory`'s document: inputs,
layers with their weight shapes, parameters, MACs and whether a batch norm folds into
them), the model's jobs and datasets, and -- once a job of it succeeded -- the
per-layer sensitivity heatmap of the latest such job (:mod:`service.api.pages.heatmap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import SessionDep
from service.api.pages.auth import PageCaller
from service.api.pages.heatmap import sensitivity_heatmap
from service.api.pages.render import render
from service.api.params import ModelId
from service.db import repos
from service.db.models import Model

__all__ = ["ModelFacts", "ModelGroup", "model_facts", "router"]

router = APIRouter()

MAX_MODELS = 1000
"""Model versions the models page reads at most (newest first)."""


@dataclass(frozen=True)
class ModelFacts:
    """What a model's inventory says in figures (missing figures are ``None``)."""

    layers: list[dict[str, Any]]
    params: int | None
    macs: int | None
    float_bytes: int | None
    bn_folds: int

    @property
    def layer_count(self) -> int:
        return len(self.layers)


def model_facts(model: Model) -> ModelFacts:
    """The figures of ``model``'s inventory document (a stored document: read defensively)."""
    inv = model.inventory if isinstance(model.inventory, dict) else {}
    layers = [x for x in inv.get("layers") or [] if isinstance(x, dict)]
    return ModelFacts(
        layers=layers,
        params=_int(inv.get("total_params")),
        macs=_int(inv.get("total_macs")),
        float_bytes=_int(inv.get("float_bytes")),
        bn_folds=sum(1 for x in layers if x.get("bn_follows")),
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ModelGroup:
    """Every version of one model name, newest first, and their jobs."""

    name: str
    versions: list[Model]
    jobs: int

    @property
    def latest(self) -> Model:
        return self.versions[0]

    @property
    def facts(self) -> ModelFacts:
        return model_facts(self.latest)


def _groups(models: list[Model], jobs: dict[int, int]) -> list[ModelGroup]:
    by_name: dict[str, list[Model]] = {}
    for m in models:  # newest first, so each group's first entry is its latest version
        by_name.setdefault(m.name, []).append(m)
    return [
        ModelGroup(name, versions, sum(jobs.get(v.id, 0) for v in versions))
        for name, versions in by_name.items()
    ]


@router.get("/models")
def models_page(request: Request, session: SessionDep, viewer: PageCaller) -> Response:
    """The team's models grouped by name, the most recently uploaded name first."""
    models = repos.list_models(session, team=viewer.team, limit=MAX_MODELS)
    jobs = repos.count_jobs_by_model(session, team=viewer.team)
    return render(
        request,
        "models.html",
        viewer=viewer,
        groups=_groups(models, jobs),
        jobs_by_model=jobs,
        aliases=repos.list_aliases(session, model_ids=[m.id for m in models]),
        truncated=len(models) >= MAX_MODELS,
    )


@router.get("/models/{model_id:int}")
def model_page(
    request: Request, model_id: ModelId, session: SessionDep, viewer: PageCaller
) -> Response:
    """One model: inventory, jobs, datasets and the sensitivity heatmap (another team's: 404)."""
    model = repos.get_model(session, team=viewer.team, model_id=model_id)
    facts = model_facts(model)
    sensitivity = repos.find_latest_sensitivity(session, team=viewer.team, model=model)
    heatmap = None
    if sensitivity is not None:
        names = [str(x.get("name", "")) for x in facts.layers]
        heatmap = sensitivity_heatmap(
            names,
            sensitivity.table,
            row_ids={name: f"layer-{i}" for i, name in enumerate(names)},
        )
    inv = model.inventory if isinstance(model.inventory, dict) else {}
    return render(
        request,
        "model.html",
        viewer=viewer,
        model=model,
        facts=facts,
        inputs=[x for x in inv.get("inputs") or [] if isinstance(x, dict)],
        other_ops=inv.get("other_ops") or {},
        unfoldable_bn=inv.get("unfoldable_bn") or {},
        jobs=repos.list_model_jobs(session, team=viewer.team, model=model),
        datasets=repos.list_model_datasets(session, team=viewer.team, model=model),
        sensitivity=sensitivity,
        heatmap=heatmap,
    )
