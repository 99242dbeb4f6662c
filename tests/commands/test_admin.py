"""``mpq db`` and ``mpq admin`` as users run them, against the settings' database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.db import find_team_by_key, get_team_by_name, make_engine, session_factory

MPQ = [sys.executable, "-m", "commands"]


def _mpq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPQ, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose MPQ data directory is a fresh temporary one."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    return out | {"MPQ_DATA_DIR": str(tmp_path / "data")}


def test_admin_commands_create_a_team_and_a_key_that_authenticates(
    env: dict[str, str], tmp_path: Path
) -> None:
    before = _mpq(env, "admin", "create-team", "acme")
    assert before.returncode == 2
    assert before.stderr.startswith("error[database_schema]: ")
    assert "mpq db upgrade" in before.stderr

    up = _mpq(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert (tmp_path / "data" / "mpq.db").is_file()

    team = _mpq(env, "admin", "create-team", "acme")
    assert team.returncode == 0, team.stderr
    assert "created team 'acme'" in team.stdout
    key = _mpq(env, "admin", "create-key", "--team", "acme", "--name", "laptop")
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip()
    assert secret.startswith("mpq_") and "\n" not in secret
    assert "cannot be shown again" in key.stderr and secret not in key.stderr

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'mpq.db'}")
    try:
        with session_factory(engine)() as session:
            found = find_team_by_key(session, secret)
            assert found is not None and found.id == get_team_by_name(session, "acme").id
    finally:
        engine.dispose()


def test_admin_errors_print_a_code_and_exit_2(env: dict[str, str]) -> None:
    assert _mpq(env, "db", "upgrade").returncode == 0
    assert _mpq(env, "admin", "create-team", "acme").returncode == 0
    duplicate = _mpq(env, "admin", "create-team", "acme")
    assert (duplicate.returncode, duplicate.stdout) == (2, "")
    assert duplicate.stderr.startswith("error[conflict]: a team named 'acme' exists already")
    unknown = _mpq(env, "admin", "create-key", "--team", "nobody")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr.startswith("error[not_found]: no team named 'nobody'")
    bad = _mpq(env, "admin", "create-team", "two words")
    assert bad.returncode == 2 and bad.stderr.startswith("error[invalid_name]: ")


def test_db_downgrade_to_base_empties_the_database(env: dict[str, str], tmp_path: Path) -> None:
    assert _mpq(env, "db", "upgrade").returncode == 0
    down = _mpq(env, "db", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    after = _mpq(env, "admin", "create-team", "acme")
    assert after.returncode == 2 and after.stderr.startswith("error[database_schema]: ")


@pytest.mark.parametrize(
    ("env", "named"),
    [({"MPQ_API_PORT": "abc"}, "MPQ_API_PORT"), ({"MPQ_GRACE_S": "1"}, "MPQ_GRACE_S")],
)
def test_bad_settings_exit_2_naming_the_variable(
    env: dict[str, str], named: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    proc = subprocess.run(
        [sys.executable, "-m", "commands", "db", "upgrade"],
        env=clean | {"MPQ_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error[invalid_settings]: ") and named in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "mpq.db").exists()
