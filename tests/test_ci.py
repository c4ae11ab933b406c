"""The CI script's machinery: time limits per step (.ci/steps.sh), the import checks of the extras
(.ci/require_imports.py) and the switch that turns a missing extra into a failed test (tests/optional_extras.py)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optional_extras import REQUIRE_EXTRAS_VAR, require_extra

REPO = Path(__file__).resolve().parents[1]
MISSING = "kerazoo_no_such_module"


def _step(*command, budget=600):
    """Runs `step ...` from .ci/steps.sh in bash, as .ci/run does (set -euo pipefail)."""
    script = 'set -euo pipefail; source .ci/steps.sh; step "$@"'
    env = {**os.environ, "CI_BUDGET_S": str(budget), "CI_KILL_AFTER_S": "2"}
    # The guard against a hang of the machinery under test itself; not an assertion on time.
    return subprocess.run(["bash", "-c", script, "bash", *command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_step_that_hangs_fails_naming_the_step_and_its_children_are_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    run = _step("make test", "1", "bash", "-c", f"sleep 300 & echo $! > {pid_file}; wait")
    assert run.returncode == 124, run
    assert "CI: step 'make test' ran out of time (1 s)" in run.stderr
    child = int(pid_file.read_text())
    for _ in range(100):  # the child got the same SIGTERM; wait until it is reaped
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail(f"the step's background child {child} outlived the step's time limit")


def test_a_step_that_ignores_sigterm_is_killed():
    run = _step("stubborn", "1", "bash", "-c", "trap '' TERM; sleep 300")
    assert run.returncode == 124 and "CI: step 'stubborn' ran out of time (1 s)" in run.stderr, run


def test_the_run_budget_cuts_a_steps_limit_and_a_spent_budget_starts_nothing(tmp_path):
    run = _step("benchmark runs", "600", "sleep", "300", budget=1)
    assert run.returncode == 124 and "CI: step 'benchmark runs' ran out of time (1 s)" in run.stderr, run
    marker = tmp_path / "started"
    run = _step("make test", "600", "touch", str(marker), budget=0)
    assert run.returncode == 124 and "step 'make test' not started" in run.stderr, run
    assert not marker.exists()


def test_a_failing_step_keeps_its_exit_status_and_a_passing_one_says_so():
    run = _step("pip install kerazoo[peer]", "60", "bash", "-c", "exit 3")
    assert run.returncode == 3 and "CI: step 'pip install kerazoo[peer]' failed (exit 3)" in run.stderr, run
    run = _step("import check", "60", "true")
    assert run.returncode == 0 and "CI: step 'import check' passed in" in run.stdout, run


def _logical_lines(text):
    """The shell lines of `text` with backslash continuations joined, comments and blanks left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_command_of_the_ci_script_runs_as_a_timed_step():
    lines = _logical_lines((REPO / ".ci" / "run").read_text())
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")]).returncode == 0
    setup = ("#!", "set -euo pipefail", "cd ", "source .ci/steps.sh", "export ", "test -d ", "for ", "done",
             'echo "CI: all steps passed"')
    untimed = [line for line in lines if not line.startswith(("step ",) + setup)]
    assert not untimed, f"commands outside a timed step: {untimed}"
    steps = [line for line in lines if line.startswith("step ")]
    for name in ("make test", "make test-slow", "pip install kerazoo[peer]", "import check: peer", "benchmark runs"):
        assert any(line.startswith(f'step "{name}" ') for line in steps), name
    assert "export KERAZOO_REQUIRE_EXTRAS=1" in lines and "export KERAZOO_REQUIRE_DATA=1" in lines
    # The extras that tests need are checked: bm3d, scikit-image and the peer.
    checks = " ".join(line for line in steps if "require_imports.py" in line).split()
    assert {"bm3d", "skimage.metrics", "torch", "segmentation_models_pytorch"} <= set(checks)


def test_import_check_names_each_missing_module():
    check = [sys.executable, str(REPO / ".ci" / "require_imports.py")]
    run = subprocess.run(check + ["the peer", "json", MISSING], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "CI: the peer missing or broken" in run.stderr and f"{MISSING} (ModuleNotFoundError" in run.stderr
    assert "json" not in run.stderr.split(":", 2)[2]
    run = subprocess.run(check + ["the peer", "json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "CI: the peer import (json)" in run.stdout, run


def test_a_missing_extra_skips_unless_extras_are_required(monkeypatch):
    monkeypatch.delenv(REQUIRE_EXTRAS_VAR, raising=False)
    assert require_extra("json", "dev").dumps([1]) == "[1]"
    with pytest.raises(pytest.skip.Exception, match=f'{MISSING} does not import.*pip install "kerazoo\\[peer\\]"'):
        require_extra(MISSING, "peer")
    monkeypatch.setenv(REQUIRE_EXTRAS_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING} does not import.*{REQUIRE_EXTRAS_VAR} is set"):
        require_extra(MISSING, "peer")
