"""Entry point of the isolated .pt2 importer: ``python -m engine.io.importers._pt2_child IN OUT``.

Runs only inside :func:`engine.io.run_isolated`. Loads the archive with
``torch.export.load`` (which can run code from the file -- hence the sandbox),
converts it to IR and writes ``OUT/model.mpqir``; on failure writes
``OUT/error.json`` = ``{"code", "message", "reason"}`` and exits non-zero (for an
unexpected failure, ``message`` is torch's own text, which the parent logs but never
shows: ``reason`` says ``memory`` when the address-space limit was hit). The parent
trusts neither file: it validates the IR and only accepts known error codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

IR_FILE = "model.mpqir"
ERROR_FILE = "error.json"


def main(argv: list[str]) -> int:
    """Import ``argv[0]`` into ``argv[1]``; return the process exit status."""
    src, out = Path(argv[0]), Path(argv[1])
    try:
        import torch

        from engine.errors import MPQError
        from engine.io.importers._export_to_ir import exported_program_to_ir
        from engine.ir import save_ir

        torch.set_num_threads(1)
        try:
            program = torch.export.load(src)
            save_ir(exported_program_to_ir(program), out / IR_FILE)
        except MPQError as exc:
            _error(out, exc.code, exc.message)
            return 3
    except MemoryError:
        _error(out, "import_failed", "", reason="memory")
        return 4
    except Exception as exc:
        _error(out, "import_failed", f"{type(exc).__name__}: {exc}", reason="load")
        return 4
    return 0


def _error(out: Path, code: str, message: str, *, reason: str = "") -> None:
    """Write ``error.json``; for ``import_failed``, ``message`` is torch's text (logged by the
    parent, never shown) and ``reason`` says what happened (``memory``, ``load``)."""
    doc = {"code": code, "message": message[:2000], "reason": reason}
    (out / ERROR_FILE).write_text(json.dumps(doc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
