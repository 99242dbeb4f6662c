"""API schemas (Pydantic), kept apart from the ORM models; one family per resource.

``<Resource>Public`` is what a list shows, ``<Resource>Detail`` what one record's page
adds, ``<Resource>sPublic(data, count)`` a page of a list with the team's total count.

Size: over 300 lines because every resource's schemas live in this one module, as in the
FastAPI template, and a job's family (its request, targets, budget, progress, public and
detail views), documented field by field for the OpenAPI page, is most of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search import JobSpec
from service.db.repos import MAX_ID

__all__ = [
    "ArtifactPublic",
    "ArtifactsPublic",
    "Budget",
    "DatasetPublic",
    "DatasetsPublic",
    "ErrorBody",
    "ErrorResponse",
    "JobCreate",
    "JobDetail",
    "JobOptions",
    "JobProgress",
    "JobPublic",
    "JobTargets",
    "JobsPublic",
    "KeyRef",
    "ModelDetail",
    "ModelPublic",
    "ModelRef",
    "ModelsPublic",
    "Status",
    "TrialsPublic",
]


_SPEC = JobSpec()  # the spec's defaults, shown in the API's schema


class Status(BaseModel):
    """A health probe's answer."""

    status: str = Field(examples=["ok"])


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code`` and a message saying how to fix it."""

    code: str = Field(examples=["not_found"])
    message: str


class ErrorResponse(BaseModel):
    """The one shape of every error response."""

    error: ErrorBody


class KeyRef(BaseModel):
    """The API key that submitted a row: its id, name and clear prefix (never the secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str


class ModelPublic(BaseModel):
    """An uploaded model (without its inventory)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    version: int = Field(description="1, 2, ... per (team, name)")
    kind: str = Field(description="the uploaded format: pt2 or onnx")
    sha256: str
    size_bytes: int
    created_at: datetime
    created_by: KeyRef | None = Field(description="the key that uploaded it (null: admin CLI)")
    aliases: list[str] = Field(
        default_factory=list, description="the aliases naming this version (`production`...)"
    )


class ModelDetail(ModelPublic):
    """An uploaded model with its layer inventory (``engine.inventory``)."""

    inventory: dict[str, Any]


class ModelsPublic(BaseModel):
    """A page of the team's models, newest first, and how many it has in all."""

    data: list[ModelPublic]
    count: int


class DatasetPublic(BaseModel):
    """An uploaded data file, validated against a model's inputs."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    sha256: str
    size_bytes: int
    num_samples: int = Field(description="calibration + evaluation samples")
    inputs: dict[str, Any] = Field(description="model input name -> {shape, dtype}")
    model_id: int | None = Field(description="the model it was validated against")
    created_at: datetime
    created_by: KeyRef | None = Field(description="the key that uploaded it")


class DatasetsPublic(BaseModel):
    """A page of the team's datasets, newest first, and how many it has in all."""

    data: list[DatasetPublic]
    count: int


class JobTargets(BaseModel):
    """What the chosen plan must meet: at most one metric target, at most one size target.

    None at all asks for the trade-off front alone (the chosen plan is then the most
    accurate). The schemas here check shapes and types only; every rule on the values
    (ranges, the one-of-each rule) is the job spec's (``search.JobSpec``), checked once
    for the API and ``mpq search`` alike (``invalid_plan``).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    max_drop: float | None = Field(default=None, description="absolute metric drop, >= 0")
    max_drop_rel: float | None = Field(default=None, description="relative drop, in [0, 1)")
    min_metric: float | None = Field(
        default=None, description="metric floor (higher-is-better metrics)"
    )
    max_metric: float | None = Field(
        default=None,
        description="metric ceiling, for lower-is-better metrics (kl, nmse), e.g. 0.01",
    )
    max_bytes: int | str | None = Field(
        default=None,
        description='payload ceiling: bytes, or a size such as "8KB" or "1.5MiB" (KB = 1000 B)',
        examples=[8000, "8KB"],
    )
    min_ratio: float | None = Field(default=None, description="compression floor, > 1")


class Budget(BaseModel):
    """How much searching a job may do."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    trials: int = Field(
        default=100,
        description="trial budget, over all runners (1 to the service's MPQ_MAX_TRIALS)",
    )
    timeout_s: float | None = Field(default=None, description="wall-clock budget, seconds")


