"""The cgroup v2 lane: the tests marked ``cgroup_v2`` (deselected on a host that is not
pure cgroup v2) pass in a qemu guest that is, built and booted by tests/vm/lane.py; so do
those marked ``apparmor`` (the guest's kernel has AppArmor)."""

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
    assert result.count("passed") >= 1, f"no test passed in the guest:\n{result.pytest_output()}"
