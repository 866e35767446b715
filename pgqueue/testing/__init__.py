"""Helpers for the test suites of applications that use pgqueue; also a pytest plugin.

    from pgqueue.testing import assert_enqueued, drain, inline

    async def test_signup_enqueues_the_welcome_email(client, pgq):
        await client.post("/register", json={"email": "a@example.com"})
        await assert_enqueued(pgq, send_welcome_email, kwargs={"user_id": 1})
        jobs = await drain(pgq)            # run everything that is queued, here and now

    async def test_signup_sends_the_welcome_email(client, pgq):
        with inline(pgq):                  # every enqueue runs its job right away: no worker
            await client.post("/register", json={"email": "a@example.com"})

Installed with pgqueue, the plugin (entry point ``pytest11``) only adds fixtures, which do
nothing unless a test asks for them: ``pgqueue_inline`` (see ``plugin.py``).
"""

from .assertions import assert_enqueued, refute_enqueued
from .drain import drain
from .inline import Inline, inline

try:
    import pytest  # noqa: F401  (the fixtures need it; the helpers above do not)
except ImportError:
    pass
else:
    from .plugin import pgqueue_inline

__all__ = ["Inline", "assert_enqueued", "drain", "inline", "pgqueue_inline", "refute_enqueued"]
