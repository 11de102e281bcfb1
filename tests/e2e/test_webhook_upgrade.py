"""The repository's entry to the upgrade scenario shipped in the package
(crossfed/suite/test_upgrade.py): collected here by `python3 -m pytest`, deselected unless
--upgrade-webhooks-to is given; not a copy."""

from crossfed.suite.test_upgrade import *  # noqa: F403
