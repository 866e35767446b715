"""The example's background work: a welcome email that takes a few seconds and says how far it is,
an avatar thumbnail that the email waits for, and a payment completed in its own transaction.

Workers import this module (``python -m pgqueue.worker pgqueue.examples.tasks:pgq``); the API
imports it to enqueue. The database comes from ``PGQUEUE_DSN``.
"""

from __future__ import annotations

import asyncio

from pgqueue import JobContext, PgQueue

pgq = PgQueue()

_STEPS = [
    "looking up the template",
    "rendering the email",
    "inlining styles",
    "connecting to the mail server",
    "sending",
    "recording the delivery",
]
STEP_SECONDS = 1.0


class MailServerRefused(Exception):
    """The (pretend) mail server would not take the message."""


@pgq.task(queue="emails", max_attempts=3, timeout=120)
async def send_welcome_email(user_id: int, email: str, ctx: JobContext) -> dict[str, object]:
    """Pretend to send the welcome email, slowly enough to watch on the dashboard.

    Addresses at ``example.invalid`` are refused, so the demo also shows retries and a failure.
    """
    await ctx.log(f"welcome email for user {user_id} <{email}>, attempt {ctx.attempt}")
    for done, step in enumerate(_STEPS):
        await ctx.progress(100 * done / len(_STEPS), step)
        if step == "connecting to the mail server" and email.endswith("@example.invalid"):
            raise MailServerRefused(f"550 no such domain: {email.partition('@')[2]}")
        await asyncio.sleep(STEP_SECONDS)
    await ctx.progress(100, "sent")
    await ctx.log(f"sent to {email}")
    # Enqueued after the avatar's thumbnail (when the user gave an avatar): it is ready by now.
    thumbnails = [job.result["thumbnail"] for job in await ctx.dependencies()]
    return {"sent_to": email, **({"avatar": thumbnails[0]} if thumbnails else {})}


@pgq.task(queue="images", max_attempts=3, timeout=60)
async def make_avatar_thumbnail(user_id: int, avatar_url: str, ctx: JobContext) -> dict[str, str]:
    """Pretend to fetch the user's avatar and shrink it; the welcome email waits for this job."""
    await ctx.log(f"thumbnail of {avatar_url} for user {user_id}")
    await ctx.progress(50, "resizing")
    await asyncio.sleep(STEP_SECONDS)
    return {"thumbnail": f"avatars/{user_id}-128.png"}


@pgq.task(queue="payments", max_attempts=5)
async def charge_order(order_id: int, ctx: JobContext) -> dict[str, object]:
    """Mark the order paid and complete this job in one transaction: if the worker dies before the
    commit, neither happened and the job runs again; after it, both did and the job never runs
    again. So the order is charged exactly once, however the worker is killed."""
    async with pgq.acquire() as conn, conn.transaction():
        charged = await conn.fetchval(
            "UPDATE orders SET paid_at = now() WHERE id = $1 AND paid_at IS NULL RETURNING id",
            order_id,
        )
        result = {"order_id": order_id, "charged": charged is not None}
        await ctx.complete_in(conn, result=result)  # succeeded in THIS transaction
    await ctx.log(f"order {order_id} paid")
    return result
