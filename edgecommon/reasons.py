"""The reason an operator gives for an action: required, one line, bounded."""

from edgecommon.errors import InvalidArgument

MAX_REASON = 500


def check_reason(text: str) -> str:
    """The trimmed reason, or InvalidArgument saying what a reason must be."""
    if not text.strip():
        raise InvalidArgument("a reason is required: say why (--reason TEXT)")
    if "\n" in text or "\r" in text or len(text) > MAX_REASON:
        raise InvalidArgument(f"the reason must be one line of at most {MAX_REASON} characters")
    return text.strip()
