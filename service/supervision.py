"""Restart counts of the processes ``mpq up`` supervises, passed to ``/metrics`` in a file.

``mpq up`` restarts the API or the worker when one dies; the API, another process,
serves ``/metrics``. So the supervisor writes its counts to :data:`RESTARTS_FILE` in the
data directory (JSON ``{"api": 0, "worker": 3}``, replaced atomically, mode 0600) and the
metrics collector reads it at each scrape as ``mpq_process_restarts_total{process}``. A
deployment without ``mpq up`` (docker-compose restarts its own containers) has no file
and no such samples.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily

__all__ = ["RESTARTS_FILE", "read_restarts", "restarts_family", "write_restarts"]

RESTARTS_FILE = "restarts.json"
"""Name of the counts file in the data directory."""


def write_restarts(data_dir: Path, counts: Mapping[str, int]) -> None:
    """Replace the counts file in ``data_dir`` with ``counts`` (process name -> restarts).

    Written to a private temporary file (0600) in the same directory, then renamed over
    the old one, so a reader sees the old counts or the new ones, never half a file.

    Args:
        data_dir: the settings' data directory (created if missing).
        counts: restarts per supervised process, since this ``mpq up`` started.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=data_dir, prefix=".restarts-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(dict(counts), f)
        os.replace(temp, data_dir / RESTARTS_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_restarts(data_dir: Path) -> dict[str, int]:
    """The counts in ``data_dir``'s counts file; ``{}`` if there is none or it is unreadable."""
    try:
        doc = json.loads((data_dir / RESTARTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): v for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool)}


def restarts_family(data_dir: Path | None) -> CounterMetricFamily:
    """``mpq_process_restarts_total{process}`` read from ``data_dir`` (no samples if ``None``)."""
    family = CounterMetricFamily(
        "mpq_process_restarts",
        "Restarts by `mpq up` of a process that died (api, worker), since `mpq up` started.",
        labels=["process"],
    )
    for name, count in sorted(read_restarts(data_dir).items() if data_dir else ()):
        family.add_metric([name], count)
    return family
