# The crossfed plugin itself is registered through its pytest11 entry point (pyproject.toml);
# this file makes the repository's `fixtures` package importable for the tests.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
