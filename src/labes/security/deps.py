"""Request dependencies: the unit of work, who is calling, and what they may do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from labes.errors import NotAuthenticated, NotPermitted
from labes.security.audit import Actor
from labes.security.permissions import PERMISSIONS
from labes.security.service import actor_for_token


# Finishing a transaction never waits for a request thread: a transaction that holds row locks and
# waited for one could stall every request thread that waits for those locks.
_FINISH = anyio.CapacityLimiter(1000)


def _end(session: Session, *, commit: bool) -> None:
    """Commit (or roll back) and close: one trip to a thread, not two."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: commit if the handler succeeds, roll back if it raises."""
    session = request.app.state.sessionmaker()
    session.info["request_id"] = getattr(request.state, "request_id", None)
    try:
        yield session
    except BaseException:
        await anyio.to_thread.run_sync(partial(_end, session, commit=False), limiter=_FINISH)
        raise
    await anyio.to_thread.run_sync(partial(_end, session, commit=True), limiter=_FINISH)


# scope="function": the commit happens before the response is sent, so a failed commit is never a 200.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
_bearer = HTTPBearer(auto_error=False)


def get_actor(session: DbSession, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Actor:
    """Return the authenticated caller or raise NotAuthenticated."""
    if credentials is None:
        raise NotAuthenticated("Log in first: send 'Authorization: Bearer <token>'.")
    return actor_for_token(session, token=credentials.credentials)


CurrentActor = Annotated[Actor, Depends(get_actor)]


class RequirePermission:
    """Dependency that lets the call through only if the caller holds `permission`."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"Unknown permission {permission!r}")
        self.permission = permission

    def __call__(self, actor: CurrentActor) -> Actor:
        if self.permission not in actor.permissions:
            raise NotPermitted(
                f"Your account ({', '.join(actor.roles) or actor.kind}) may not do this: it needs the "
                f"'{self.permission}' permission ({PERMISSIONS[self.permission].lower()})."
            )
        return actor


def permitted(permission: str):
    """Annotated alias for an actor holding `permission`: `actor: permitted("registry:write")`."""
    return Annotated[Actor, Depends(RequirePermission(permission))]

