"""pgqueue's benchmarks: pgqueue next to its peers, under load, on a large table, over time.

Run from the repository root as modules, e.g. ``python -m benchmarks.run``; see README.md.
``harness`` holds what the scripts share, ``contestants`` the queue adapters, and
``pgqueue_internals`` the only references to pgqueue beyond its public API.
"""
