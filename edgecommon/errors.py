"""Errors shared by the hub, the agent and edgectl.

    EdgeError                      expected failure with a one-line operator message
    ├── ConfigError                a config file or environment override is invalid
    ├── CredentialError            a key, certificate or bundle on disk is missing or corrupt
    └── TokenError                 a join token is malformed, unknown, used or expired

Each carries a message that names what is wrong and how to fix it. Anything that is
not an EdgeError is a bug and is logged with its traceback.
"""


class EdgeError(Exception):
    """An expected failure whose message is shown to the operator as is."""


class ConfigError(EdgeError):
    """Invalid configuration; the message names file, key and what was expected."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class CredentialError(EdgeError):
    """A key, certificate or trust bundle on disk cannot be used."""


class TokenError(EdgeError):
    """A join token cannot be used."""
