"""Debian's chromium, headless, for the run report's tests: the DOM after rendering, and a
screenshot. It never reaches the network: as root it runs in a network namespace of its own
with only a loopback (unshare -n); otherwise every fetch goes to a closed loopback proxy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--metrics-recording-only",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _argv(profile: Path, *args: str) -> list[str]:
    browser = chromium()
    assert browser is not None, "chromium not found: apt-get install chromium"
    argv = [browser, *QUIET, f"--user-data-dir={profile}", *args]
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "--net", "--", *argv]
    return argv


def rendered_dom(page: Path, profile: Path) -> str:
    done = subprocess.run(_argv(profile, "--dump-dom", page.resolve().as_uri()),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout, done.stderr[-2000:]
    return done.stdout


def screenshot(page: Path, target: Path, profile: Path, size: str = "1400,2400") -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(_argv(profile, f"--window-size={size}",
                                f"--screenshot={target.resolve()}", page.resolve().as_uri()),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and target.is_file(), done.stderr[-2000:]
    return target
