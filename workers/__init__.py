"""Celery workers: run a job's search (``mpq.run_job``) on the service's database and blobs.

``mpq worker`` starts one (``celery -A workers.app worker``). The tasks live in
:mod:`workers.tasks`; what a job does, step by step, in :mod:`workers.run`.
"""

from __future__ import annotations

__all__: list[str] = []
