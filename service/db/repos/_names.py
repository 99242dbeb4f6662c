"""The rules names of rows follow, checked before anything is written."""

from __future__ import annotations

import re

from service.errors import InvalidNameError

__all__ = ["MAX_LABEL", "TEAM_NAME", "check_label", "check_team_name"]

TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A team's name: 1 to 64 letters, digits, ``_.-``, starting with a letter or digit."""
MAX_LABEL = 255
"""The longest label (a key's, a model's or a dataset's name)."""


def check_team_name(name: str) -> None:
    """Refuse a team name that does not fit :data:`TEAM_NAME` (:class:`InvalidNameError`)."""
    if not TEAM_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid team name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def check_label(name: str, *, what: str) -> None:
    """Refuse a ``what`` name that is empty, blank, too long or unprintable.

    Raises:
        InvalidNameError: the name has no character other than spaces, more than
            :data:`MAX_LABEL`, or a control (or other unprintable) character.
    """
    if not 0 < len(name) <= MAX_LABEL or not name.isprintable() or not name.strip():
        raise InvalidNameError(
            f"invalid {what} name {name[:MAX_LABEL]!r}: use 1 to {MAX_LABEL} printable "
            "characters, not all spaces"
        )
