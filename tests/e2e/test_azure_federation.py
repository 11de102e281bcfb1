"""The repository's entry to the Azure scenarios shipped in the package
(crossfed/suite/test_azure.py): the same tests and module marks, collected here by
`python3 -m pytest`; not a copy."""

from crossfed.suite.test_azure import *  # noqa: F403
