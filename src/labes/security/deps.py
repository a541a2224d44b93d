"""Request dependencies: the unit of work, who is calling, and what they may do."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from functools import partial, wraps
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from labes.errors import NotAuthenticated, NotPermitted
from labes.security.audit import Actor
from labes.security.permissions import PERMISSIONS
from labes.security.service import actor_for_token


# Finishing a transaction never waits for a request thread: a transaction that holds row locks and
# waited for one could stall every request thread that waits for those locks.
_FINISH = anyio.CapacityLimiter(1000)
# The request's unit of work, seen by its handler's thread (AnyIO copies the context into it).
_UNIT_OF_WORK: ContextVar[Session | None] = ContextVar("labes_unit_of_work", default=None)
# Whether this request's handler runs on the event loop itself (LABES_WORKER_THREADS=0), not in a thread.
_ON_THE_LOOP: ContextVar[bool] = ContextVar("labes_on_the_loop", default=False)
T = TypeVar("T")


def on_the_loop(request: Request) -> bool:
    """Whether the server runs its handlers on the event loop (`LABES_WORKER_THREADS=0`): one request at a time
    per process, each to its end, as a synchronous worker does; run one process more than the cores."""
    return request.app.state.settings.worker_threads == 0


async def run_unit_of_work(request: Request, work: Callable[[], T]) -> T:
    """Run `work`, which begins and ends its own transaction, where the server runs handlers: on the event loop
    or in one trip to a request thread.

    On the loop, the request runs to its commit before the process reads another: no transaction ever waits
    for the loop or a thread while it holds locks, and the trip to a thread (≈ 15 % of a rights check's CPU
    in one process) is saved. A process then waits with its database round trips, so it suits PostgreSQL
    served by one process more than the cores; SQLite, whose writers queue for its one lock, keeps threads.
    """
    if not on_the_loop(request):
        return await anyio.to_thread.run_sync(work)
    running = _ON_THE_LOOP.set(True)
    try:
        return work()
    finally:
        _ON_THE_LOOP.reset(running)


def unit_of_work_on_the_loop() -> bool:
    """Whether the code running now is a request's unit of work that the server put on the event loop on purpose."""
    return _ON_THE_LOOP.get()


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
    _UNIT_OF_WORK.set(session)
    _ON_THE_LOOP.set(on_the_loop(request))
    try:
        yield session
    except BaseException:
        await anyio.to_thread.run_sync(partial(_end, session, commit=False), limiter=_FINISH)
        raise
    if session.in_transaction():  # work done after the handler's commit (or by an async handler)
        await anyio.to_thread.run_sync(partial(_end, session, commit=True), limiter=_FINISH)
    else:
        session.close()  # committed in the handler's thread: the connection is back in the pool, no I/O left


def _in_one_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a synchronous handler into one trip to a request thread that also commits its transaction.

    Between a handler's return and the dependency's exit FastAPI would need a request thread again (it
    validates a synchronous handler's response in one). A transaction still open then holds its row
    locks while it queues for a thread, and when every thread is itself waiting for those locks (a new
    card's first use, taken by concurrent transactions) the process stalls for good. Committing before
    the thread is given back leaves no lock waiting on a thread; as a coroutine, the handler's answer is
    validated on the event loop, so a request makes one trip to a thread, not three (none when the server runs
    handlers on the loop: `run_unit_of_work`).
    """
    def work(kwargs: dict[str, Any]) -> Any:
        result = endpoint(**kwargs)
        session = _UNIT_OF_WORK.get()
        if session is not None and session.in_transaction():
            session.commit()
        return result

    @wraps(endpoint)
    async def run(**kwargs: Any) -> Any:
        if _ON_THE_LOOP.get():
            return work(kwargs)
        return await anyio.to_thread.run_sync(partial(work, kwargs))

    return run


class UnitOfWorkRoute(APIRoute):
    """The route class of every router: a synchronous handler runs, and commits, in one trip to a thread."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _in_one_thread(endpoint)
        super().__init__(path, endpoint, **kwargs)


# scope="function": the commit happens before the response is sent, so a failed commit is never a 200.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
_bearer = HTTPBearer(auto_error=False)


def get_actor(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Actor:
    """Return the authenticated caller or raise NotAuthenticated.

    The caller is looked up in a transaction of its own, ended before this dependency gives its thread back:
    the request's own transaction then begins and ends in its handler's thread. (On SQLite a transaction takes
    the write lock when it begins; begun here and carried on in the handler, it would hold the lock while it
    waited for a thread, and the threads could all be waiting for the lock.)
    """
    if credentials is None:
        raise NotAuthenticated("Log in first: send 'Authorization: Bearer <token>'.")
    with request.app.state.sessionmaker() as lookup:
        return actor_for_token(lookup, token=credentials.credentials)


CurrentActor = Annotated[Actor, Depends(get_actor)]


class RequirePermission:
    """Dependency that lets the call through only if the caller holds `permission`."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"Unknown permission {permission!r}")
        self.permission = permission

    async def __call__(self, actor: CurrentActor) -> Actor:  # no I/O: no trip to a thread
        if self.permission not in actor.permissions:
            raise NotPermitted(
                f"Your account ({', '.join(actor.roles) or actor.kind}) may not do this: it needs the "
                f"'{self.permission}' permission ({PERMISSIONS[self.permission].lower()})."
            )
        return actor


def permitted(permission: str):
    """Annotated alias for an actor holding `permission`: `actor: permitted("registry:write")`."""
    return Annotated[Actor, Depends(RequirePermission(permission))]

