"""``mpq submit MODEL --data DATA [job spec flags] [--wait] [--download DIR] [--json]``.

A search job on a running service, for pipelines (cron, CI): the same job spec flags as
``mpq search`` (:mod:`commands.spec_flags`, checked here before anything is sent), sent
as ``POST /v1/jobs`` through the REST API (:mod:`commands.client`).

``MODEL`` is a ``.pt2``/``.onnx`` file, uploaded as the next version of ``--name``
(default: the file's stem), or ``id:N``, a model the team has. ``DATA`` is a
``.npz``/``.safetensors`` file, uploaded for that model, or ``id:N``.

Without ``--wait`` the job id is printed (with ``--json``, the queued job's document)
and the status is 0. With ``--wait`` (or ``--download DIR``, which implies it) the job
is followed to its end (:func:`commands.follow.wait_job`), its files are written into
``DIR`` (sha256-checked) and the exit status says how it ended: 0 met its targets, 3
missed them, 4 failed, 5 cancelled; 2 is a usage error or an API 4xx, 1 an unreachable
service, a 5xx or ``--wait-timeout`` passed (:data:`commands.client.EXIT_CODES`).

``--timeout`` is the job's wall-clock budget, as for ``mpq search``; the client's own
deadline is ``--wait-timeout``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from commands.client import (
    EXIT_OK,
    Client,
    ClientError,
    add_connection_flags,
    client_from_args,
    reports_errors,
)
from commands.follow import add_wait_flags, download_artifacts, report_end, wait_job
from commands.spec_flags import add_spec_flags, in_flag_words, spec_document, spec_from_args

__all__ = ["add_submit_command"]

MODEL_SUFFIXES = (".pt2", ".onnx")
DATA_SUFFIXES = (".npz", ".safetensors")
_ID = re.compile(r"^id:([1-9][0-9]{0,18})$")


def add_submit_command(subparsers: Any) -> None:
    """Register ``mpq submit``."""
    p = subparsers.add_parser(
        "submit",
        help="submit a search job to a running service (for pipelines; see docs/pipelines.md)",
        description="Submit a search job to the service at MPQ_URL with the key MPQ_API_KEY. "
        "Exit status: 0 met its targets, 3 missed them, 4 failed, 5 cancelled, "
        "2 usage error or API 4xx, 1 service unreachable, 5xx or --wait-timeout.",
    )
    p.add_argument("model", help="a .pt2 or .onnx file to upload, or id:N (an uploaded model)")
    p.add_argument("--data", required=True, help="a .npz or .safetensors file to upload, or id:N")
    add_spec_flags(p)
    p.add_argument("--name", help="the uploaded model's name (default: the file's stem)")
    add_wait_flags(p)
    p.add_argument(
        "--download", type=Path, metavar="DIR", help="write the job's files here (implies --wait)"
    )
    p.add_argument(
        "--json", action="store_true", help="print the job's JSON document (final with --wait)"
    )
    add_connection_flags(p)
    p.set_defaults(func=reports_errors(_submit))


def _submit(args: argparse.Namespace) -> int:
    spec_from_args(args)  # a bad flag is refused here, before any upload
    body = spec_document(args)
    model_ref = _reference(args.model, "MODEL", MODEL_SUFFIXES)
    data_ref = _reference(args.data, "--data", DATA_SUFFIXES)
    with client_from_args(args) as client:
        model_id = _model_id(client, model_ref, name=args.name)
        dataset_id = _dataset_id(client, data_ref, model_id=model_id)
        job = _post_job(client, {"model_id": model_id, "dataset_id": dataset_id, **body})
        if not args.json:
            print(job["id"], flush=True)
        print(f"submitted job {job['id']} to {client.url}", file=sys.stderr, flush=True)
        status = EXIT_OK
        if args.wait or args.download is not None:
            job = wait_job(client, job["id"], timeout_s=args.wait_timeout)
            status = report_end(job)
            if args.download is not None and job["status"] == "succeeded":
                for path in download_artifacts(client, job, args.download):
                    print(f"wrote {path}", file=sys.stderr)
        if args.json:
            print(json.dumps(job, indent=2), flush=True)
        return status


def _reference(text: str, what: str, suffixes: tuple[str, ...]) -> int | Path:
    """``id:N`` as ``N``; otherwise an existing file with one of ``suffixes``.

    Raises:
        ClientError: a missing file (``file_missing``) or another kind of file
            (``invalid_request``), status 2.
    """
    found = _ID.match(text)
    if found:
        return int(found[1])
    path = Path(text)
    if path.suffix.lower() not in suffixes:
        raise ClientError(
            "invalid_request",
            f"{what} {text!r} is neither id:N nor a {' or '.join(suffixes)} file",
        )
    if not path.is_file():
        raise ClientError("file_missing", f"{what}: no such file: {text!r}")
    return path


def _model_id(client: Client, ref: int | Path, *, name: str | None) -> int:
    if isinstance(ref, int):
        return ref
    model = client.upload("/v1/models", ref, name=name or ref.stem)
    print(
        f"uploaded {ref} as model {model['id']} ({model['name']!r} v{model['version']})",
        file=sys.stderr,
        flush=True,
    )
    return int(model["id"])


def _dataset_id(client: Client, ref: int | Path, *, model_id: int) -> int:
    if isinstance(ref, int):
        return ref
    dataset = client.upload("/v1/datasets", ref, name=ref.stem, model_id=str(model_id))
    print(f"uploaded {ref} as dataset {dataset['id']}", file=sys.stderr, flush=True)
    return int(dataset["id"])


def _post_job(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/jobs``; a refusal's message names this command's flags (``--max-bytes``)."""
    try:
        job: dict[str, Any] = client.post("/v1/jobs", body)
    except ClientError as exc:
        exc.message = in_flag_words(exc.message)
        raise
    return job
