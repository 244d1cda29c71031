"""How the hot-labourer workload (``bench/hot.py``) reads its runs: throttles, close conflicts, medians."""

from __future__ import annotations

from botocore.exceptions import ClientError

from bench.hot import _emulation, caused_by_throttle, render, summarize


def cancelled(*codes: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": [{"Code": c} for c in codes]},
        "TransactWriteItems",
    )


def test_a_throttle_is_found_in_a_cancellation_reason_or_down_the_exception_chain():
    assert caused_by_throttle(cancelled("None", "ThrottlingError"))
    assert caused_by_throttle(cancelled("ProvisionedThroughputExceeded"))
    assert not caused_by_throttle(cancelled("None", "TransactionConflict"))
    try:
        try:
            raise cancelled("ThrottlingError")
        except ClientError as exc:
            raise RuntimeError("report failed") from exc
    except RuntimeError as wrapped:
        assert caused_by_throttle(wrapped)


def test_close_conflicts_are_the_assistants_transactions_cancelled_for_a_conflict():
    stats = {
        "callers": {
            "assistant": {"TransactWriteItems": {"accepted": 40, "TransactionConflict": 12}},
            "orchestrator": {"TransactWriteItems": {"accepted": 9, "TransactionConflict": 30}},
        },
        "refused": {
            "TransactWriteItems": {"TransactionConflict": 42, "ThrottlingError": 3},
            "Query": {"ThrottlingException": 2},
            "BatchWriteItem": {"UnprocessedItems": 1},
        },
        "refused_items": {"leases:hot#slots": {"TransactionConflict": 40}, "tasks:t1": {"TransactionConflict": 2}},
    }
    figures = _emulation(stats)
    assert (figures["close_conflicts"], figures["throttles"], figures["conflicts"]) == (12, 5, 42)
    assert next(iter(figures["hottest_items"])) == "leases:hot#slots"


def run(pair: int, tasks_per_second: float, conflicts: int, raised: int) -> dict:
    return {
        "tasks": 100,
        "done": True,
        "tasks_per_second": tasks_per_second,
        "closes_accepted": 100,
        "close_conflicts": conflicts,
        "close_p50_ms": 10.0 * pair,
        "close_p99_ms": 100.0 * pair,
        "reports_raised": raised,
        "not_closed_once": 0,
        "throttles": 0,
        "throttles_not_retried": 0,
        "peak": 90 + pair,
    }


def test_the_table_shows_medians_of_the_pairs_and_the_highest_peak():
    figures = summarize([run(1, 20.0, 300, 5), run(2, 25.0, 100, 0), run(3, 22.0, 200, 9)])
    assert figures["tasks_per_second"] == 22.0
    assert figures["conflicts_a_close"] == 2.0
    assert figures["reports_raised"] == 5 and figures["close_p99_ms"] == 200.0 and figures["peak"] == 93
    results = {
        "write_units": 250,
        "read_units": 750,
        "date": "today",
        "cores": 2,
        "designs": {"current": "the current tree"},
        "summary": [{"design": "current", "cap": 100, "emulation": "on", "figures": figures}],
    }
    assert "| current | 100 | 100 | on | 22.0 (100) | 2.00 | 20 / 200 | 5 | 0 | 0 (0) | 93 / 100 |" in render(results)
