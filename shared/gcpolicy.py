"""Garbage-collector settings for daemons that hold big, long-lived state.

A controller at 10,000 replicas holds a few million objects (records, dicts, lists) that live as long as the
process. CPython's cyclic collector walks all of them in every full (generation 2) collection: measured
here, 0.2-0.8 s each, every few seconds under load — long enough for a 2 s leader lease to lapse. These
objects are freed by reference counting when replaced (records are acyclic), so the cyclic collector has
nothing to find among them:

- ``gc.freeze()`` moves everything alive into the permanent generation, which collections skip; it is
  re-done periodically so that state built since (new records) is skipped too;
- a larger generation-0 threshold makes collections rarer (allocation-heavy bursts such as decoding a
  thousand heartbeats cost one collection instead of dozens).

Cycles among frozen objects would no longer be collected; they are rare here (and bounded by how much is
frozen), which is the trade-off Instagram and others make for big Python services.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def calm_gc() -> None:
    """Raise the thresholds once and freeze what is alive now; call again to freeze newer state."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 < GEN0_THRESHOLD:
        gc.set_threshold(GEN0_THRESHOLD, max(gen1, 20), max(gen2, 20))
    gc.freeze()
