"""Where does pgqueue's time go? Enqueue and drain hot paths, next to raw asyncpg.

    python -m benchmarks.profile_hotpaths                       # all parts, N=2000
    python -m benchmarks.profile_hotpaths --parts enqueue_one --n 3000 --top 25
    python -m benchmarks.profile_hotpaths --parts drain --drain pgqueue:c32,raw:batch100

Each part runs in a fresh database ``<prefix>prof`` (dropped afterwards), in this process.

* enqueue_one / enqueue_many: µs per job of
    - the public API (``noop.using(conn).enqueue(i)`` / ``.enqueue_many(ids)``),
    - pgqueue's own INSERT statement sent directly with ready-made parameters (= SQL + round trip),
    - (enqueue_one) that statement with one more part taken away per step: the ready ring's row,
      the wake-up, RETURNING, the partial indexes (``pgqueue_internals.LADDER``),
    - raw asyncpg's INSERT (contestants/raw.py) and ``SELECT 1`` (a bare round trip);
  API minus statement = pgqueue's Python overhead per job. Then the top functions of a cProfile
  of the API loop.
* drain: one worker in this process per ``contestant:variant``: jobs/s, this process's CPU per
  job, the CPU of all ``postgres`` processes per job (machine-wide: other load shows up), server
  transactions per job (pg_stat_database), and the top functions of a cProfile of the run.
* sql: per-statement server time of a claim of 100 and a completion of 100 (pgqueue's statements
  vs raw's), measured over a backlog, plus the round-trip floor.

Each part is a module of its own: profile_enqueue, profile_drain, profile_sql.
"""

from __future__ import annotations

import argparse

from .harness import add_server_options, db_dsn, recreate_database, run_async
from .profile_drain import part_drain, part_drain_plain
from .profile_enqueue import part_enqueue
from .profile_sql import part_sql


async def main(a: argparse.Namespace) -> None:
    base, db = a.dsn_base, f"{a.db_prefix}prof"
    parts = a.parts.split(",")
    for part in parts:
        if part in ("enqueue_one", "enqueue_many", "sql"):
            await recreate_database(base, db)
            try:
                if part == "sql":
                    await part_sql(db_dsn(base, db), a.backlog, a.rounds)
                else:
                    await part_enqueue(db_dsn(base, db), a.n, part == "enqueue_many", a.bulk_size, a.top)
            finally:
                await recreate_database(base, db, drop_only=True)
        elif part == "drain":
            print(f"\n=== drain without profiler: N={a.n} ===")
            for spec in a.drain.split(","):
                await part_drain_plain(base, db, spec, a.n, a.bulk_size)
            for spec in a.drain.split(","):
                if spec.startswith("pgqueue") and a.top > 0:
                    await part_drain(base, db, spec, a.n, a.bulk_size, a.top)
        else:
            raise SystemExit(f"unknown part {part}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="enqueue_one,enqueue_many,drain,sql")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--drain", default="pgqueue:c32,pgqueue:c100,raw:batch100,raw:c32")
    p.add_argument("--backlog", type=int, default=20000, help="sql: queued rows to claim from")
    p.add_argument("--rounds", type=int, default=40, help="sql: claim+complete rounds")
    p.add_argument("--top", type=int, default=20, help="cProfile lines to show (0: no cProfile runs)")
    add_server_options(p)
    args = p.parse_args()
    run_async(main(args), args.loop)
