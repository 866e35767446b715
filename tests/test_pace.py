"""How far ahead a worker claims follows how long its jobs and claims take (no database needed:
this is arithmetic on the worker's own measurements)."""

from pgqueue.worker.pace import ClaimPace


def _ahead_after(concurrency: int, claim_seconds: float, run_seconds: float) -> int:
    pace = ClaimPace(concurrency)
    for _ in range(50):
        pace.claimed(claim_seconds)
        pace.job_ran(run_seconds)
    return pace.ahead


def test_one_concurrencys_worth_ahead_until_there_is_anything_to_judge_by() -> None:
    pace = ClaimPace(concurrency=10)
    assert pace.ahead == 10
    pace.claimed(0.001)
    assert pace.ahead == 10


def test_slow_jobs_hold_one_job_ahead_so_other_workers_get_the_rest() -> None:
    assert _ahead_after(10, claim_seconds=0.002, run_seconds=5.0) == 1


def test_jobs_that_finish_during_a_claim_are_claimed_ahead_up_to_three_concurrencies() -> None:
    assert _ahead_after(32, claim_seconds=0.001, run_seconds=0.000_01) == 96


def test_in_between_enough_for_what_the_slots_finish_in_two_claims_time() -> None:
    # 32 slots finish 3.2 jobs per 1 ms claim; twice that, rounded up.
    assert _ahead_after(32, claim_seconds=0.001, run_seconds=0.010) == 7
