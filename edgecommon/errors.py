"""Errors shared by the hub, the agent and edgectl.

    EdgeError                  expected failure with a one-line operator message
    ├── ConfigError            a config file or environment override is invalid
    ├── CredentialError        a key, certificate or bundle on disk is missing or corrupt
    ├── StateError             a daemon's state file is damaged or lost; it will not start on it
    ├── InvalidArgument        a request field is wrong (INVALID_ARGUMENT)
    │   └── CsrRejected        a CSR the hub will not sign
    ├── NotFound               the named thing does not exist (NOT_FOUND)
    ├── Conflict               the request contradicts stored state (FAILED_PRECONDITION)
    ├── Unauthenticated        no or no valid credential (UNAUTHENTICATED)
    ├── PermissionDenied       a valid credential that may not do this (PERMISSION_DENIED)
    │   └── TokenError         a join token is unknown, used or expired
    ├── Overloaded             try again later (RESOURCE_EXHAUSTED)
    └── Unreachable            the other side cannot be reached (UNAVAILABLE)

Each carries a message that names what is wrong and how to fix it. Anything that is
not an EdgeError is a bug: logged with its traceback, answered as INTERNAL.
edgecommon.rpc maps these to gRPC status codes and back, in one place each way.
"""


class EdgeError(Exception):
    """An expected failure whose message is shown to the operator as is."""


class ConfigError(EdgeError):
    """Invalid configuration; each problem names file, key and what was expected."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class CredentialError(EdgeError):
    """A key, certificate or trust bundle on disk cannot be used."""


class StateError(EdgeError):
    """A daemon's state file is damaged, or missing while the rest of its state is there.
    The message names the file and the way out (restore a backup, or --reinitialize)."""


class InvalidArgument(EdgeError):
    """A request field is wrong."""


class CsrRejected(InvalidArgument):
    """A CSR the hub will not sign."""


class NotFound(EdgeError):
    """The named thing does not exist."""


class Conflict(EdgeError):
    """The request contradicts what is stored."""


class Unauthenticated(EdgeError):
    """No credential, or one the hub does not accept."""


class PermissionDenied(EdgeError):
    """A valid credential that may not do this."""


class TokenError(PermissionDenied):
    """A join token cannot be used."""


class Overloaded(EdgeError):
    """The service sheds load; retry later."""


class Unreachable(EdgeError):
    """The other side cannot be reached."""
