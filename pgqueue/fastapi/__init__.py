"""FastAPI integration: the router (JSON API, live events, dashboard), a lifespan, a session.

::

    from pgqueue.fastapi import create_router, lifespan

    app = FastAPI(lifespan=lifespan(pgq))
    app.include_router(create_router(pgq), prefix="/pgqueue", dependencies=[Depends(require_admin)])

Needs the ``fastapi`` extra: ``pip install 'pgqueue[fastapi]'``.
"""

from .lifespan import lifespan
from .router import create_router
from .session import session_dependency

__all__ = ["create_router", "lifespan", "session_dependency"]
