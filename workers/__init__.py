"""Celery workers: run jobs' searches on the service's database and blobs.

``mpq worker`` starts one (``celery -A workers.app worker``). A job is three tasks in
:mod:`workers.tasks` -- ``mpq.run_job`` (prepare), ``mpq.run_trials`` (a trial
runner; ``parallelism`` of them), ``mpq.finalize`` -- whose steps are in
:mod:`workers.run`; :mod:`workers.recovery` resumes jobs whose tasks died.
"""

from __future__ import annotations

__all__: list[str] = []
