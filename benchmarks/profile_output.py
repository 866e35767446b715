"""How the profiler prints: a cProfile summed by module, its top functions, µs per job."""

from __future__ import annotations

import cProfile
import io
import os
import pstats


def by_module(profile: cProfile.Profile, jobs: int, label: str) -> None:
    """Own time grouped by where the code lives (a pgqueue module, a package, a stdlib module)."""
    stats = pstats.Stats(profile)
    groups: dict[str, float] = {}
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        if "/pgqueue/" in filename and "site-packages" not in filename:
            key = "pgqueue/" + filename.split("/pgqueue/", 1)[1]
        elif "site-packages/" in filename:
            key = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif filename.startswith("~") or filename == "<string>":
            key = f"builtins/C ({func.split(' ')[0] if func.startswith('<') else func})"[:60]
        else:
            key = "stdlib " + os.path.basename(filename)
        groups[key] = groups.get(key, 0.0) + tt
    print(f"\n--- cProfile {label}: own time by module (total {total / jobs * 1e6:.1f} µs/job "
          f"under the profiler) ---")
    for key, tt in sorted(groups.items(), key=lambda kv: -kv[1])[:18]:
        print(f"  {tt / total * 100:5.1f}%  {tt / jobs * 1e6:6.1f} µs/job  {key}")


def top(profile: cProfile.Profile, n: int, label: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(n)
    text = out.getvalue()
    body = text[text.find("   ncalls") :]
    print(f"\n--- cProfile {label}: top {n} by own time ---")
    print(body.rstrip())


def us(total_s: float, n: int) -> str:
    return f"{total_s / n * 1e6:8.1f} µs/job"
