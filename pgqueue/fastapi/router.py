"""``create_router(pgq)``: the JSON API, the live event streams, metrics and the dashboard.

The router brings no authentication of its own. Protect it the FastAPI way, with dependencies on
``include_router``; every route honours them, the event streams, the dashboard's pages and its
static files included (they are plain routes, not a mounted app, for exactly that reason)::

    app.include_router(create_router(pgq), prefix="/pgqueue", dependencies=[Depends(require_admin)])
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ..database import CONNECTION_ERRORS
from ..errors import DatabaseUnavailable, NotOpenError
from ..queue import PgQueue
from .api import add_api_routes
from .metrics import add_metrics_route
from .pages import add_pages
from .queues import add_queue_routes


class _Route(APIRoute):
    """Answers 503, with the reason, when the queue cannot be reached (pool not opened, database
    away) instead of a bare 500: both are states of the deployment, not bugs of the request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_unavailable(request: Request) -> Response:
            try:
                return await handle(request)
            except NotOpenError as exc:
                return _unavailable(f"{exc} (see pgqueue.fastapi.lifespan)")
            except (DatabaseUnavailable, *CONNECTION_ERRORS) as exc:
                return _unavailable(f"the job database is unavailable: {exc}")

        return handle_unavailable


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})


def create_router(pgq: PgQueue, *, tags: list[str] | None = None) -> APIRouter:
    """The routes for ``pgq``, to mount with ``app.include_router(..., prefix=...)``.

    The pool must be open while the app serves (see ``pgqueue.fastapi.lifespan``). ``tags`` group
    the routes in ``/docs`` (default ``["pgqueue"]``).
    """
    router = APIRouter(route_class=_Route, tags=tags or ["pgqueue"])
    add_api_routes(router, pgq)
    add_queue_routes(router, pgq)
    add_metrics_route(router, pgq)
    add_pages(router, pgq)
    return router
