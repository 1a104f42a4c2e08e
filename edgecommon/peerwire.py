"""What both ends of the Peer service agree on: message size, client options, and the
metadata naming the operator the hub appends for."""

from edgecommon import grpcopts

MAX_PEER_MESSAGE_BYTES = 4 * 1024 * 1024
# Sent by the hub with an append: the operator it authorized (RBAC) and audited.
ON_BEHALF_OF = "autonomy-on-behalf-of"


def peer_options(node: str) -> list[tuple[str, int | str]]:
    """Client options for a peer: its certificate must name `node` (the CN of fleet
    certificates is the node id)."""
    return [
        *grpcopts.client_options(private_connection=True, max_message_bytes=MAX_PEER_MESSAGE_BYTES),
        ("grpc.ssl_target_name_override", node),
    ]
