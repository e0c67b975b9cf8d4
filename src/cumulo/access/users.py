"""Looking up users for display."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.models import User

__all__ = ["user_names"]


def user_names(session: Session, ids: Iterable[int | None]) -> dict[int | None, str]:
    """Names for a set of user ids, for showing who created what."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.name).where(User.id.in_(wanted)))
    return {uid: name for uid, name in rows}
