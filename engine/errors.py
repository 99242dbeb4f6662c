"""The one error hierarchy of MPQ.

Every error a user can see is an :class:`MPQError` subclass with a stable
``code`` (API clients and tests match on it) and a message that says what was
wrong, the offending value, and how to fix it. The service maps codes to HTTP
statuses in one table; the CLI prints ``error[code]: message`` and exits 2.
This module holds the errors the engine and the search raise; the service adds its
own (not found, conflict, unavailable backends...) in ``service/errors.py``.
"""

from __future__ import annotations

__all__ = [
    "ArchiveLimitError",
    "CorruptFileError",
    "DataDtypeError",
    "DataFormatError",
    "DataShapeError",
    "DataTooLargeError",
    "EmptyDataError",
    "FileMissingError",
    "ImportFailedError",
    "InvalidDataError",
    "InvalidIRError",
    "InvalidLabelsError",
    "InvalidPlanError",
    "MPQError",
    "MetricNotApplicableError",
    "MissingInputsError",
    "ModelFormatError",
    "NonFiniteDataError",
    "OnnxExternalDataError",
    "PickledDataError",
    "SampleCountError",
    "SandboxUnavailableError",
    "TorchSavePickleError",
    "TorchScriptError",
    "TrainingModeError",
    "UnexpectedArraysError",
    "UnsafeArchiveError",
    "UnsupportedExportError",
    "UnsupportedOpsError",
]

_EXPORT_HINT = (
    "Export the model with `ep = torch.export.export(model.eval(), example_args)` and "
    "`torch.export.save(ep, 'model.pt2')`, or with `torch.onnx.export(model.eval(), "
    "example_args, 'model.onnx')`."
)


class MPQError(Exception):
    """Base of every user-facing error; ``code`` is stable across releases."""

    code = "mpq_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ModelFormatError(MPQError):
    """The upload is not a model file MPQ can read (.pt2 or .onnx)."""

    code = "unsupported_model_format"
    hint = _EXPORT_HINT


class TorchSavePickleError(ModelFormatError):
    """A ``torch.save`` pickle: loading it would run arbitrary code."""

    code = "torch_save_pickle"


class TorchScriptError(ModelFormatError):
    """A TorchScript archive (``torch.jit.save``): not accepted."""

    code = "torchscript_archive"


class CorruptFileError(ModelFormatError):
    """Truncated or damaged file of a known format."""

    code = "corrupt_file"


class ArchiveLimitError(MPQError):
    """An archive exceeds a size, member-count or compression-ratio limit."""

    code = "archive_limits_exceeded"


class UnsafeArchiveError(MPQError):
    """A .pt2 archive uses a feature that makes torch.export.load run code."""

    code = "unsafe_archive"


class UnsupportedOpsError(MPQError):
    """The graph uses operators outside MPQ's allow-list."""

    code = "unsupported_ops"


class TrainingModeError(MPQError):
    """The model was exported in training mode (batch norm updates statistics)."""

    code = "training_mode"


class InvalidIRError(MPQError):
    """An IR file or object violates the IR schema."""

    code = "invalid_ir"


class OnnxExternalDataError(MPQError):
    """An ONNX file points at external data MPQ will not read."""

    code = "onnx_external_data"


class SandboxUnavailableError(MPQError):
    """The isolated importer cannot run on this machine."""

    code = "sandbox_unavailable"


class ImportFailedError(MPQError):
    """The isolated importer failed, crashed or ran past its limits."""

    code = "import_failed"


class FileMissingError(MPQError):
    """A path given by the user does not exist or is not a file."""

    code = "file_not_found"


class InvalidPlanError(MPQError):
    """A quantization plan is malformed or does not fit the model."""

    code = "invalid_plan"


class InvalidDataError(MPQError):
    """An evaluation/calibration data file cannot be used with the model."""

    code = "invalid_data"


class DataFormatError(InvalidDataError):
    """The data file is neither an .npz archive of .npy arrays nor a safetensors file."""

    code = "unsupported_data_format"


class PickledDataError(InvalidDataError):
    """An .npz member is an object array: reading it would need pickle, so it is refused."""

    code = "pickled_data"


class DataTooLargeError(InvalidDataError):
    """The data file, or what it unpacks to, exceeds the byte limit."""

    code = "data_too_large"


class EmptyDataError(InvalidDataError):
    """The data file holds no arrays, or a split has no samples."""

    code = "empty_data"


class MissingInputsError(InvalidDataError):
    """The data file lacks an array for some model input."""

    code = "missing_inputs"


class UnexpectedArraysError(InvalidDataError):
    """The data file holds arrays that match no model input (and are not labels)."""

    code = "unexpected_arrays"


class DataDtypeError(InvalidDataError):
    """An array's dtype does not fit its model input and cannot be cast losslessly."""

    code = "data_dtype"


class DataShapeError(InvalidDataError):
    """An array's per-sample shape differs from its model input's."""

    code = "data_shape"


class SampleCountError(InvalidDataError):
    """The input arrays of one split disagree on the number of samples."""

    code = "sample_count_mismatch"


class NonFiniteDataError(InvalidDataError):
    """A floating-point input holds NaN or infinity."""

    code = "non_finite_data"


class InvalidLabelsError(InvalidDataError):
    """Labels are not a 1-D array of non-negative integers, one per sample."""

    code = "invalid_labels"


class MetricNotApplicableError(InvalidDataError):
    """The metric cannot be computed on this model's outputs or data (labels, classes)."""

    code = "metric_not_applicable"


class UnsupportedExportError(MPQError):
    """The model uses an operator, dtype or setting the ONNX exporter cannot write."""

    code = "unsupported_export"
