"""INV-PKI-01 checks shared by tests: how a private key could show up in text."""

import base64
from pathlib import Path

from edgecommon import pki


def secret_needles(key_file: Path) -> list[str]:
    """Ways a private key's secret could leak into text: the first PEM body line (version,
    algorithm and the start of the secret) and the secret scalar in hex, base64 and
    base64url at every byte alignment. The rest of the PEM body also holds the *public*
    key, which certificates and join tokens carry legitimately, so it is not searched."""
    key = pki.load_private_key(key_file)
    numbers = key.private_numbers()  # type: ignore[union-attr]
    secret = numbers.private_value.to_bytes(32, "big") if hasattr(numbers, "private_value") else b""
    first = [line for line in key_file.read_text().splitlines() if "-----" not in line][:1]
    needles = [*first, secret.hex()] if secret else list(first)
    for shift in range(3):
        chunk = secret[shift:]
        whole = len(chunk) // 3 * 3
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            if whole:
                needles.append(encode(chunk[:whole]).decode())
    return needles
