"""The bearer-token check that guards every route under /api/v1."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from cumulo.access.tokens import authenticate
from cumulo.db import get_session
from cumulo.errors import Unauthorized

__all__ = ["require_token"]

_bearer = HTTPBearer(auto_error=False, description="a Cumulo API token")


def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    session: Session = Depends(get_session),
) -> None:
    if credentials is None:
        raise Unauthorized(
            "this route needs a token: send 'Authorization: Bearer <token>' "
            "(the CLI and SDK read CUMULO_TOKEN)"
        )
    request.state.principal = authenticate(session, credentials.credentials)
