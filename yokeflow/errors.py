"""Errors a person can hit from the CLI: one clear line and a non-zero exit code."""


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