class ModelRef(BaseModel):
    """A model by name and alias (no alias, or ``latest``: the highest version)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=255, examples=["resnet18"])
    alias: str | None = Field(
        default=None,
        max_length=64,
        description="an alias of the model (null: its latest version when the job is made)",
        examples=["production"],
    )


class JobOptions(BaseModel):
    """A :class:`search.JobSpec` by its names (those of the spec and the ``mpq search`` flags).

    What a job searches, without the model and dataset it runs on: :class:`JobCreate`
    adds their ids, a schedule (``service.schemas_schedules``) names them its own way.

    Strict types: ``true`` is not the number 1, ``"5"`` not 5; numbers are finite (NaN
    and infinities are refused here, as ``invalid_request``).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    metric: str = Field(
        default="accuracy",
        description="accuracy, agreement, top5, kl, cosine, nmse or sqnr",
        examples=["accuracy", "kl"],
    )
    targets: JobTargets = Field(default_factory=JobTargets)
    space: list[str] | None = Field(
        default=None,
        description="weight formats to search (default: the search's own); duplicates are "
        "dropped, at most 32 distinct",
        examples=[["int2", "int4", "int8", "cb16"]],
    )
    rounding: list[str] = Field(
        default_factory=lambda: list(_SPEC.rounding),
        description="roundings of uniform formats: nearest, gptq",
    )
    activation: list[str] = Field(
        default_factory=lambda: list(_SPEC.activation),
        description="activation formats to search (a8, a16, float, ...)",
    )
    pins: dict[str, str] = Field(
        default_factory=dict,
        description="layer-name pattern (fnmatch) -> format, in order; the first match wins",
        examples=[{"classifier": "int8"}],
    )
    budget: Budget = Field(default_factory=Budget)
    seed: int = Field(default=0, description="seeds the sampler, 0 to 2^32 - 1")
    sampler: str = Field(default=_SPEC.sampler, description="tpe, nsga2 or random")
    parallelism: int = Field(default=1, description="trial runners, 1 to 1024 (capped by settings)")
    sensitivity: str = Field(
        default=_SPEC.sensitivity,
        description="per-layer sensitivity: local (one forward and backward pass), full (a "
        "forward per layer and format) or auto (full for small models)",
    )
    holdout: float = Field(
        default=_SPEC.holdout,
        description=(
            "share of the evaluation samples held out of the search, in [0, 0.9] (0: none); "
            "the chosen plan is judged on them (`result.chosen.heldout`, `result.met_targets`)"
        ),
    )

    def spec(self) -> JobSpec:
        """The job spec of this request (every field but :class:`JobCreate`'s ids).

        Raises:
            InvalidPlanError: the spec is invalid (a metric, format, size or pin).
        """
        return JobSpec.from_json(self.model_dump(exclude={"model_id", "model", "dataset_id"}))


class JobCreate(JobOptions):
    """A search job: the model and dataset ids, and a :class:`search.JobSpec` by its names.

    Everything but ``model_id`` (or ``model``) and ``dataset_id`` is read by
    ``JobSpec.from_json``; the names are those of the spec and of the ``mpq search`` flags.

    Strict types: ``true`` is not the number 1, ``"5"`` not 5; numbers are finite (NaN
    and infinities are refused here, as ``invalid_request``); ids are 1 to 2^63 - 1
    (declared as ``< 2^63``: the OpenAPI document writes bounds as floats, and 2^63 - 1
    is no float).
    """

    model_id: int | None = Field(
        default=None,
        ge=1,
        lt=MAX_ID + 1,
        description="the team's model to compress (or name it with `model`)",
    )
    model: ModelRef | None = Field(
        default=None,
        description="the model by name and alias instead of `model_id` (no alias: its "
        "latest version), resolved before the 202",
    )
    dataset_id: int = Field(
        ge=1,
        lt=MAX_ID + 1,
        description="the team's dataset to calibrate and evaluate on (uploaded for this "
        "model, or for one with exactly the same inputs)",
    )

    @model_validator(mode="after")
    def _one_model(self) -> JobCreate:
        if (self.model_id is None) == (self.model is None):
            raise ValueError('give exactly one of `model_id` and `model` ({"name", "alias"})')
        return self


