"""docker-compose.yml: valid for Compose, and consistent with the ``mpq`` CLI and settings.

No Docker engine runs here, so the file is validated with Debian's ``docker-compose``
(v1, installed by ``make system``), whose ``config`` checks it against the Compose
Specification schema without an engine. The rest reads the YAML itself: the services
run real ``mpq`` commands, workers can be scaled, and every ``MPQ_*`` variable is a
field of :class:`service.settings.Settings`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from commands.main import _parser
from service.api.routes.health import router as health_router
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"postgres", "redis", "migrate", "api", "worker", "beat"}
MPQ_SERVICES = ("migrate", "api", "worker", "beat")
SHARED_VOLUME = "blobs"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def test_docker_compose_config_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        message = "docker-compose is not installed (`make system` installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_production_services_are_defined(compose: dict[str, Any]) -> None:
    assert set(_services(compose)) == SERVICES


@pytest.mark.parametrize("service", MPQ_SERVICES)
def test_each_mpq_service_runs_a_real_mpq_command(compose: dict[str, Any], service: str) -> None:
    command = _services(compose)[service]["command"]
    assert isinstance(command, list), "write commands as lists: no shell splitting"
    parser = _parser()
    try:
        args = parser.parse_args([str(x) for x in command])
    except SystemExit:
        pytest.fail(f"`mpq {' '.join(map(str, command))}` ({service}) is not a valid mpq command")
    assert callable(args.func)
    assert command[0] == ("db" if service == "migrate" else service)


def test_migrate_upgrades_the_schema_once_before_the_others(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert services["migrate"]["command"][:2] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_servers_have_healthchecks(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    probe = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in probe
    assert "/readyz" in {getattr(route, "path", None) for route in health_router.routes}


def test_api_publishes_the_port_it_listens_on(compose: dict[str, Any]) -> None:
    api = _services(compose)["api"]
    command = api["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert f"{port}:{port}" in api["ports"]


def test_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = _services(compose)["worker"]
    # a fixed name, published port or hostname would clash between replicas
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, key


def test_api_and_workers_share_the_data_volume(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert SHARED_VOLUME in compose["volumes"]
    for name in ("api", "worker", "beat"):
        service = services[name]
        data_dir = service["environment"]["MPQ_DATA_DIR"]
        assert f"{SHARED_VOLUME}:{data_dir}" in service["volumes"], name
        assert Path(service["environment"]["MPQ_BLOB_DIR"]).is_relative_to(data_dir), name


def test_every_service_gets_the_production_urls(compose: dict[str, Any]) -> None:
    for name in MPQ_SERVICES:
        env = _services(compose)[name]["environment"]
        assert env["MPQ_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert env["MPQ_DATABASE_URL"].split("@")[1].startswith("postgres:5432/"), name
        assert env["MPQ_BROKER_URL"].startswith("redis://redis:6379/"), name


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def test_every_mpq_variable_is_a_setting(compose: dict[str, Any]) -> None:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    known = {prefix + name.upper() for name in Settings.model_fields}
    used = {m for s in _strings(compose) for m in re.findall(r"\bMPQ_[A-Z0-9_]+\b", s)}
    assert used, "no MPQ_* variables found: the test reads the wrong file"
    assert used <= known, f"not fields of Settings: {sorted(used - known)}"
