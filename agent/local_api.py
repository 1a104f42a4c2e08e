"""The agent's local API on a Unix socket: what edgectl and workloads on the node ask.

Access is the socket's file permissions (mode [agent].socket_mode, group of the
directory); there is no TLS on a local socket.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.credentials import NodeCredentials
from agent.status import LinkStatus
from edgecommon import grpcopts, pki
from edgecommon.pb import agent_pb2, agent_pb2_grpc
from edgecommon.version import GRPC_VERSION, PRODUCT_VERSION, PYTHON_VERSION


@dataclass
class NodeFacts:
    """What the local API reports; credentials appear once enrollment is done."""

    status: LinkStatus
    state_dir: Path
    started_unix: float
    credentials: NodeCredentials | None = None


class AgentLocalService(agent_pb2_grpc.AgentLocalServicer):
    def __init__(self, facts: NodeFacts) -> None:
        self.facts = facts

    async def Status(
        self, request: agent_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentStatus:
        facts, status = self.facts, self.facts.status
        answer = agent_pb2.AgentStatus(
            pid=os.getpid(),
            agent_version=PRODUCT_VERSION,
            python_version=PYTHON_VERSION,
            grpc_version=GRPC_VERSION,
            hub_address=status.hub_address,
            hub_state=status.state.value,
            hub_state_since_unix=status.since_unix,
            last_error=status.last_error,
            started_unix=facts.started_unix,
            next_attempt_unix=status.next_attempt_unix,
            heartbeats_sent=status.heartbeats_sent,
            state_dir=str(facts.state_dir),
        )
        if facts.credentials is not None:
            answer.node_id = facts.credentials.identity.name
            answer.group = facts.credentials.identity.group
            answer.cert_expires_unix = facts.credentials.cert.not_valid_after_utc.timestamp()
            answer.cert_serial = pki.serial_hex(facts.credentials.cert)
        return answer


async def start_local_server(path: Path, mode: int, facts: NodeFacts) -> grpc.aio.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a socket left by a previous run
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES),
            ("grpc.max_send_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES),
        ]
    )
    agent_pb2_grpc.add_AgentLocalServicer_to_server(AgentLocalService(facts), server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    path.chmod(mode)
    return server
