"""``drover chaos``: faults on a seeded schedule against a ``drover up`` lab, a recorded history, and a
checker of the invariants over that history (schedule and checker are pure; the I/O is in ``inject``,
``probe`` and ``runner``)."""
