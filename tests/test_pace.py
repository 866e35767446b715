"""How far ahead a worker claims follows how long its jobs and claims take (no database needed:
this is arithmetic on the worker's own measurements)."""

from pgqueue.worker.pace import ClaimPace


def test_one_concurrencys_worth_ahead_until_there_is_anything_to_judge_by() -> None:
    pace = ClaimPace(concurrency=10)
    assert pace.ahead == 10
    pace.claimed(0.001)
    assert pace.ahead == 10


def test_slow_jobs_hold_one_job_ahead_so_other_workers_get_the_rest() -> None:
    pace = ClaimPace(concurrency=10)
    for _ in range(20):
        pace.claimed(0.002)
        pace.job_ran(5.0)
    assert pace.ahead == 1


def test_jobs_that_finish_during_a_claim_are_claimed_ahead_up_to_three_concurrencies() -> None:
    pace = ClaimPace(concurrency=32)
    for _ in range(20):
        pace.claimed(0.001)
        pace.job_ran(0.000_01)
    assert pace.ahead == 96


def test_in_between_enough_for_what_the_slots_finish_in_two_claims_time() -> None:
    pace = ClaimPace(concurrency=32)
    for _ in range(50):
        pace.claimed(0.001)
        pace.job_ran(0.010)
    assert pace.ahead == 7  # 32 slots finish 3.2 jobs per 1 ms claim; twice that, rounded up
