"""workers.public: a job's result and messages name the user's model and data, no path."""

from __future__ import annotations

import json
from pathlib import Path

from workers.public import STORED_FILE, Labels, rewrite_result_file, without_paths

LABELS = Labels(
    {
        "/srv/mpq/blobs/ir/abc.ir": "model 3 ('digits' v1)",
        "/srv/mpq/blobs/datasets/def.npz": "dataset 2 ('digits')",
        "/srv/mpq/cache": "the sensitivity cache",
    },
    ["/srv/mpq", "/tmp"],
)


def test_known_paths_get_the_users_names_and_others_are_hidden() -> None:
    text = (
        "cannot read '/srv/mpq/blobs/datasets/def.npz': bad array in /tmp/x/y.npy, "
        "see /srv/mpq/blobs/tmp/zz"
    )
    assert LABELS.text(text) == (
        f"cannot read 'dataset 2 ('digits')': bad array in {STORED_FILE}, see {STORED_FILE}"
    )
    assert LABELS.text("int4/nearest/a8 and 12 bytes") == "int4/nearest/a8 and 12 bytes"


def test_every_string_of_a_document_is_rewritten(tmp_path: Path) -> None:
    doc = {
        "config": {
            "model": "/srv/mpq/blobs/ir/abc.ir",
            "data": "/srv/mpq/blobs/datasets/def.npz",
            "cache_dir": "/srv/mpq/cache",
            "trials": 4,
        },
        "notes": ["wrote /tmp/out/model.onnx", None, 1.5],
    }
    out = without_paths(doc, LABELS)
    assert out["config"] == {
        "model": "model 3 ('digits' v1)",
        "data": "dataset 2 ('digits')",
        "cache_dir": "the sensitivity cache",
        "trials": 4,
    }
    assert out["notes"] == [f"wrote {STORED_FILE}", None, 1.5]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc))
    rewrite_result_file(path, LABELS)
    assert json.loads(path.read_text()) == out
    rewrite_result_file(tmp_path / "missing.json", LABELS)  # nothing to rewrite
