"""Looking up users: for display, and to act as one (what other services ask)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.models import User
from cumulo.errors import Invalid
from cumulo.principal import Principal

__all__ = ["acting_as", "user_names"]


def user_names(session: Session, ids: Iterable[int | None]) -> dict[int | None, str]:
    """Names for a set of user ids, for showing who created what."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.name).where(User.id.in_(wanted)))
    return {uid: name for uid, name in rows}


def acting_as(session: Session, user_id: int | None, *, what: str) -> Principal:
    """The user who made ``what`` (a schedule, a run), to act as them when it fires later;
    Invalid if they were deleted."""
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        raise Invalid(f"the user who made {what} was deleted")
    return Principal(user.id, user.name, user.is_admin, 0)
