"""The exit codes of edgectl and of edge-hub's admin commands (documented in docs/edgectl.md),
and the one mapping from the error tree (edgecommon/errors.py) to them."""

from edgecommon import errors

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
DENIED = 4
PARTIAL = 5


def exit_code(exc: errors.EdgeError) -> int:
    if isinstance(exc, errors.Unreachable):
        return UNREACHABLE
    if isinstance(exc, errors.Unauthenticated | errors.PermissionDenied):
        return DENIED
    if isinstance(exc, errors.InvalidArgument | errors.ConfigError):
        return USAGE
    return FAILED
