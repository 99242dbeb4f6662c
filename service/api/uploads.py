"""One upload pipeline for every route that takes a file: the API's and the dashboard's.

:func:`import_upload` is what ``POST /v1/models``, ``POST /v1/datasets`` and the
dashboard's two upload forms all do, in this order:

1. take an upload slot (none free: 503 ``busy`` before the body is read);
2. stream the multipart body to a temporary blob under the settings' limits
   (``max_upload_bytes``, ``upload_read_timeout_s``, ``upload_min_rate_bps``);
3. ``check`` the form's text fields on the event loop -- the model's name, the dataset's
   model id, a page's CSRF token -- so that a refused form never reaches an import;
4. take an import slot (waiting at most ``import_wait_s``), and run ``load`` (the
   domain's import, a sandboxed child process for a model) in the threadpool;
5. remove the temporary blob, whatever happened (``load`` moves what it keeps).

:data:`MODEL_FORM` and :data:`DATASET_FORM` declare the two forms' request bodies; a
route declaring one is exempt from the JSON body limit (:func:`service.api.limits.
accepts_upload`), in the OpenAPI document or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from service.api.multipart import Upload, openapi_form, receive_upload
from service.api.params import MAX_ID
from service.api.slots import Limits
from service.blobs import BlobStore
from service.db.repos import check_label
from service.settings import Settings

__all__ = ["DATASET_FORM", "MODEL_FORM", "dataset_fields", "import_upload", "model_fields"]

CheckedT = TypeVar("CheckedT")
ResultT = TypeVar("ResultT")

MODEL_FORM = openapi_form(name={"type": "string", "description": "versions count up per name"})
"""The request body of a model upload: ``file`` and ``name``."""

DATASET_FORM = openapi_form(
    name={"type": "string"},
    model_id={
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_ID,
        "description": "the model whose inputs the arrays feed",
    },
)
"""The request body of a dataset upload: ``file``, ``name`` and ``model_id``."""


def model_fields(upload: Upload) -> str:
    """The model upload's ``name``, checked.

    Raises:
        InvalidRequestError: the form has no ``name``.
        InvalidNameError: it is empty, blank, too long or has control characters.
    """
    name = upload.text("name")
    check_label(name, what="model")
    return name


def dataset_fields(upload: Upload) -> tuple[str, int]:
    """The dataset upload's ``name`` (checked) and ``model_id``.

    Raises:
        InvalidRequestError: a field is missing, or ``model_id`` is not an id.
        InvalidNameError: the name is empty, blank, too long or has control characters.
    """
    name, model_id = upload.text("name"), upload.integer("model_id")
    check_label(name, what="dataset")
    return name, model_id


async def import_upload(
    request: Request,
    *,
    settings: Settings,
    blobs: BlobStore,
    limits: Limits,
    check: Callable[[Upload], CheckedT],
    load: Callable[[Upload, CheckedT], ResultT],
) -> ResultT:
    """Receive ``request``'s multipart upload, ``check`` its fields, then ``load`` it.

    Args:
        request: the request whose body is the multipart form (a ``file`` part).
        settings: the size, pace and wait limits.
        blobs: the blob store receiving the temporary file.
        limits: the process's upload and import slots.
        check: reads and checks the form's text fields (on the event loop, before an
            import slot is taken); what it returns is passed to ``load``.
        load: imports the received file (in the threadpool, holding an import slot),
            e.g. :func:`service.domain.add_model`; its result is returned.

    Raises:
        BusyError: no upload slot, or no import slot within ``settings.import_wait_s``.
        UploadTooLargeError, UploadTimeoutError, InvalidRequestError: as
            :func:`service.api.multipart.receive_upload` raises them.
        MPQError: whatever ``check`` or ``load`` raise.
    """
    async with limits.uploads.take():
        upload = await receive_upload(
            request,
            store=blobs,
            max_bytes=settings.max_upload_bytes,
            read_timeout_s=settings.upload_read_timeout_s,
            min_rate_bps=settings.upload_min_rate_bps,
        )
        try:
            checked = check(upload)
            async with limits.imports.take(wait_s=settings.import_wait_s):
                # the request's session holds no connection here: load takes one to insert
                return await run_in_threadpool(load, upload, checked)
        finally:
            upload.discard()
