"""Requests wait for request threads without holding the database: many at once in one process with two threads."""

from __future__ import annotations

import asyncio

import anyio
import httpx2

from tests import factories


def test_concurrent_agent_requests_do_not_hold_the_database_while_they_wait_for_a_thread(committed, app_for):
    """On SQLite a transaction takes the write lock when it begins. Were a request's transaction begun while
    its caller is looked up (in one thread) and carried on in its handler (another), the request would hold the
    lock while it waits for a thread, and the threads would all be waiting for the lock."""
    with committed() as session:
        token = factories.agent_token(session, "registry_clerk")
        session.commit()
    app = app_for(committed)

    async def ask_all() -> list[int]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://labes.test",
                                      headers={"Authorization": f"Bearer {token}"}) as client:
            with anyio.fail_after(60):
                answers = await asyncio.gather(*(client.get("/api/v1/auth/me") for _ in range(8)))
        return [answer.status_code for answer in answers]

    assert asyncio.run(ask_all()) == [200] * 8
