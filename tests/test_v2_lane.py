"""The qemu lane (tests/vm/lane.py): the tests marked ``cgroup_v2`` (deselected on a host
that is not pure cgroup v2) pass in a qemu guest that is; so do those marked ``apparmor``
(the guest's kernel has AppArmor). Those marked ``systemd`` (deselected where systemd with
its system bus doesn't run the host) pass in the lane's systemd guests: on pure cgroup v2
(lane.py --systemd) and on cgroup v1, systemd's legacy hierarchies (--systemd --cgroup-v1).
Each of them, collected here, must be reported passed by its guest."""

import os
import sys

import pytest
from conftest import legacy_cgroup_v1, pure_cgroup_v2, systemd_host

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "vm"))
import lane  # noqa: E402

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600  # seconds for the guest, from power-on to power-off: software emulation is slow


def test_cgroup_v2_tests_pass_in_the_v2_guest(capsys):
    if pure_cgroup_v2():
        pytest.skip("this host is pure cgroup v2: the cgroup_v2 tests ran here, not deselected")
    assert_guest_passes(capsys, systemd=False)


def test_systemd_tests_pass_in_the_systemd_guest(capsys):
    if systemd_host() and pure_cgroup_v2():
        pytest.skip("systemd with its bus runs this pure cgroup v2 host: the systemd tests ran here, not deselected")
    assert_guest_passes(capsys, systemd=True)


def test_systemd_tests_pass_in_the_cgroup_v1_systemd_guest(capsys):
    if systemd_host() and legacy_cgroup_v1():
        pytest.skip("systemd with its bus runs this cgroup v1 host: the systemd tests ran here, not deselected")
    assert_guest_passes(capsys, systemd=True, cgroup_v1=True)


def assert_guest_passes(capsys, systemd, cgroup_v1=False):
    """Build and boot the guest; every test collected here for it must be reported passed there."""
    name = ("the cgroup v1 systemd guest" if cgroup_v1 else "the systemd guest") if systemd else "the cgroup v2 guest"
    try:
        lane.find_qemu()
        lane.find_kernel()
        result = lane.run(PROJECT, timeout=TIMEOUT, systemd=systemd, cgroup_v1=cgroup_v1)
    except lane.LaneError as e:
        pytest.fail(f"the qemu lane cannot run {name}: {e}")
    build = sum(result.build_times.values())
    booted = f"{result.booted:.1f}s" if result.booted is not None else "never"
    flags = " --systemd" * systemd + " --cgroup-v1" * cgroup_v1
    with capsys.disabled():  # in CI's log even when the test passes
        print(f"\nv2-lane{flags}: guest pytest: {result.summary()} (build {build:.1f}s, "
              f"boot {booted}, qemu ended after {result.elapsed:.1f}s; console: {result.console_log})")
    assert not result.timed_out, f"{name} was killed after {TIMEOUT}s:\n{result.output}"
    assert result.exit_code is not None, f"{name} never printed {lane.EXIT_MARKER}<code>:\n{result.output}"
    assert result.exit_code == 0, f"pytest in {name} exited {result.exit_code}:\n{result.pytest_output()}"
    assert result.expected, f"no test is marked for {name} (-m {lane.MARKERS[systemd]!r})"
    # Every one, by name: a test skipped or deselected there passes pytest but not the lane.
    missing = result.not_passed()
    assert not missing, (f"{len(missing)} of the {len(result.expected)} tests for {name} did not pass there: "
                         f"{missing}\n{result.pytest_output()}")


def test_a_guest_test_skipped_deselected_or_failed_fails_the_lane():
    """pytest in the guest exits 0 with skips and deselections: the lane names what didn't pass."""
    result = lane.Boot(["PASSED tests/a.py::test_ran", "SKIPPED [1] tests/a.py:9: no cgroup v2 here",
                        "FAILED tests/a.py::test_failed - AssertionError", "1 passed, 1 skipped, 1 failed"],
                       exit_code=1, timed_out=False, booted=1.0, elapsed=2.0)
    result.expected = {"tests/a.py::test_ran", "tests/a.py::test_skipped", "tests/a.py::test_failed",
                       "tests/a.py::test_deselected"}
    assert result.not_passed() == ["tests/a.py::test_deselected", "tests/a.py::test_failed",
                                   "tests/a.py::test_skipped"]
