"""The Enroll call, shared by the agent and `edgectl login`: TLS that trusts only the
CA pinned in the join token, a CSR for the token's subject, a deadline."""

import grpc

from edgecommon import grpcopts, pki, tokens
from edgecommon.pb import link_pb2, link_pb2_grpc
from edgecommon.rpc import raise_from_rpc
from edgecommon.version import PRODUCT_VERSION


async def request_certificate(
    target: str, join: tokens.JoinToken, key: pki.PrivateKey, timeout_s: float
) -> link_pb2.EnrollResponse:
    """One Enroll call over TLS that trusts only the CA pinned in the token."""
    creds = grpc.ssl_channel_credentials(root_certificates=pki.pem(join.ca))
    csr = pki.build_csr(key, join.subject, join.trust_domain)
    async with grpc.aio.secure_channel(
        target, creds, options=grpcopts.client_options(private_connection=True)
    ) as channel:
        stub = link_pb2_grpc.LinkStub(channel)
        try:
            return await stub.Enroll(
                link_pb2.EnrollRequest(
                    token=join.encode(), csr_pem=csr, agent_version=PRODUCT_VERSION
                ),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as err:
            raise_from_rpc(err, f"the hub's enrollment address {target}")
