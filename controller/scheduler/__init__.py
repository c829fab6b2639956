"""The pure scheduler: filters, scores and placement of replicas onto nodes.

No I/O, no wall clock, no global randomness: callers pass a snapshot of the nodes and a
`random.Random` used only as the final tie-break.
"""

from drover.shared.constraints import Constraint, parse_constraint

from .model import NodeView, Placement, PlacementRequest, Plan
from .place import Placer, choose_victims, place, place_many

__all__ = [
    "Constraint",
    "NodeView",
    "Placement",
    "PlacementRequest",
    "Placer",
    "Plan",
    "choose_victims",
    "parse_constraint",
    "place",
    "place_many",
]
