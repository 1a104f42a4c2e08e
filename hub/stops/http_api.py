"""The hub's HTTP status API: GET /v1/autonomy/status, as the autonomy runbook expects.

    GET /v1/autonomy/status            {"autonomy_enabled": bool, "source": str}
    GET /v1/autonomy/status?node=ID    the same plus that node's effective state

Every request needs `Authorization: Bearer <token>`; the token is read from
[http].token_file (never logged) and compared in constant time. Missing or wrong
token: 401. The token acts as operator [http].token_operator, which RBAC must allow
autonomy.read (403 otherwise; the gate audits denials). A `node` that is empty or not a
valid node id: 400. Unknown node: 404.
"""

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edgecommon.errors import ConfigError, EdgeError, InvalidArgument, NotFound, PermissionDenied
from edgecommon.identity import name_problem
from edgecommon.scope import parse_scope
from hub.rbac.gate import Gate, GateCall
from hub.stops.autonomy import FleetSwitch
from hub.stops.estop import EstopManager

log = logging.getLogger("edge-hub.http")


@dataclass(frozen=True)
class HttpAuth:
    token: bytes
    operator: str
    gate: Gate


AUTH_KEY = web.AppKey("auth", HttpAuth)
SWITCH_KEY = web.AppKey("switch", FleetSwitch)
ESTOPS_KEY = web.AppKey("estops", EstopManager)


def read_token(path: Path) -> bytes:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError([f"[http].token_file {path} cannot be read: {exc.strerror}"]) from None
    if len(token) < 16:
        raise ConfigError([f"[http].token_file {path} holds a token shorter than 16 characters"])
    return token.encode()


def _authorized(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), request.app[AUTH_KEY].token)


async def _admit(request: web.Request, node_id: str | None) -> web.Response | None:
    auth = request.app[AUTH_KEY]
    call = GateCall(
        operator=auth.operator,
        permission="autonomy.read",
        target=f"node:{node_id}" if node_id else "fleet",
        action="autonomy.read",
        request_id=auth.gate.request_id(request.headers.get("X-Request-Id", "")),
    )
    try:
        await auth.gate.admit(call)
    except PermissionDenied as exc:
        return web.json_response({"error": str(exc)}, status=403)
    except InvalidArgument as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except EdgeError as exc:
        return web.json_response({"error": str(exc)}, status=503)
    return None


async def autonomy_status(request: web.Request) -> web.Response:
    if not _authorized(request):
        return web.json_response(
            {"error": "missing or invalid bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="edge-hub"'},
        )
    node_id = request.query.get("node")
    if node_id is not None and (problem := name_problem("node id", node_id)):
        return web.json_response(
            {"error": f"query parameter node: {problem}; omit it for the fleet's status"},
            status=400,
        )
    refused = await _admit(request, node_id)
    if refused is not None:
        return refused
    switch = request.app[SWITCH_KEY]
    body: dict[str, object] = {
        "autonomy_enabled": switch.reading.enabled,
        "source": switch.reading.source,
    }
    if node_id is None:
        return web.json_response(body)
    try:
        report = switch.report(node_id)
    except NotFound as exc:
        return web.json_response({"error": str(exc)}, status=404)
    node = report.nodes[0]
    stops = [
        s.scope
        for s in request.app[ESTOPS_KEY].active()
        if parse_scope(s.scope).applies_to(node.node_id, node.group)
    ]
    body["node"] = {
        "node_id": node.node_id,
        "group": node.group,
        "state": node.state,
        "autonomy_enabled": node.effective if node.state == "online" else None,
        "node_switch": {
            "autonomy_enabled": node.node_switch_enabled,
            "source": node.node_switch_source,
        }
        if node.state == "online"
        else None,
        "fleet_switch_applied": node.applied,
        "emergency_stops": stops,
    }
    return web.json_response(body)


HTTP_GRACE_S = 2.0


async def start_http(
    listen: str, auth: HttpAuth, switch: FleetSwitch, estops: EstopManager
) -> web.AppRunner:
    app = web.Application()
    app[AUTH_KEY] = auth
    app[SWITCH_KEY] = switch
    app[ESTOPS_KEY] = estops
    app.router.add_get("/v1/autonomy/status", autonomy_status)
    # Requests still in flight when the hub stops get this long (aiohttp's default is 60 s).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_GRACE_S)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    await site.start()
    return runner
