"""The workers' Celery app: the service's queue configuration plus the tasks.

``celery -A workers.app worker`` (or ``mpq worker``) serves it. The settings come
from the ``MPQ_*`` environment, like the API's.
"""

from __future__ import annotations

from service.queue import make_celery
from service.settings import get_settings

__all__ = ["app"]

app = make_celery(get_settings(), include=["workers.tasks"])
