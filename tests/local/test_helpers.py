"""Unit tests of the two helpers the local scripts lean on:
scripts/sam_host_network.py refuses a SAM version it was not written for,
and scripts/check-doc-commands.py fails on a documented command no script
ran, unless its block says `not run here`.

Run: python3 -m unittest discover -s tests/local -p 'test_*.py'"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SamHostNetwork(unittest.TestCase):
    def test_another_sam_version_is_refused_naming_both(self):
        patch = load("sam_host_network", "scripts/sam_host_network.py")
        with mock.patch("importlib.metadata.version", return_value="1.171.0"):
            with self.assertRaises(SystemExit) as exit_:
                patch.main()
        message = str(exit_.exception.code)
        self.assertIn("1.171.0", message)
        self.assertIn(patch.PATCHED_SAM_VERSION, message)
        self.assertIn("#4236", message)


class CheckDocCommands(unittest.TestCase):
    def run_check(self, markdown, ran):
        with tempfile.TemporaryDirectory() as work:
            os.makedirs(os.path.join(work, "target/sam-local"))
            os.makedirs(os.path.join(work, "target/local-aws"))
            with open(os.path.join(work, "target/sam-local/commands.txt"), "w") as f:
                f.write(ran)
            open(os.path.join(work, "target/local-aws/commands.txt"), "w").close()
            with open(os.path.join(work, "doc.md"), "w") as f:
                f.write(markdown)
            return subprocess.run(
                [sys.executable, os.path.join(ROOT, "scripts/check-doc-commands.py"), "doc.md"],
                cwd=work,
                capture_output=True,
                text=True,
            )

    def test_a_command_that_ran_passes_whatever_its_line_breaks(self):
        done = self.run_check(
            "```sh\naws stepfunctions start-execution --name x \\\n  --input file://in.json   # start\n```\n",
            "aws stepfunctions start-execution --name x --input file://in.json\n",
        )
        self.assertEqual(done.returncode, 0, done.stdout)

    def test_a_command_no_script_ran_fails_naming_its_line(self):
        done = self.run_check(
            "text\n\n```sh\nsam local invoke MoverFunction -e events/x.json\n```\n",
            "aws stepfunctions list-map-runs --execution-arn \"$EXEC\"\n",
        )
        self.assertEqual(done.returncode, 1)
        self.assertIn("doc.md:4: sam local invoke MoverFunction -e events/x.json", done.stdout)

    def test_a_block_marked_not_run_here_is_left_alone(self):
        done = self.run_check(
            "```sh\n# deploy-only, not run here: needs AWS\naws stepfunctions start-execution --name y\n```\n", ""
        )
        self.assertEqual(done.returncode, 0, done.stdout)


if __name__ == "__main__":
    unittest.main()
