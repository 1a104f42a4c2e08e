"""A local workload (or operator) for tests: connects to an agent's socket as another user.

    python -m tests.local_client UID GID GROUPS SOCKET OP [ARGS...]

It imports everything it needs while still root, then drops to UID/GID with the
supplementary GROUPS (comma-separated gids, or '-' for none) and only then connects: the
agent sees these credentials through SO_PEERCRED / SO_PEERGROUPS exactly as it would see a
workload started by systemd as that user. (A `user=`/`preexec_fn` drop before exec cannot
be used here: the interpreter lives under a directory only root may read.)

Ops, each printing one JSON line per call ({"code", "details", "response"}):
    call SERVICE METHOD JSON        one unary call (SERVICE: AgentLocal | JournalLocal)
    stream-append KEY VALUE WAIT_S  one JournalLocal.AppendStream exchange, first waiting
                                    up to WAIT_S for the server to refuse the call
    hold ACTION N                   ask for N permits on one connection without watching
                                    them, print each answer, then wait for stdin to close
    edgectl ARGS...                 run edgectl in-process (prints its own output)
"""

import asyncio
import concurrent.futures.thread  # noqa: F401 (run_in_executor needs it after the drop)
import json
import os
import sys
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format

import edgectl.main
from edgecommon.pb import agent_pb2, agent_pb2_grpc, replication_pb2, replication_pb2_grpc
from edgectl.main import COMMAND_MODULES, build_parser

# edgectl imports its command modules on demand: load them all while the files are readable.
build_parser()
assert COMMAND_MODULES

STUBS: dict[str, tuple[Any, Any]] = {
    "AgentLocal": (agent_pb2_grpc.AgentLocalStub, agent_pb2),
    "JournalLocal": (replication_pb2_grpc.JournalLocalStub, replication_pb2),
}


def drop_to(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def emit(code: str, details: str = "", response: Any = None) -> None:
    print(json.dumps({"code": code, "details": details, "response": response}), flush=True)


def as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def call(socket: str, service: str, method: str, body: str) -> None:
    stub_cls, module = STUBS[service]
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = stub_cls(channel)
        rpc = getattr(stub, method)
        request_type = getattr(module, _request_type(service, method))
        request = json_format.Parse(body, request_type())
        try:
            if method.startswith("Watch"):
                async for item in rpc(request, timeout=2.0):
                    emit("OK", "", as_dict(item))
                    return
                emit("OK")
            else:
                emit("OK", "", as_dict(await rpc(request, timeout=5.0)))
        except grpc.aio.AioRpcError as err:
            emit(err.code().name, err.details() or "")


def _request_type(service: str, method: str) -> str:
    module = STUBS[service][1]
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    return str(descriptor.input_type.name)


async def stream_append(socket: str, key: str, value: str, wait_s: str) -> None:
    """One AppendStream exchange. It first waits (up to WAIT_S) for the server to end the
    call by itself: a refused call is answered at once, and writing into a call the server
    has already ended makes grpcio's asyncio client report INTERNAL instead of the server's
    status (grpc/grpc#36066)."""
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = replication_pb2_grpc.JournalLocalStub(channel)
        request = replication_pb2.AppendRequest(key=key, value=value.encode(), request_id=1)
        call = stub.AppendStream(timeout=10.0)
        first = asyncio.ensure_future(call.read())
        try:
            await asyncio.wait({first}, timeout=float(wait_s))
            if not first.done():
                await call.write(request)
                await call.done_writing()
            result = await first
            if result is not grpc.aio.EOF:
                emit("OK", "", as_dict(result))
        except grpc.aio.AioRpcError as err:
            emit(err.code().name, err.details() or "")


async def hold(socket: str, action: str, count: int) -> None:
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = agent_pb2_grpc.AgentLocalStub(channel)
        for i in range(count):
            try:
                decision = await stub.RequestPermit(
                    agent_pb2.PermitRequest(action=action, holder=f"w{i}"), timeout=5.0
                )
                emit("OK", "", as_dict(decision))
            except grpc.aio.AioRpcError as err:
                emit(err.code().name, err.details() or "")
        print("HOLDING", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: list[str]) -> int:
    uid, gid, groups, socket, op, *rest = argv
    drop_to(int(uid), int(gid), [] if groups == "-" else [int(g) for g in groups.split(",")])
    if op == "call":
        asyncio.run(call(socket, *rest))
    elif op == "stream-append":
        asyncio.run(stream_append(socket, *rest))
    elif op == "hold":
        asyncio.run(hold(socket, rest[0], int(rest[1])))
    elif op == "edgectl":
        return edgectl.main.main(["--socket", socket, *rest])
    else:
        print(f"unknown op {op}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
