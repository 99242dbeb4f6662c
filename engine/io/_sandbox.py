"""Run an untrusted-input program in an isolated child process.

Loaders that can execute code from a file (``torch.export.load`` is one) only
ever run here. Isolation uses bubblewrap (``bwrap``, Debian package
``bubblewrap``):

- every namespace unshared (user, pid, ipc, uts, cgroup, network): no
  network, no view of other processes or IPC;
- a read-only view of only what Python needs (``/usr``, the interpreter's
  prefixes, the ``engine`` package), an empty environment, a private tmpfs
  ``/tmp``, and one writable directory (``/out``) for the result;
- the input file bound read-only at ``/in/<name>``;
- resource limits set before exec (address space, CPU seconds, size of any
  file written, open files) and a wall-clock timeout after which the process
  group is killed; ``--die-with-parent`` ends the child if MPQ dies.

Where bubblewrap is missing, callers must refuse the import unless the operator
set ``MPQ_TRUST_UPLOADS=1`` (single-user machines), in which case the program
still runs as a separate process with the same resource limits but without
isolation, and a warning is logged on every run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ImportFailedError, SandboxUnavailableError

__all__ = [
    "IsolatedResult",
    "IsolationReport",
    "Limits",
    "check_isolation",
    "isolation_available",
    "run_isolated",
]

log = logging.getLogger(__name__)

_GIB = 1024**3
_ENGINE_DIR = Path(__file__).resolve().parents[1]
"""The ``engine`` package's directory (this file is ``engine/io/_sandbox.py``)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one isolated run."""

    timeout_s: float = 300.0
    memory_bytes: int = 16 * _GIB
    """Address-space cap (RLIMIT_AS); torch reserves a few GiB of address space."""
    cpu_s: int = 600
    file_bytes: int = 8 * _GIB
    open_files: int = 256


@dataclass(frozen=True)
class IsolatedResult:
    """Exit status and (truncated) output streams of an isolated run."""

    returncode: int
    stdout: str
    stderr: str
    isolated: bool


@dataclass(frozen=True)
class IsolationReport:
    """What a probe inside the sandbox managed to do (all False/empty = isolated)."""

    wrote_host_path: bool
    wrote_outside_out: bool
    wrote_input: bool
    connected_to_host: bool
    leaked_env: tuple[str, ...]

    @property
    def isolated(self) -> bool:
        return not (
            self.wrote_host_path
            or self.wrote_outside_out
            or self.wrote_input
            or self.connected_to_host
            or self.leaked_env
        )


