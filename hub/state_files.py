"""What the hub's state is made of, for the start-up check (edgecommon.sqlite_file).

The database holds the registry, tokens, certificates and revocations, stops, leases and
roles; the CA in <state_dir>/pki is created right after it on the first start. A CA
without its database is therefore a hub that lost its state, not a new one.
"""

from edgecommon.sqlite_file import StateLayout
from hub.config import HubConfig
from hub.pki.credentials import CredentialPaths


def state_layout(config: HubConfig) -> StateLayout:
    paths = CredentialPaths.under(config.hub.state_dir)
    words = f"the hub's CA ({paths.ca_key.parent})"
    return StateLayout(
        "edge-hub", (config.db_path,), ((paths.ca_key, words), (paths.ca_cert, words))
    )