class JobProgress(BaseModel):
    """What a job a worker took is doing (``service.progress``), as its task last reported."""

    phase: str = Field(description="preparing, searching or finalizing", examples=["preparing"])
    step: str | None = Field(
        description="while preparing: loading, calibrating, sensitivity or seeding",
        examples=["sensitivity"],
    )
    done: int | None = Field(description="units of the step done (searching: trials)")
    total: int | None = Field(description="units of the step in all (searching: the budget)")
    eta_s: float | None = Field(
        description="searching: estimated seconds left at updated_at (not the finalize)"
    )
    updated_at: datetime


class JobPublic(BaseModel):
    """A job as lists show it: state and progress."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str = Field(description="queued, preparing, running, succeeded, failed or cancelled")
    phase: str | None = Field(
        default=None,
        description=(
            "what an active job is doing: preparing, searching or finalizing; null while "
            "queued and once the job ended"
        ),
    )
    progress: JobProgress | None = Field(
        description="the phase's step, counts and time left (kept as last reported once ended)"
    )
    model_id: int
    dataset_id: int
    config: dict[str, Any] = Field(
        description="the job spec as submitted (`search.JobSpec` JSON; parallelism capped)"
    )
    trials_done: int
    trials_total: int
    error_code: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None = Field(description="when its trials began (it turned running)")
    finished_at: datetime | None
    heartbeat_at: datetime | None = Field(
        description="last sign of life of the worker task on it (a stale one is resumed)"
    )
    created_by: KeyRef | None = Field(description="the key that submitted it")
    schedule_id: int | None = Field(
        default=None, description="the schedule that submitted it (null: submitted by hand)"
    )
    warm_start_job_id: int | None = Field(
        default=None, description="the earlier succeeded job whose results seed its search"
    )
    regression: dict[str, Any] | None = Field(
        default=None,
        description="a scheduled job against its schedule's last succeeded run (null: "
        "not compared)",
    )

    @model_validator(mode="after")
    def _phase(self) -> JobPublic:
        active = self.status in ("preparing", "running")
        self.phase = self.progress.phase if active and self.progress is not None else None
        return self


class JobDetail(JobPublic):
    """One job: its baseline, best plan so far and, once done, the result and chosen plan.

    ``baseline.metric`` and ``chosen.metric`` are on the search split (what the plans were
    chosen by); ``baseline.heldout`` and ``chosen.heldout`` (``metric``, 95% ``ci``,
    ``samples``) on the held-out split, which ``result.met_targets`` is judged on
    (``result.met_on_search`` beside it).
    """

    baseline: dict[str, Any] | None
    best: dict[str, Any] | None
    result: dict[str, Any] | None
    chosen: dict[str, Any] | None = None


class JobsPublic(BaseModel):
    """A page of the team's jobs, newest first, and how many match in all."""

    data: list[JobPublic]
    count: int


class TrialsPublic(BaseModel):
    """A job's trials so far (``search.TrialRecord`` documents) and the Pareto front."""

    data: list[dict[str, Any]]
    count: int
    front: list[int]


class ArtifactPublic(BaseModel):
    """A file a job produced."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    size_bytes: int
    sha256: str
    created_at: datetime


class ArtifactsPublic(BaseModel):
    """A job's files."""

    data: list[ArtifactPublic]
    count: int
