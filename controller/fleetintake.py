"""Registrations of a hollow fleet's nodes, written into the nodes bucket by the controllers.

A fleet's credentials (``drover credentials agent 'P-*'``) may publish only on subjects where its prefix is
a token of its own (``Names.fleet``): NATS permissions cannot say "keys starting with P-", so the fleet cannot
put ``$KV.<nodes>.P-17`` itself. It asks on ``drover.<c>.fleet.P.register.P-17`` instead; a controller (queue
group: one answers) checks that the node starts with the prefix the server authorised (``fleet_node``) and
that the registration names that node, then puts it. Heartbeats come the same way (``Names.heartbeat_node``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from drover.shared import wire
from drover.shared.errors import WireError
from drover.shared.models import NodeRegistration
from drover.shared.subjects import Names


class FleetRegistrations:
    def __init__(
        self, names: Names, nodes: KeyValue, *, on_bad: Callable[[], None],
        spawn: Callable[[str, Awaitable[None]], object], log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        """``spawn``: runs one request's work in its own task (``Supervisor.spawn``), so a fleet registering
        a thousand nodes at once waits for concurrent KV puts, not for one after another."""
        self.names = names
        self.nodes = nodes
        self.on_bad = on_bad
        self.spawn = spawn
        self.log = log

    async def on_request(self, msg: Msg) -> None:
        self.spawn("fleet-register", self._answer(msg))

    async def _answer(self, msg: Msg) -> None:
        reply: dict[str, Any]
        node = self.names.fleet_node(msg.subject, "register")
        try:
            if node is None:
                raise WireError(f"{msg.subject}: not a node of the fleet whose prefix the subject names")
            reg = NodeRegistration.from_wire(msg.data)
            if reg.name != node:
                raise WireError(f"registration of node {reg.name!r} on the subject of node {node!r}")
        except WireError as exc:
            self.on_bad()
            self.log.warning("bad fleet registration dropped", subject=msg.subject, error=str(exc))
            reply = {"ok": False, "error": str(exc)}
        else:
            try:
                await self.nodes.put(node, reg.to_wire())
                reply = {"ok": True}
            except Exception as exc:
                reply = {"ok": False, "error": f"cannot store the registration: {exc!r}"}
        if msg.reply:
            await msg.respond(wire.encode(reply))


__all__ = ["FleetRegistrations"]
