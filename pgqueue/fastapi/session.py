"""A request-scoped SQLAlchemy session whose transaction commits before the response is sent.

That ordering is what makes ``task.using(session).enqueue(...)`` in an endpoint safe: the job row
commits with the application's own rows, and the client never hears "done" for a transaction that
could still fail or is not yet visible. FastAPI's plain ``yield`` dependencies finish after the
response; this one asks for ``scope="function"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession


def session_dependency(session_factory: Callable[[], AsyncSession]) -> Any:
    """A ``Depends`` giving each request one ``AsyncSession`` inside one transaction.

    The transaction commits when the endpoint returns and rolls back when it raises (an
    ``HTTPException`` too), before the response goes out::

        Session = Annotated[AsyncSession, session_dependency(async_sessionmaker(engine))]

        @app.post("/register")
        async def register(body: NewUser, session: Session):
            session.add(user := User(**body.model_dump()))
            await session.flush()
            await send_welcome_email.using(session).enqueue(user.id)

    Your own session dependency works just as well with ``task.using(session)``; what matters is
    that the job is enqueued before that session's commit.
    """

    async def session() -> AsyncIterator[AsyncSession]:
        async with session_factory() as session, session.begin():
            yield session

    return Depends(session, scope="function")
