"""One request of a CLI command to the cluster's controllers, and the cluster it goes to, without click or
the NATS client (both load only when needed): the click commands and the fast ``drover apply`` entry
(``entry``) share them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drover.cli.context import ContextError, Target, resolve
from drover.cli.errors import EXIT_INVALID, CliError

if TYPE_CHECKING:
    from drover.cli.reply import Reply

REQUEST_TIMEOUT = 10.0  # as client.REQUEST_TIMEOUT (not imported: that module loads asyncio)


def checked_target(
    nats_opt: str | None = None, cluster_opt: str | None = None, context_opt: str | None = None, *,
    creds_opt: str | None = None, ca_opt: str | None = None,
) -> Target:
    """The cluster the options, ``DROVER_*`` and the context file name; a bad context or cluster name is
    bad input (exit 2)."""
    from drover.shared.subjects import check_cluster

    try:
        t = resolve(nats_opt, cluster_opt, context_opt, creds_opt=creds_opt, ca_opt=ca_opt)
    except ContextError as exc:
        raise CliError(str(exc), code=EXIT_INVALID) from None
    try:
        check_cluster(t.cluster)
    except ValueError as exc:
        raise CliError(str(exc), code=EXIT_INVALID) from None
    return t


def request(t: Target, verb: str, body: dict[str, Any], timeout: float) -> Reply:
    """The controller's reply to one request. The lean path (``quickreq``: a blocking socket, neither asyncio
    nor nats-py loaded) answers when everything goes well; otherwise the full client sends the same request
    (a write keeps its request id: the controllers do it once) and reports whatever went wrong, exactly as
    it always has."""
    from drover.cli import quickreq
    from drover.cli.reply import UNAVAILABLE, Reply
    from drover.shared import idempotency, wire
    from drover.shared.errors import WireError
    from drover.shared.subjects import Names

    if verb in idempotency.WRITE_VERBS and not body.get(idempotency.KEY):
        body = {**body, idempotency.KEY: idempotency.new_request_id()}
    try:
        data = quickreq.request(t.servers, Names(t.cluster).api(verb), wire.encode(body), creds=t.creds, ca=t.ca)
        reply = Reply.from_wire(data)
        if reply.code != UNAVAILABLE:  # else the full client asks again until a current controller answers
            return reply
    except (quickreq.Unavailable, WireError):
        pass

    from drover.cli.client import Client, run

    async def go(c: Client) -> Reply:
        return await c.request_raw(verb, body, timeout)

    return run(t, go)
