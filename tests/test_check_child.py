"""The forked child a check runs the learner's code in: results, exceptions, time limits."""

from __future__ import annotations

import os
import signal
import time

import pytest

from hardway.course import grading
from hardway.course.checks.child import ChildFailed, TimeLimit, in_child


def test_the_return_value_comes_back_and_the_kernel_is_untouched() -> None:
    here = os.getcwd()

    def wander() -> int:
        os.chdir("/")
        return os.getpid()

    child = in_child(wander)
    assert child != os.getpid()
    assert os.getcwd() == here


def test_an_exception_comes_back_with_its_type_and_message() -> None:
    def fail() -> None:
        raise KeyError("size")

    with pytest.raises(KeyError, match="size"):
        in_child(fail)


def test_an_endless_loop_is_stopped_with_its_descendants() -> None:
    def spin() -> None:
        if os.fork() == 0:
            while True:
                time.sleep(0.05)
        print("started")
        while True:
            pass

    before = _children()
    with pytest.raises(TimeLimit, match="still running after 1 s") as caught:
        in_child(spin, timeout=1)
    assert "started" in caught.value.output
    assert _children() == before


def test_a_grandchild_left_running_does_not_delay_the_answer() -> None:
    def leave_one() -> str:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        return "done"

    started = time.monotonic()
    assert in_child(leave_one, timeout=20) == "done"
    assert time.monotonic() - started < 10  # far from the 20 s limit: the answer came first


def test_a_child_that_exits_or_dies_is_a_failure_that_says_so() -> None:
    with pytest.raises(ChildFailed, match="exit code 3"):
        in_child(lambda: os._exit(3))
    with pytest.raises(ChildFailed, match="SIGKILL"):
        in_child(lambda: os.kill(os.getpid(), signal.SIGKILL))


def test_the_grader_tells_the_learner_s_error_from_a_not_attempted_stub() -> None:
    namespace: dict[str, object] = {}
    exec(  # the learner's cell: compiled from a string, as IPython does
        "def my_step():\n    raise NotImplementedError()\ndef my_bug():\n    return {}['size']\n",
        namespace,
    )

    @grading.exercise("96.1")
    def stub(my_step: object) -> None:
        in_child(my_step)  # type: ignore[arg-type]

    @grading.exercise("96.2")
    def bug(my_bug: object) -> None:
        in_child(my_bug)  # type: ignore[arg-type]

    assert grading.run_check("96.1", namespace).status == "not attempted"
    result = grading.run_check("96.2", namespace)
    assert (result.status, result.message) == ("error", "your code raised KeyError: 'size'")


def _children() -> set[int]:
    mine = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == mine and fields[0] != "Z":
                found.add(int(entry))
    return found


def test_a_nested_child_dies_with_the_outer_one_on_its_time_limit() -> None:
    def inner() -> None:
        while True:
            time.sleep(0.05)

    def outer() -> None:
        in_child(inner, timeout=60)

    before = _children()
    with pytest.raises(TimeLimit):
        in_child(outer, timeout=1)
    time.sleep(0.2)
    survivors = [
        pid for pid in _all_pids() if _pgid(pid) is not None and pid not in before and _is_ours(pid)
    ]
    assert not survivors


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _is_ours(pid: int) -> bool:
    """A live process whose command line is this test run's interpreter (a forked child)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read()
    except OSError:
        return False
    mine = open(f"/proc/{os.getpid()}/cmdline", "rb").read()  # noqa: SIM115
    return state != "Z" and argv == mine and pid != os.getpid()
