"""The example's background work: a welcome email that takes a few seconds and says how far it is.

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
    return {"sent_to": email}
