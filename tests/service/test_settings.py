"""Settings: every ``MPQ_*`` variable is a field; paths derive from the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.errors import InvalidSettingsError
from service.settings import Settings, get_settings


def test_settings_derive_every_path_from_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    assert s.database_url == f"sqlite:///{tmp_path}/d/mpq.db"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path}/d/broker.db"
    assert s.blobs == tmp_path / "d" / "blobs"
    given = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://h/db")
    assert given.database_url == "postgresql+psycopg://h/db"


def test_settings_read_mpq_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MPQ_BLOB_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("MPQ_MAX_PARALLELISM", "7")
    monkeypatch.setenv("MPQ_API_PORT", "9001")
    s = Settings()
    assert (s.blobs, s.max_parallelism, s.api_port) == (tmp_path / "b", 7, 9001)


def test_trust_debug_and_cache_dir_are_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("MPQ_TRUST_UPLOADS", "MPQ_DEBUG", "MPQ_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings()
    assert (s.trust_uploads, s.debug, s.cache_dir) == (False, False, tmp_path / ".cache" / "mpq")
    monkeypatch.setenv("MPQ_TRUST_UPLOADS", "1")
    monkeypatch.setenv("MPQ_DEBUG", "1")
    monkeypatch.setenv("MPQ_CACHE_DIR", "~/sens")
    s = Settings()
    assert (s.trust_uploads, s.debug, s.cache_dir) == (True, True, tmp_path / "sens")
    for off in ("", "0"):  # set but empty, as before, means off
        monkeypatch.setenv("MPQ_TRUST_UPLOADS", off)
        assert Settings().trust_uploads is False


def test_a_flag_that_is_not_a_boolean_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPQ_DEBUG", "maybe")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettingsError, match="MPQ_DEBUG"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_max_dataset_bytes_defaults_to_512_mib_and_reads_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().max_dataset_bytes == 512 << 20
    monkeypatch.setenv("MPQ_MAX_DATASET_BYTES", "1048576")
    assert Settings().max_dataset_bytes == 1 << 20
    monkeypatch.setenv("MPQ_MAX_DATASET_BYTES", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_webhook_networks_are_parsed_normalized_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().webhook_networks == ()  # public addresses only, by default
    monkeypatch.setenv("MPQ_WEBHOOK_ALLOWED_NETWORKS", " 10.20.1.2/16, 192.168.1.7 ,::1")
    settings = Settings()
    assert settings.webhook_allowed_networks == "10.20.0.0/16,192.168.1.7/32,::1/128"
    assert [str(n) for n in settings.webhook_networks] == settings.webhook_allowed_networks.split(
        ","
    )
    monkeypatch.setenv("MPQ_WEBHOOK_ALLOWED_NETWORKS", "10.0.0/8")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettingsError) as info:
            get_settings()
        assert info.value.message == (
            "invalid settings: MPQ_WEBHOOK_ALLOWED_NETWORKS: '10.0.0/8' is not an IP network; "
            "give networks separated by commas, as in 10.20.0.0/16,192.168.1.7"
        )
    finally:
        get_settings.cache_clear()
