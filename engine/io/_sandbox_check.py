"""Self-check run inside the sandbox: ``python -m engine.io._sandbox_check IN OUT HOST_PATH PORT``.

Tries what a malicious payload would -- write a file at a host path, connect
to a port the parent listens on, read the environment, write outside ``/out``
-- and records in ``OUT/report.json`` what succeeded. The parent
(:func:`engine.io.check_isolation`) compares with what actually happened.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Probe the sandbox and write ``report.json``; always exit 0."""
    out, host_path, port = Path(argv[1]), Path(argv[2]), int(argv[3])
    report: dict[str, object] = {"env": sorted(os.environ)}
    for key, target in (("wrote_host_path", host_path), ("wrote_root", Path("/mpq-escape"))):
        try:
            target.write_text("escaped")
            report[key] = True
        except OSError:
            report[key] = False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        report["connected"] = True
    except OSError:
        report["connected"] = False
    try:
        Path(argv[0]).write_text("overwritten")
        report["wrote_input"] = True
    except OSError:
        report["wrote_input"] = False
    (out / "report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
