"""``python -m pgqueue.worker``: the same CLI as ``python -m pgqueue worker``."""

from ..cli import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main())
