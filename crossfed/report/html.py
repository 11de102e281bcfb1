"""The run report as one self-contained HTML page: no script, no fetch; styles inline and each
chain drawn as inline SVG.

Built with Jinja2 (autoescaping on): pytest-html's report is a table of tests with a script
of its own, while this page is laid out around scenarios and their chains (a matrix, then a
picture per scenario), which a template states directly.
"""

from __future__ import annotations

import datetime
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from crossfed.report.account import ScenarioAccount

COLOURS = {"passed": "#2e7d32", "denied": "#ef6c00", "failed": "#c62828",
           "not reached": "#9e9e9e", "skipped": "#9e9e9e"}
BOX_WIDTH, BOX_GAP, BOX_HEIGHT = 150, 36, 48


def scenario_name(account: ScenarioAccount) -> str:
    """The test without its environment parameter: the matrix's row."""
    name = account.test_id.split("::")[-1]
    if "[" not in name:
        return name
    base, params = name.split("[", 1)
    params = params.rstrip("]")
    env = account.environment
    rest = params[len(env) + 1:] if params.startswith(env + "-") else (
        "" if params == env else params)
    return f"{base}[{rest}]" if rest else base


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def chain_svg(account: ScenarioAccount) -> dict[str, Any]:
    """Boxes and the failing link's label, laid out for the template."""
    boxes = []
    label: list[str] = []
    label_x = 0
    for index, link in enumerate(account.chain):
        x = 10 + index * (BOX_WIDTH + BOX_GAP)
        boxes.append({"x": x, "name": link.name, "outcome": link.outcome,
                      "colour": COLOURS.get(link.outcome, "#607d8b"),
                      "arrow": index < len(account.chain) - 1})
        if link.outcome in ("failed", "denied") and not label:
            words = (f"{'failed' if link.outcome == 'failed' else 'denied'} at check "
                     f"{link.check}" + (f": {link.fix}" if link.fix else ""))
            label = textwrap.wrap(words, 60)[:6]
            label_x = x
    width = 20 + len(boxes) * (BOX_WIDTH + BOX_GAP)
    return {"boxes": boxes, "label": label, "label_x": label_x, "width": width,
            "height": BOX_HEIGHT + 30 + 16 * len(label), "box_width": BOX_WIDTH,
            "box_height": BOX_HEIGHT}


def figures(accounts: Sequence[ScenarioAccount], run_lines: Sequence[str]) -> dict[str, Any]:
    steps = sorted(((step.seconds or 0.0, step.name, account)
                    for account in accounts for step in account.steps),
                   key=lambda item: -item[0])[:8]
    waits = [line.split("cloud propagation: ", 1)[1] for line in run_lines
             if "cloud propagation: " in line]
    return {"slowest": [{"seconds": s, "step": n, "scenario": scenario_name(a),
                         "environment": a.environment} for s, n, a in steps],
            "waits": waits}


def render(accounts: Sequence[ScenarioAccount], run_lines: Sequence[str]) -> str:
    environments = list(dict.fromkeys(a.environment for a in accounts))
    rows: dict[tuple[str, str], dict[str, ScenarioAccount]] = {}
    for account in accounts:
        key = (account.direction or "-", scenario_name(account))
        rows.setdefault(key, {})[account.environment] = account
    ordered = sorted(rows.items(), key=lambda item: (
        all(a.outcome != "failed" for a in item[1].values()), item[0]))  # failures first
    templates = Environment(loader=PackageLoader("crossfed.report", "templates"),
                            autoescape=select_autoescape(["html", "j2"]))
    failed = [a for a in accounts if a.outcome == "failed"]
    return templates.get_template("report.html.j2").render(
        accounts=accounts, environments=environments, rows=ordered,
        failed=failed, others=[a for a in accounts if a.outcome != "failed"],
        figures=figures(accounts, run_lines), run_lines=run_lines,
        chain_svg=chain_svg, scenario_name=scenario_name, slug=slug, colours=COLOURS,
        written=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        counts={"all": len(accounts), "failed": len(failed),
                "passed": sum(a.outcome == "passed" for a in accounts),
                "skipped": sum(a.outcome == "skipped" for a in accounts)})


def write_report(path: Path, accounts: Sequence[ScenarioAccount],
                 run_lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(accounts, run_lines), encoding="utf-8")
