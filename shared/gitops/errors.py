"""The one error type of the git layer: a message a person can act on."""


class GitError(Exception):
    """A git operation that cannot proceed; the message names the repository/branch and the fix."""
