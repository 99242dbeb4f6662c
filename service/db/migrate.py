"""Schema migrations through Alembic's command API (the only way the schema changes).

The migration scripts live in ``alembic/`` at the repository root, next to
``alembic.ini``; ``alembic`` on the command line and these functions run the same
scripts. The URL comes from the caller, else from :class:`service.settings.Settings`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from service.errors import DatabaseSchemaError

__all__ = ["ALEMBIC_INI", "alembic_config", "check_schema", "downgrade", "upgrade"]

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for MPQ's scripts, targeting ``url``.

    Args:
        url: the database to migrate; ``None`` for the settings' ``database_url``. It is
            passed as a config attribute (not an ini option), so ``%`` in passwords is safe.

    Raises:
        DatabaseSchemaError: the migration scripts are not installed next to the package.
    """
    if not ALEMBIC_INI.is_file():
        raise DatabaseSchemaError(
            f"no migration scripts: {str(ALEMBIC_INI)!r} is missing; run MPQ from a "
            "checkout of its repository (pip install -e .)"
        )
    config = Config(str(ALEMBIC_INI))
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at ``url`` (default: the settings') up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(revision: str, url: str | None = None) -> None:
    """Migrate the database at ``url`` (default: the settings') down to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def check_schema(engine: Engine) -> None:
    """Make sure the database behind ``engine`` is migrated to the scripts' head.

    Raises:
        DatabaseSchemaError: the database is empty, behind, or ahead of this code.
    """
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current != heads:
        have = ", ".join(sorted(current)) or "none (empty database)"
        raise DatabaseSchemaError(
            f"the database at {engine.url.render_as_string(hide_password=True)!r} is at "
            f"revision {have}, not {', '.join(sorted(heads))}; run `mpq db upgrade`"
        )
