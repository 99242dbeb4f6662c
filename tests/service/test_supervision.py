"""The restart counts ``mpq up`` passes to ``/metrics``: an atomic private file, read leniently."""

from __future__ import annotations

from pathlib import Path

from service.supervision import RESTARTS_FILE, read_restarts, restarts_family, write_restarts


def test_counts_round_trip_through_a_private_file_with_no_temporary_left(tmp_path: Path) -> None:
    data = tmp_path / "data"  # made on the first write
    write_restarts(data, {"api": 0, "worker": 2})
    write_restarts(data, {"api": 1, "worker": 3})
    assert read_restarts(data) == {"api": 1, "worker": 3}
    assert (data / RESTARTS_FILE).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in data.iterdir()] == [RESTARTS_FILE]
    family = restarts_family(data)
    assert family.name == "mpq_process_restarts" and family.type == "counter"
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        ("mpq_process_restarts_total", {"process": "api"}, 1),
        ("mpq_process_restarts_total", {"process": "worker"}, 3),
    ]


def test_a_missing_or_damaged_file_reads_as_no_counts(tmp_path: Path) -> None:
    assert read_restarts(tmp_path) == {}
    assert restarts_family(None).samples == []
    for text in ("{not json", "[1, 2]", '{"api": "one", "worker": true}'):
        (tmp_path / RESTARTS_FILE).write_text(text)
        assert read_restarts(tmp_path) == {}