@functools.cache
def isolation_available() -> bool:
    """True if bubblewrap is installed and :func:`check_isolation` finds it holds (cached)."""
    if shutil.which("bwrap") is None:
        return False
    try:
        report = check_isolation()
    except (ImportFailedError, OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("bubblewrap is installed but the sandbox self-check failed: %s", exc)
        return False
    if not report.isolated:
        log.warning("bubblewrap is installed but the sandbox leaks: %s", report)
    return report.isolated


def check_isolation() -> IsolationReport:
    """Run :mod:`engine.io._sandbox_check` in the sandbox and report what it could reach.

    The parent creates a writable host directory and a listening TCP socket on
    127.0.0.1; the probe tries to write there and to connect, and to write its
    read-only input. Success at any of these means the sandbox leaks.
    """
    with tempfile.TemporaryDirectory(prefix="mpq-sbx-") as tmp, socket.socket() as listener:
        root = Path(tmp)
        (root / "out").mkdir()
        (root / "in").write_text("input")
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = str(listener.getsockname()[1])
        argv = _bwrap_argv(
            "engine.io._sandbox_check", [str(root / "escape"), port], root / "in", root / "out"
        )
        run = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        report_file = root / "out" / "report.json"
        if run.returncode != 0 or not report_file.is_file():
            raise ImportFailedError(f"sandbox self-check failed: {_tail(run.stderr, 300)}")
        report = json.loads(report_file.read_text())
        try:
            listener.accept()[0].close()
            accepted = True
        except BlockingIOError:
            accepted = False
        return IsolationReport(
            wrote_host_path=(root / "escape").exists() or bool(report["wrote_host_path"]),
            wrote_outside_out=bool(report["wrote_root"]),
            wrote_input=(root / "in").read_text() != "input" or bool(report["wrote_input"]),
            connected_to_host=accepted or bool(report["connected"]),
            leaked_env=tuple(
                sorted(set(report["env"]) - set(_child_env()) - {"PYTHONPATH", "PWD"})
            ),
        )


def run_isolated(
    module: str,
    args: Sequence[str],
    *,
    input_file: Path,
    out_dir: Path,
    limits: Limits = Limits(),
    trust_uploads: bool = False,
) -> IsolatedResult:
    """Run ``python -m module /in/<input> /out *args`` in the sandbox.

    Args:
        module: a module of the ``engine`` package (``engine.io.importers._pt2_child``).
        args: extra string arguments.
        input_file: the untrusted file; visible read-only inside.
        out_dir: an existing empty directory; the only writable place that survives.
        limits: resource limits.
        trust_uploads: run without isolation if bubblewrap is unavailable.

    Raises:
        SandboxUnavailableError: no bubblewrap and ``trust_uploads`` is False.
        ImportFailedError: the wall-clock timeout passed (the child is killed).
    """
    if not module.startswith("engine."):
        raise ValueError(f"only engine modules run isolated, not {module!r}")
    isolated = isolation_available()
    if isolated:
        argv = _bwrap_argv(module, args, Path(input_file), Path(out_dir))
    elif trust_uploads:
        log.warning(
            "MPQ_TRUST_UPLOADS=1: importing %s WITHOUT isolation. A malicious file can run code "
            "as this user. Install bubblewrap (apt-get install bubblewrap) to isolate imports.",
            input_file,
        )
        argv = [sys.executable, "-m", module, str(input_file), str(out_dir), *args]
    else:
        raise SandboxUnavailableError(
            "importing .pt2 files needs an isolated process, and bubblewrap (bwrap) is not "
            "available or cannot create namespaces on this machine. Install it "
            "(`apt-get install bubblewrap`), upload an ONNX export instead, or - on a single-user "
            "machine only - set MPQ_TRUST_UPLOADS=1 to import without isolation."
        )
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: _apply_limits(limits),
        start_new_session=True,
        env=None if isolated else _child_env(),
        cwd=str(out_dir),
    )
    try:
        out, err = proc.communicate(timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ImportFailedError(
            f"importing {Path(input_file).name!r} took longer than {limits.timeout_s:.0f} s and "
            "was stopped; a model this slow to load is not supported"
        ) from None
    return IsolatedResult(proc.returncode, _tail(out), _tail(err), isolated)


def _bwrap_argv(module: str, args: Sequence[str], input_file: Path, out_dir: Path) -> list[str]:
    binds: list[str] = []
    for prefix in sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}):
        binds += ["--ro-bind", str(prefix), str(prefix)]
    if Path(sys.prefix) != Path(sys.prefix).resolve():
        binds += ["--ro-bind", sys.prefix, sys.prefix]
    env = _child_env() | {"PYTHONPATH": "/mpq"}
    setenv = [x for k, v in env.items() for x in ("--setenv", k, v)]
    return [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *setenv,
        # /tmp first: mounts made later may lie under it (a venv in /tmp) and stay visible
        "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        *binds,
        "--ro-bind", str(_ENGINE_DIR), "/mpq/engine",
        "--ro-bind", str(input_file.resolve()), f"/in/{input_file.name}",
        "--bind", str(out_dir.resolve()), "/out",
        "--proc", "/proc",
        "--dev", "/dev",
        "--remount-ro", "/",
        "--chdir", "/out",
        sys.executable, "-m", module, f"/in/{input_file.name}", "/out", *args,
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "LANG": "C.UTF-8",
    }


def _apply_limits(limits: Limits) -> None:
    """Runs in the forked child before exec (async-signal-safe calls only)."""
    for kind, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(kind, (value, value))


def _tail(b: bytes, n: int = 4000) -> str:
    return b[-n:].decode("utf-8", "replace")
