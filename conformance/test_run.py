"""Unit tests for the TAP parsing in conformance/run.py (no root needed)."""

import importlib.util
import unittest
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "conformance_run", Path(__file__).with_name("run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


class ParseTapTest(unittest.TestCase):
    def test_counts_ok_not_ok_skip_todo(self):
        tap = run.parse_tap(
            "TAP version 13\n"
            "ok 1 - a\n"
            "ok 2 # SKIP linux.sysctl not set\n"
            "not ok 3 - b\n"
            "not ok 4 # TODO c\n"
            "1..4\n")
        self.assertEqual((tap["ok"], tap["not_ok"], tap["skip"], tap["todo"]),
                         (1, 2, 1, 1))
        self.assertEqual(tap["plans"], [4])

    def test_failure_keeps_yaml_and_comments(self):
        tap = run.parse_tap(
            "TAP version 13\n"
            "not ok 1 - pids limit is set correctly\n"
            "# expect: 1, actual: 2\n"
            "  ---\n"
            "  {\n"
            '    "error": "x"\n'
            "  }\n"
            "  ...\n"
            "ok 2 - next\n"
            "1..2\n")
        self.assertEqual(len(tap["failures"]), 1)
        failure = tap["failures"][0]
        self.assertIn("# expect: 1, actual: 2", failure)
        self.assertIn('"error": "x"', failure)
        self.assertNotIn("ok 2", failure)
        self.assertEqual(run.failure_title(failure), "pids limit is set correctly")

    def test_indented_lines_are_not_counted(self):
        tap = run.parse_tap(
            "TAP version 13\n"
            "  ---\n"
            '  {"stdout": "x"}\n'
            "    ok 1 - nested\n"
            "  ...\n"
            "ok 1 - outer\n"
            "1..1\n")
        self.assertEqual((tap["ok"], tap["not_ok"]), (1, 0))
        self.assertEqual(tap["diagnostics"], [])

    def test_several_documents_sum_their_plans(self):
        tap = run.parse_tap("TAP version 13\nok 1 - a\n1..1\n"
                            "TAP version 13\n1..0\n")
        self.assertEqual(sum(tap["plans"]), 1)

    def test_diagnostic_without_test_lines(self):
        tap = run.parse_tap(
            "TAP version 13\n"
            "  ---\n"
            "  {\n"
            '    "error": "Hooks MUST be called in the listed order"\n'
            "  }\n"
            "  ...\n"
            "1..0\n")
        self.assertEqual(tap["ok"] + tap["not_ok"] + tap["skip"], 0)
        self.assertEqual(len(tap["diagnostics"]), 1)
        self.assertIn("Hooks MUST", tap["diagnostics"][0])

    def test_bail_out(self):
        tap = run.parse_tap("TAP version 13\nBail out! broken\n")
        self.assertEqual(tap["bail_out"], "Bail out! broken")
        self.assertEqual(tap["plans"], [])


class HelpersTest(unittest.TestCase):
    def test_first_error_line_prefers_runtime_message(self):
        stderr = ('failed to create the container\n'
                  'time="t" level=error msg="create failed: \\"x\\" missing"\n'
                  'exit status 1\n')
        self.assertEqual(run.first_error_line(stderr), 'create failed: "x" missing')


if __name__ == "__main__":
    unittest.main()
