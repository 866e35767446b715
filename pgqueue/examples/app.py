"""An example service: users register, and their welcome email is a job committed with them.

``POST /register`` inserts the user and enqueues ``send_welcome_email`` in one transaction: the job
exists if and only if the user does, and no worker can pick it up before the commit. With an
``avatar_url`` the email waits for a ``make_avatar_thumbnail`` job enqueued in the same
transaction (a workflow). ``POST /orders`` records an order and its ``charge_order`` job, which
marks the order paid and completes itself in one transaction (exactly once). The pgqueue
dashboard is mounted at ``/pgqueue``, behind a token when ``EXAMPLE_DASHBOARD_TOKEN`` is set.

Run it all in one process with ``python -m pgqueue demo``, or the parts separately::

    PGQUEUE_DSN=postgresql://... python -m pgqueue migrate
    PGQUEUE_DSN=postgresql://... uvicorn pgqueue.examples.app:app
    PGQUEUE_DSN=postgresql://... python -m pgqueue.worker pgqueue.examples.tasks:pgq
"""


import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Response, Security
from fastapi.responses import FileResponse
from fastapi.security import APIKeyCookie, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import DateTime, ForeignKey, String, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pgqueue.database import check_dsn
from pgqueue.fastapi import create_router, lifespan, session_dependency
from pgqueue.migrate import sqlalchemy_url

from .tasks import charge_order, make_avatar_thumbnail, pgq, send_welcome_email

DASHBOARD_PREFIX = "/pgqueue"
EMAIL_MAX = 320


class Settings(BaseSettings):
    """The example's own settings (pgqueue's are ``PGQUEUE_*``)."""

    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    dashboard_token: str | None = None
    """Required to open the dashboard and its API; unset leaves them open (for localhost only)."""


# -- the application's own data -------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_cents: Mapped[int]
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def _lowercase(email: str) -> str:
    """Emails are unique whatever their case, so they are kept lowercased. Lowering lengthens a
    few characters (``İ`` becomes two), so the length the column holds is checked again after."""
    lowered = email.lower()
    if len(lowered) > EMAIL_MAX:
        raise ValueError(f"the email must have at most {EMAIL_MAX} characters once lowercased")
    return lowered


class Registration(BaseModel):
    """A new user. Whatever the table cannot store is refused here with a 422, rather than failing
    in the database with a 500: NUL (U+0000), which JSON allows but PostgreSQL text cannot hold,
    and an email longer than its column once lowercased."""

    email: Annotated[str, AfterValidator(_lowercase)] = Field(
        max_length=EMAIL_MAX, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$",
        examples=["ada@example.com"],
    )
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$",
                      examples=["Ada Lovelace"])
    avatar_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\x00]+$",
                                   examples=["https://example.com/ada.png"])


class Registered(BaseModel):
    user_id: int
    job_id: int = Field(description="The welcome email's job; follow it on the dashboard.")
    thumbnail_job_id: int | None = Field(
        default=None, description="The avatar's thumbnail job, which the email waits for.")


class NewOrder(BaseModel):
    user_id: int = Field(ge=1, le=2**31 - 1)  # the column's range: more is a 422, not a 500
    amount_cents: int = Field(gt=0, le=10**9)


class Ordered(BaseModel):
    order_id: int
    job_id: int = Field(description="The payment's job.")


# -- the dashboard's guard ------------------------------------------------------------------------

_TOKEN_COOKIE = "pgqueue_dashboard_token"
TokenQuery = Annotated[str | None, Security(APIKeyQuery(name="token", auto_error=False))]
TokenCookie = Annotated[str | None, Security(APIKeyCookie(name=_TOKEN_COOKIE, auto_error=False))]
TokenBearer = Annotated[HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False))]


