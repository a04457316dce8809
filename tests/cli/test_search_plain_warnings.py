"""``kdnas search`` speaks to the user in plain lines: the health checks' warnings appear as
"Warning: ..." while the search runs, not as developer log lines; the teacher's training has
its own progress line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_warnings_are_plain_lines_not_log_records(tmp_path: Path) -> None:
    # One epoch at width x0.125: the teacher and both fidelities stay at chance (warned).
    command = [
        sys.executable, "-m", "kdnas", "search", "--dataset", "digits", "--algorithm", "alg2",
        "--method", "kd", "--part", "9", "--candidates", "4", "--n-lf", "2",
        "--budget-evaluations", "3", "--epochs", "1", "--width-multiplier", "0.125",
        "--batch-size", "256", "--threads", "1", "--allow-chance-teacher",
        "--store", str(tmp_path / "s.sqlite"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = done.stdout + done.stderr
    assert "Warning: the teacher" in shown
    assert "Warning: fidelity 1/9 kd" in shown
    assert "WARNING kdnas" not in shown  # the developer's log line is gone
    assert "Fix: more epochs" in " ".join(shown.split())  # whole, not shortened
    # printed when found, before the final summary
    assert shown.index("Warning: the teacher") < shown.index("Best at high fidelity")
    assert "warning(s) above, also in the report" in shown
    # the teacher's line, finished before the search's (which shows 3/3)
    assert "teacher ready" in shown and "3/3" in shown


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter that imports this checkout's kdnas; it must exit 0."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def test_other_log_records_still_reach_the_log(tmp_path: Path) -> None:
    """The filter is only for the health checks: a store's warning stays a log line."""
    code = (
        "import logging, sys; from kdnas.cli.search import _PlainWarnings; "
        "logging.basicConfig(format='%(levelname)s %(name)s: %(message)s'); "
        "from rich.console import Console; console = Console(file=sys.stdout); "
        "plain = _PlainWarnings(console); plain.__enter__(); "
        "logging.getLogger('kdnas.store._sqlite').warning('busy'); "
        "logging.getLogger('kdnas.experiment._health').warning('at chance'); "
        "plain.__exit__(); logging.getLogger('kdnas.experiment._health').warning('after')"
    )
    done = _python(code)
    assert "WARNING kdnas.store._sqlite: busy" in done.stderr
    assert "at chance" not in done.stderr and "Warning: at chance" in done.stdout
    assert "WARNING kdnas.experiment._health: after" in done.stderr  # restored


def test_log_records_reach_the_terminal_as_plain_text() -> None:
    """A control character in a logged value (a hostile path or name from a file) is written
    as its escape by the CLI's logging, in the message and in a traceback alike, so it cannot
    clear the screen, retitle the window or ring the bell; line breaks stay."""
    code = (
        "import logging; from kdnas.cli import configure_logging; configure_logging(False)\n"
        "logging.getLogger('kdnas.store').warning('cannot read %s', 'runs\\x1b[2J\\x07.db')\n"
        "try:\n"
        "    raise ValueError('bad \\x1b]0;owned\\x07 name')\n"
        "except ValueError:\n"
        "    logging.getLogger('kdnas.data').exception('failed')\n"
        "logging.getLogger('kdnas.data').info('not shown')\n"
    )
    done = _python(code)
    err = done.stderr
    assert "\x1b" not in err and "\x07" not in err
    assert "WARNING kdnas.store: cannot read runs\\x1b[2J\\x07.db" in err
    assert "ValueError: bad \\x1b]0;owned\\x07 name" in err
    assert "Traceback (most recent call last):\n" in err  # the traceback keeps its lines
    assert "not shown" not in err  # WARNING and up, as before
