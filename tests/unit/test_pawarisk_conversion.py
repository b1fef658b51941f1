"""The conversion's progress line and estimate: pure."""

from oddstore.pawarisk_conversion import LEGACY_ROWS_PER_SECOND, V29_ROWS_PER_SECOND, Work, progress


def test_progress_reports_rows_done_the_rate_of_this_run_and_the_time_left() -> None:
    # Resumed at 400 of 1,000 rows; this run did 200 in 4 s: 50 rows/s, 400 left.
    assert progress(600, 1000, 200, 4.0) == "600 of 1000 rows (60.0 %), 50 rows/s, ETA 8 s"


def test_progress_before_any_rate_is_known_says_so() -> None:
    assert progress(0, 10, 0, 0.0) == "0 of 10 rows (0.0 %), 0 rows/s, ETA unknown"
    assert progress(0, 0, 0, 1.0).startswith("0 of 0 rows (100.0 %)")


def test_the_estimate_adds_the_two_steps_at_their_measured_rates() -> None:
    work = Work(v29_rows=3 * int(V29_ROWS_PER_SECOND), v29_total=10**9, legacy_rows=2 * int(LEGACY_ROWS_PER_SECOND))
    assert round(work.estimate_seconds, 6) == 5.0