def dashboard_guard(token: str | None) -> Any:
    """A dependency accepting the token as ``?token=``, ``Authorization: Bearer`` or a cookie.

    Opening ``/pgqueue/?token=...`` once in a browser sets the cookie, so the dashboard's own
    requests (scripts, styles, live events) carry it from then on.
    """

    async def require_token(
        response: Response, query: TokenQuery, cookie: TokenCookie, bearer: TokenBearer
    ) -> None:
        if token is None:
            return
        given = query or (bearer.credentials if bearer else None) or cookie
        if given is None or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "a dashboard token is required: ?token=, a Bearer header or the cookie",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if query:
            response.set_cookie(_TOKEN_COOKIE, token, path=DASHBOARD_PREFIX, httponly=True,
                                samesite="strict")

    return Depends(require_token)


# -- the app --------------------------------------------------------------------------------------


def _engine_options() -> dict[str, Any]:
    """Behind a transaction pooler (``PGQUEUE_STATEMENT_CACHE_SIZE=0``) the app's own engine keeps
    no prepared statements either, and names the ones it makes uniquely (SQLAlchemy's documented
    PgBouncer setup)."""
    if pgq.settings.statement_cache_size:
        return {}
    return {"connect_args": {
        "statement_cache_size": 0, "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__app_{uuid.uuid4().hex}__",
    }}


def create_app(settings: Settings | None = None, *, worker: bool = False) -> FastAPI:
    """The example app; ``worker=True`` also runs a pgqueue worker in its process (the demo)."""
    settings = settings or Settings()
    engine = create_async_engine(sqlalchemy_url(check_dsn(pgq.settings.dsn)), **_engine_options())
    DbSession = Annotated[AsyncSession, session_dependency(async_sessionmaker(engine))]

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with lifespan(pgq, worker=worker)(app):  # pgqueue's pool (and worker) live here
            yield
        await engine.dispose()

    app = FastAPI(title="pgqueue example", lifespan=app_lifespan)

    @app.post("/register", status_code=201, response_model=Registered,
              responses={409: {"description": "This email is registered already."}})
    async def register(body: Registration, session: DbSession) -> Registered:
        """Create the user and enqueue their welcome email, in one transaction."""
        user = User(email=body.email, name=body.name)
        session.add(user)
        try:
            await session.flush()  # the INSERT: a duplicate email fails here, before any job
        except IntegrityError:
            raise HTTPException(409, f"{body.email} is already registered") from None
        if body.avatar_url is None:
            job = await send_welcome_email.using(session).enqueue(user.id, user.email)
            return Registered(user_id=user.id, job_id=job.id)
        # A workflow: the email runs once the thumbnail succeeded (and is cancelled if it fails).
        thumbnail = await make_avatar_thumbnail.using(session).enqueue(user.id, body.avatar_url)
        job = await send_welcome_email.using(session, after=[thumbnail]).enqueue(user.id, user.email)
        return Registered(user_id=user.id, job_id=job.id, thumbnail_job_id=thumbnail.id)
        # session_dependency commits the user and the jobs together before this response is sent

    @app.post("/orders", status_code=201, response_model=Ordered,
              responses={404: {"description": "No such user."}})
    async def order(body: NewOrder, session: DbSession) -> Ordered:
        """Record an order and the job that charges it, in one transaction."""
        if await session.get(User, body.user_id) is None:
            raise HTTPException(404, f"no user {body.user_id}")
        placed = Order(user_id=body.user_id, amount_cents=body.amount_cents)
        session.add(placed)
        await session.flush()
        job = await charge_order.using(session).enqueue(placed.id)
        return Ordered(order_id=placed.id, job_id=job.id)

    @app.get("/", include_in_schema=False)
    async def home() -> FileResponse:
        return FileResponse(Path(__file__).with_name("index.html"))

    app.include_router(
        create_router(pgq),
        prefix=DASHBOARD_PREFIX,
        dependencies=[dashboard_guard(settings.dashboard_token)],
    )
    return app


app = create_app()
