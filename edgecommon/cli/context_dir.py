"""An operator's context directory: context.json (hub and enrollment addresses, operator
name, the dev fleet's local agents) beside the operator credential (operator.key 0600,
operator.crt, ca.crt).

`edge-hub bootstrap-operator` writes the first one on the hub host, `edgectl login` and
`edgectl dev up` write others, edgectl reads them (edgectl/context.py says which one it
uses). The format is the contract between them, so it lives here. The private key is
generated where the directory is written and never leaves it (INV-PKI-01).
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecommon import pki
from edgecommon.errors import CredentialError, InvalidArgument


@dataclass
class Context:
    directory: Path
    hub: str = ""
    enroll_address: str = ""
    operator: str = ""
    agents: dict[str, str] = field(default_factory=dict)
    # AUTONOMY_OPERATOR, sent with every hub call: the hub refuses it unless it matches
    # the credential. Never saved.
    claimed_operator: str = ""

    @property
    def key_path(self) -> Path:
        return self.directory / "operator.key"

    @property
    def cert_path(self) -> Path:
        return self.directory / "operator.crt"

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def file(self) -> Path:
        return self.directory / "context.json"

    def save(self) -> None:
        data = asdict(self)
        data.pop("directory")
        data.pop("claimed_operator")
        pki.atomic_write(
            self.file, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), 0o600
        )

    @classmethod
    def load(cls, directory: Path) -> "Context":
        try:
            data = json.loads((directory / "context.json").read_text())
            return cls(
                directory=directory,
                hub=str(data.get("hub", "")),
                enroll_address=str(data.get("enroll_address", "")),
                operator=str(data.get("operator", "")),
                agents=dict(data.get("agents", {})),
            )
        except FileNotFoundError:
            return cls(directory=directory)
        except (OSError, ValueError, AttributeError) as exc:
            raise CredentialError(
                f"context file {directory / 'context.json'} is unreadable ({exc}); fix or remove it"
            ) from None


def refuse_overwrite(context: Context, force: bool) -> None:
    if context.key_path.exists() and not force:
        raise InvalidArgument(
            f"{context.key_path} already exists; pass --force to replace that credential"
        )


def write_operator_credential(
    directory: Path,
    hub: str,
    enroll_address: str,
    name: str,
    key: pki.PrivateKey,
    cert_pem: bytes,
    bundle_pem: bytes,
) -> Context:
    """Write the credential and record hub, enrollment address and operator in the
    directory's context.json (keeping what else it holds, such as a dev fleet's agents)."""
    context = Context.load(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki.atomic_write(context.ca_path, bundle_pem, 0o644)
    pki.atomic_write(context.cert_path, cert_pem, 0o644)
    pki.write_private_key(context.key_path, key)
    context.hub, context.enroll_address, context.operator = hub, enroll_address, name
    context.save()
    return context
