"""Long steps say when they start and end, with elapsed seconds, through pytest's terminal
reporter: with and without -s, and whole lines under xdist (crossfed.progress)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossfed.progress import progress

pytestmark = [pytest.mark.local]
STEPS = '''
import time
import pytest
from crossfed.progress import progress

@pytest.mark.parametrize("n", range(4))
def test_step(n):
    with progress(f"demo step {n}"):
        time.sleep(0.1)

def test_lazy_wait_that_never_waits():
    with progress("instant wait", eager=False):
        pass

def test_lazy_wait_that_waits():
    with progress("real wait", eager=False) as waiting:
        waiting.started()
        time.sleep(0.1)

def test_failing_step():
    with pytest.raises(RuntimeError):
        with progress("broken step"):
            raise RuntimeError("no")
'''


def run(tmp_path: Path, *args: str) -> str:
    (tmp_path / "test_steps.py").write_text(STEPS)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "test_steps.py", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("capture", [[], ["-s"]], ids=["captured", "-s"])
def test_each_step_prints_a_start_and_an_end_line(tmp_path, capture):
    out = run(tmp_path, *capture)
    for n in range(4):
        assert f"crossfed: demo step {n} ...\n" in out
        assert re.search(rf"^crossfed: demo step {n}: done in \d+\.\d s$", out, re.M)
    assert "instant wait" not in out  # a wait that did not wait says nothing
    assert re.search(r"^crossfed: real wait: done in 0\.\d s$", out, re.M)
    assert re.search(r"^crossfed: broken step: failed after \d+\.\d s \(RuntimeError\)$",
                     out, re.M)


def test_under_xdist_each_line_is_whole_and_names_its_worker(tmp_path):
    pytest.importorskip("xdist")
    out = run(tmp_path, "-n", "2")
    lines = [line for line in out.splitlines() if "demo step" in line]
    assert len(lines) == 8, out
    assert all(re.fullmatch(r"\[gw\d\] crossfed: demo step \d( \.\.\.|: done in \d+\.\d s)",
                            line) for line in lines), lines


def test_outside_pytest_the_lines_go_to_standard_error(capsys, monkeypatch):
    import crossfed.progress as module

    monkeypatch.setattr(module, "_config", None)
    with progress("cli step"):
        pass
    err = capsys.readouterr().err
    assert "crossfed: cli step ...\n" in err and "crossfed: cli step: done in" in err
