"""Agent-to-agent gossip: SWIM membership and ready-endpoint dissemination over UDP.

``GossipNode`` (node.py) is the asyncio edge; ``state.py`` holds the pure merge and suspicion rules;
``codec.py`` the authenticated, size-bounded msgpack datagrams.
"""

from drover.agent.gossip.config import GossipConfig
from drover.agent.gossip.node import GossipNode
from drover.agent.gossip.state import Endpoint, EndpointEntry, Member, Status

__all__ = ["Endpoint", "EndpointEntry", "GossipConfig", "GossipNode", "Member", "Status"]
