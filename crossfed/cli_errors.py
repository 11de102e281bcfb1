"""The CLI's one error type, shared by crossfed/cli.py and the subcommands split from it."""


class CliError(Exception):
    """A user error: printed as one line naming the problem and the fix, exit status 2."""
