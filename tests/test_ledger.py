"""The supervision ledger on its own (issue 11): attempts, who is charged for a death, deadlines and
which error row a death or a timeout becomes -- no processes, a fake clock."""

from __future__ import annotations

from qc_pipeline.errors import Reason
from qc_pipeline.executors.ledger import Ledger
from qc_pipeline.records import CallSource


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def calls(*ids: str) -> tuple[CallSource, ...]:
    return tuple(CallSource(call_id=i, kind="chat") for i in ids)


def test_running_call_is_charged_twice_then_written_as_worker_crashed():
    led = Ledger(call_timeout_s=0, max_attempts=2)
    led.assign("w1", calls("a"))
    first = led.died("w1", "killed by SIGKILL")
    assert first.failed == () and first.retry == (calls("a"),)
    led.assign("w2", calls("a"))
    second = led.died("w2", "killed by SIGKILL")
    assert second.retry == ()
    [row] = second.failed
    assert (row.call_id, row.status, row.error_reason) == ("a", "failed", Reason.WORKER_CRASHED)
    assert "died 2 times" in row.error_detail and "SIGKILL" in row.error_detail


def test_only_the_running_task_is_charged_queued_ones_go_again_as_they_were():
    led = Ledger(call_timeout_s=0, max_attempts=1)   # one death writes the running call off
    led.assign("w", calls("run"))
    led.assign("w", calls("q1", "q2"))
    led.assign("w", calls("q3"))
    verdict = led.died("w", "ActorDiedError")
    assert [r.call_id for r in verdict.failed] == ["run"]
    assert verdict.retry == (calls("q1", "q2"), calls("q3"))


def test_a_group_that_dies_is_not_charged_each_call_goes_again_alone():
    led = Ledger(call_timeout_s=0, max_attempts=1)
    led.assign("w", calls("a", "b", "c"))
    verdict = led.died("w", "exit code 1")
    assert verdict.failed == () and verdict.retry == (calls("a"), calls("b"), calls("c"))


def test_finished_tasks_are_not_charged_and_the_next_becomes_running():
    led = Ledger(call_timeout_s=0, max_attempts=1)
    done = led.assign("w", calls("done"))
    led.assign("w", calls("next"))
    led.finished("w", done)
    assert led.running("w").calls == calls("next")
    assert [r.call_id for r in led.died("w", "x").failed] == ["next"]
    assert led.died("w", "again") == led.died("nobody", "x")  # nothing left: an empty verdict


def test_deadline_clock_starts_when_a_task_becomes_running_not_when_queued():
    clock = Clock()
    led = Ledger(call_timeout_s=10, clock=clock)
    first = led.assign("w", calls("a"))
    led.assign("w", calls("b", "c"))          # a group: 2 x 10 s
    assert led.wait_s() == 10
    clock.now += 9
    led.finished("w", first)                  # "b, c" start now, not at 100
    clock.now += 15
    assert led.overdue() == [] and led.wait_s() == 5
    clock.now += 5
    [(worker, task)] = led.overdue()
    assert worker == "w" and task.calls == calls("b", "c")


def test_a_timed_out_call_becomes_call_timeout_without_retry():
    clock = Clock()
    led = Ledger(call_timeout_s=3, clock=clock)
    led.assign("w", calls("hang"))
    led.assign("w", calls("behind"))
    clock.now += 3
    [(_, task)] = led.overdue()
    led.mark_timed_out(task)
    assert led.overdue() == [] and led.wait_s() is None   # being killed: no second kill, no busy wait
    verdict = led.died("w", "killed (call timeout)")
    [row] = verdict.failed
    assert (row.call_id, row.error_reason) == ("hang", Reason.CALL_TIMEOUT)
    assert "run.call_timeout_s" in row.error_detail
    assert verdict.retry == (calls("behind"),)            # queued behind it: uncharged


def test_no_limit_means_no_deadline():
    led = Ledger(call_timeout_s=0)
    led.assign("w", calls("a"))
    assert led.wait_s() is None and led.overdue() == []


def test_lost_results_go_again_until_max_attempts_then_worker_crashed():
    led = Ledger(call_timeout_s=0, max_attempts=2)
    task = led.assign("w", calls("a", "b"))
    first = led.lost("w", task, "ObjectLostError")
    assert first.retry == (calls("a", "b"),) and first.failed == () and led.running("w") is None
    task = led.assign("w", calls("a", "b"))
    second = led.lost("w", task, "ObjectLostError")
    assert {r.error_reason for r in second.failed} == {Reason.WORKER_CRASHED} and second.retry == ()
    assert "lost 2 times" in second.failed[0].error_detail


def test_an_escaped_error_splits_a_group_and_writes_a_single_call_as_internal_error():
    led = Ledger()
    group = led.assign("w", calls("a", "b"))
    assert led.errored("w", group, "boom").retry == (calls("a"), calls("b"))
    single = led.assign("w", calls("a"))
    [row] = led.errored("w", single, "ray task failed: boom").failed
    assert (row.error_reason, row.error_detail) == (Reason.INTERNAL_ERROR, "ray task failed: boom")
