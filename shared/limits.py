"""Fixed limits on what a user (or anything with bus access) may hand drover.

They keep every input bounded: a manifest cannot make the CLI, the controller's event loop or the
scheduler do unbounded work, and every stored record stays well inside a NATS message. The CLI and the
controller check the same limits (the controller cannot trust that a request came through the CLI).
"""

from __future__ import annotations

__all__ = [
    "MAX_ASSIGNMENT_BYTES",
    "MAX_CPU",
    "MAX_DURATION",
    "MAX_IMAGE_LENGTH",
    "MAX_ITEMS",
    "MAX_MANIFEST_BYTES",
    "MAX_NESTING",
    "MAX_RECORD_BYTES",
    "MAX_REPLICAS",
    "MAX_SPEC_BYTES",
    "MAX_YAML_NODES",
    "NATS_MAX_PAYLOAD",
]

#: a manifest file (or stdin, or the documents of one apply request) in bytes
MAX_MANIFEST_BYTES = 1024 * 1024
#: ``replicas`` (and autoscale ``max``) per service
MAX_REPLICAS = 10_000
#: ports, volumes or files per service
MAX_ITEMS = 100
#: nesting of mappings and lists in a manifest (a real one nests about 6 deep)
MAX_NESTING = 64
#: YAML nodes of one source once aliases are expanded (a 1 MiB file without aliases has far fewer)
MAX_YAML_NODES = 1_000_000
#: the longest duration anything accepts, in seconds (a year): timers built from it stay representable
MAX_DURATION = 365 * 24 * 3600.0
#: the most cores a resource request may name
MAX_CPU = 100_000.0
#: a service record once encoded: its revision history keeps the newest revisions that fit (the current one and
#: the last good one always stay), far below one NATS message (1 MiB by default)
MAX_RECORD_BYTES = 512 * 1024
#: the payload limit drover's own nats-servers are configured with (``max_payload``; the server's default is
#: 1 MiB): a service record holds its current spec twice (as desired and in its history) and the last good one,
#: and a node's assignment holds each revision it runs once, so specs as big as a manifest file must fit
NATS_MAX_PAYLOAD = 8 * 1024 * 1024
#: a service's spec once encoded (JSON): whatever a manifest file within the 1 MiB limit can say (its JSON form
#: can be longer than its YAML); three of them in one record stay within ``NATS_MAX_PAYLOAD``
MAX_SPEC_BYTES = 2 * 1024 * 1024
#: an image reference (Docker's own limit on a name is 255 per component)
MAX_IMAGE_LENGTH = 1024
#: what placement lets one node's assignment grow to (its estimate, ``shared.assignsize``): the server's
#: max_payload less room for the KV message's own headers, so an assignment is never a write the server refuses
MAX_ASSIGNMENT_BYTES = NATS_MAX_PAYLOAD - 64 * 1024  # (``assignsize.assignment_limit``: the connected server's)
