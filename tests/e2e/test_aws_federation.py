"""The repository's entry to the AWS scenarios shipped in the package
(crossfed/suite/test_aws.py): the same tests and module marks, collected here by
`python3 -m pytest`; not a copy."""

from crossfed.suite.test_aws import *  # noqa: F403
