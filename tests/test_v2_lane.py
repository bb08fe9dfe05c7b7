"""The cgroup v2 lane: the tests marked ``cgroup_v2`` (deselected on a host that is not
pure cgroup v2) pass in a qemu guest that is, built and booted by tests/vm/lane.py; so do
those marked ``apparmor`` (the guest's kernel has AppArmor). Each of them, collected here,
must be reported passed by the guest."""

import os
import sys

import pytest
from conftest import pure_cgroup_v2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "vm"))
import lane  # noqa: E402

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600  # seconds for the guest, from power-on to power-off: software emulation is slow


def test_cgroup_v2_tests_pass_in_the_v2_guest(capsys):
    if pure_cgroup_v2():
        pytest.skip("this host is pure cgroup v2: the cgroup_v2 tests ran here, not deselected")
    try:
        lane.find_qemu()
        lane.find_kernel()
        result = lane.run(PROJECT, timeout=TIMEOUT)
    except lane.LaneError as e:
        pytest.fail(f"the cgroup v2 lane cannot run: {e}")
    build = sum(result.build_times.values())
    booted = f"{result.booted:.1f}s" if result.booted is not None else "never"
    with capsys.disabled():  # in CI's log even when the test passes
        print(f"\nv2-lane: guest pytest: {result.summary()} (build {build:.1f}s, boot {booted}, "
              f"qemu ended after {result.elapsed:.1f}s; console: {result.console_log})")
    assert not result.timed_out, f"the guest was killed after {TIMEOUT}s:\n{result.output}"
    assert result.exit_code is not None, f"the guest never printed {lane.EXIT_MARKER}<code>:\n{result.output}"
    assert result.exit_code == 0, f"pytest in the guest exited {result.exit_code}:\n{result.pytest_output()}"
    assert result.expected, "no test is marked for the guest (cgroup_v2 or apparmor)"
    # Every one, by name: a test skipped or deselected there passes pytest but not the lane.
    missing = result.not_passed()
    assert not missing, (f"{len(missing)} of the {len(result.expected)} guest tests did not pass there: {missing}\n"
                         f"{result.pytest_output()}")


def test_a_guest_test_skipped_deselected_or_failed_fails_the_lane():
    """pytest in the guest exits 0 with skips and deselections: the lane names what didn't pass."""
    result = lane.Boot(["PASSED tests/a.py::test_ran", "SKIPPED [1] tests/a.py:9: no cgroup v2 here",
                        "FAILED tests/a.py::test_failed - AssertionError", "1 passed, 1 skipped, 1 failed"],
                       exit_code=1, timed_out=False, booted=1.0, elapsed=2.0)
    result.expected = {"tests/a.py::test_ran", "tests/a.py::test_skipped", "tests/a.py::test_failed",
                       "tests/a.py::test_deselected"}
    assert result.not_passed() == ["tests/a.py::test_deselected", "tests/a.py::test_failed",
                                   "tests/a.py::test_skipped"]
