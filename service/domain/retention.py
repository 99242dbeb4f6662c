"""Retention: a schedule keeps its last runs; older jobs go with their trials and files.

A nightly schedule makes a job a day, each with a study of trials and a few artifacts.
:func:`prune_schedule` deletes the jobs of one schedule beyond its newest ``keep``
(newest by submission), except:

- a job not yet final (queued, preparing, running);
- a job whose model version has an alias (``production``, ``candidate``): what a team
  has named, it keeps, with the jobs that compressed it;
- the warm-start source of a job not yet final (its study seeds that job).

A deleted job takes its artifact rows (foreign-key cascade) and its Optuna study with
it; its schedule-run and webhook-delivery rows stay, their ``job_id`` set to NULL (the
history of due times and deliveries is kept). Then each blob the deleted artifacts
referred to is removed if no row refers to it any more -- identical files share one
blob, so the same ``model.mpq`` of an unchanged model may well be a kept job's -- and
only if it was not written or reused in the last :data:`BLOB_GRACE_S` (a finalize that
reuses a blob adds its row seconds later; :meth:`BlobStore.delete_if_stale`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from search import delete_searches
from service.blobs import BlobStore
from service.db.models import Artifact, Job, ModelAlias
from service.db.repos import ACTIVE, FINAL, blob_in_use

__all__ = ["BLOB_GRACE_S", "Pruned", "prune_schedule"]

log = logging.getLogger("service.domain.retention")

BLOB_GRACE_S = 3600.0
"""A blob written or reused this recently is never deleted (seconds)."""


@dataclass(frozen=True)
class Pruned:
    """What one prune removed: job ids, blob keys and study names."""

    jobs: tuple[int, ...] = ()
    blobs: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()


def prune_schedule(
    session: Session,
    *,
    store: BlobStore,
    study_url: str,
    schedule_id: int,
    keep: int,
    grace_s: float = BLOB_GRACE_S,
) -> Pruned:
    """Delete schedule ``schedule_id``'s jobs past its newest ``keep`` (module docstring).

    Args:
        session: the database session (no pending changes); committed here.
        store: the blob store the artifacts live in.
        study_url: the Optuna storage of the jobs' studies.
        schedule_id: the schedule.
        keep: how many of its newest jobs are kept whatever their state (>= 1).
        grace_s: blobs written or reused this recently are kept.

    Returns:
        What was removed.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    jobs = session.scalars(
        select(Job)
        .where(Job.schedule_id == schedule_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
    ).all()
    old = [j for j in jobs[keep:] if j.status in FINAL]
    if not old:
        return Pruned()
    aliased = set(session.scalars(select(ModelAlias.model_id)))
    sources = set(
        session.scalars(
            select(Job.warm_start_job_id).where(
                Job.status.in_(ACTIVE), Job.warm_start_job_id.is_not(None)
            )
        )
    )
    doomed = [j for j in old if j.model_id not in aliased and j.id not in sources]
    if not doomed:
        return Pruned()
    ids = [j.id for j in doomed]
    studies = [j.study_name for j in doomed if j.study_name]
    keys = set(session.scalars(select(Artifact.blob_path).where(Artifact.job_id.in_(ids))))
    session.execute(delete(Artifact).where(Artifact.job_id.in_(ids)))
    session.execute(delete(Job).where(Job.id.in_(ids)))
    session.commit()
    gone_studies = delete_searches(study_url, studies)
    gone_blobs = [
        k
        for k in sorted(keys)
        if not blob_in_use(session, k) and store.delete_if_stale(k, older_than_s=grace_s)
    ]
    session.rollback()  # end the read transaction of the checks
    log.info(
        "schedule %s: pruned %d jobs, %d studies, %d blobs",
        schedule_id,
        len(ids),
        len(gone_studies),
        len(gone_blobs),
    )
    return Pruned(tuple(ids), tuple(gone_blobs), tuple(gone_studies))
