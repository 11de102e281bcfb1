# The crossfed plugin itself is registered through its pytest11 entry point (pyproject.toml);
# this file makes the repository's `fixtures` package importable for the tests and registers
# its shared fixtures.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["fixtures.teardown"]
