"""`crossfed test [PYTEST ARGS...]` (also `python -m crossfed.suite`): the scenario suite shipped
in the package, run from any folder; every argument goes to pytest, e.g. `-m local`,
`--crossfed-env kind`, `-k aws`, `-x`."""

from __future__ import annotations

import sys

SUITE = "crossfed.suite"


def suite_argv(args: list[str]) -> list[str]:
    """pytest's argv: the suite as --pyargs, rooted in the current folder (so that pytest's
    cache and reports land there, not inside the installed package) unless told otherwise."""
    rooted = any(a == "--rootdir" or a.startswith("--rootdir=") for a in args)
    return ["--pyargs", SUITE, *([] if rooted else ["--rootdir", "."]), *args]


def run_suite(args: list[str]) -> int:
    import pytest

    return int(pytest.main(suite_argv(args)))


if __name__ == "__main__":
    sys.exit(run_suite(sys.argv[1:]))
