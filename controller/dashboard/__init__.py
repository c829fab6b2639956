"""The controller's read-only web dashboard (``drover controller --ui-port``, ``drover up``)."""

from drover.controller.dashboard.server import Dashboard

__all__ = ["Dashboard"]
