"""Reading ONNX external tensor data without letting the model name arbitrary files.

An ONNX tensor may keep its bytes in another file, named by a ``location`` entry the model's
author chose. Followed blindly that is a path-traversal hole (``../../etc/shadow``, an absolute
path, a symlink out of the upload directory; the CVE-2022-25882 class in ``onnx`` itself). The
policy here: ``location`` must be a relative path which, after :meth:`pathlib.Path.resolve`
(following every symlink), lies inside the directory of the model file as it was given (not of
its symlink target), and names a regular file; ``offset`` and ``length`` must lie inside that
file; and the bytes read from all external files together stay within a budget.

No answer depends on what exists outside that directory: the location is first normalised
lexically (``..`` collapsed, no filesystem access) and refused if it leaves the directory, so an
existing and a missing ``../../etc/shadow`` get the same error; only a location inside is looked
up, and a symlink out of it is refused with that same error whether or not its target exists.
``offset`` and ``length`` are ASCII decimal integers (``int()`` would accept other scripts'
digits, ``_`` and spaces).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from engine.errors import ArchiveLimitError, OnnxExternalDataError

__all__ = ["ExternalDataReader"]

_DECIMAL = re.compile(r"[0-9]{1,19}", re.ASCII)

_FIX = (
    "Keep external data files next to the .onnx file and name them by relative paths, or embed "
    "the weights: onnx.save_model(onnx.load(path), out_path, save_as_external_data=False)."
)


class ExternalDataReader:
    """Loads the external bytes of tensors of one model file, within a byte budget.

    Pass an instance as ``external_loader`` to
    :meth:`engine.io.importers.onnx._types.OnnxTensor.to_numpy`.
    """

    def __init__(self, model_path: Path, *, budget: int) -> None:
        """Allow files under ``model_path``'s directory; read at most ``budget`` bytes in all."""
        self.directory = Path(model_path).absolute().parent.resolve()
        self.budget = budget
        self.bytes_read = 0

    def __call__(self, entries: dict[str, str]) -> bytes:
        """The bytes ``entries`` (``location``, ``offset``, ``length``) point at.

        Raises:
            OnnxExternalDataError: the location is missing, absolute, escapes the model's
                directory, is not a regular file, or offset/length lie outside it.
            ArchiveLimitError: reading it would take the total over the budget.
        """
        location = entries.get("location", "")
        target = self._resolve(location)
        size = target.stat().st_size
        offset = _int_entry(entries, "offset", location, default=0)
        length = _int_entry(entries, "length", location, default=size - offset)
        if offset > size or offset + length > size:
            raise OnnxExternalDataError(
                f"external data {location!r} is {size} bytes, but the model asks for {length} "
                f"bytes at offset {offset}; the file does not match the model. {_FIX}"
            )
        if self.bytes_read + length > self.budget:
            raise ArchiveLimitError(
                f"reading {length} bytes of external data from {location!r} would take the "
                f"model over its limit of {self.budget} bytes of external data "
                f"({self.bytes_read} read so far); upload a smaller model or raise the limit."
            )
        with open(target, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:  # the file shrank after the size check
            raise OnnxExternalDataError(f"external data {location!r} changed while being read")
        self.bytes_read += length
        return data

    def _resolve(self, location: str) -> Path:
        """``location`` as a regular file inside :attr:`directory`, or an error."""
        where = f"external data location {location!r}"
        if not location or "\0" in location:
            raise OnnxExternalDataError(f"{where} is empty or not a path. {_FIX}")
        if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute():
            raise OnnxExternalDataError(
                f"{where} is an absolute path; MPQ reads external data only from files beside "
                f"the model, named relative to it. {_FIX}"
            )
        if PureWindowsPath(location).drive:
            raise OnnxExternalDataError(f"{where} names a drive. {_FIX}")
        outside = OnnxExternalDataError(
            f"{where} leads outside the model's directory (through '..' or a symbolic link); "
            f"MPQ reads external data only from inside it. {_FIX}"
        )
        lexical = Path(os.path.normpath(self.directory / location))
        if not lexical.is_relative_to(self.directory) or lexical == self.directory:
            raise outside  # decided on the text alone: nothing outside is looked up
        try:
            target = lexical.resolve(strict=False)
        except (OSError, RuntimeError):  # a symlink loop: not a file (exists() says so)
            target = lexical
        if not target.is_relative_to(self.directory) or target == self.directory:
            raise outside
        if not target.exists():
            raise OnnxExternalDataError(
                f"{where} names a file that is missing beside the model. {_FIX}"
            )
        if not target.is_file():
            raise OnnxExternalDataError(f"{where} is not a regular file. {_FIX}")
        return target


def _int_entry(entries: dict[str, str], key: str, location: str, *, default: int) -> int:
    """A non-negative integer entry (``offset``, ``length``), ``default`` when absent."""
    raw = entries.get(key)
    if raw is None:
        return default
    value = int(raw) if _DECIMAL.fullmatch(raw) else -1
    if value < 0:
        raise OnnxExternalDataError(
            f"external data {location!r} has {key} {raw[:40]!r}; it must be a non-negative "
            f"integer. {_FIX}"
        )
    return value
