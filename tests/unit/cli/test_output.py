"""Table rendering of the client commands."""

from __future__ import annotations

import time

from drover.cli import output
from drover.cli.commands_get import containers_table, nodes_table, services_table


def test_table_aligns_columns_and_upper_cases_headers() -> None:
    text = output.table(["name", "image"], [["web", "busybox"], ["a-longer-name", None]])
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "IMAGE"]
    # every column starts at the same offset on every line
    col = lines[0].index("IMAGE")
    assert lines[1][col:].startswith("busybox")
    assert lines[2][col:] == "-"
    assert all(line == line.rstrip() for line in lines)


def test_cells() -> None:
    assert output.cell(None) == "-"
    assert output.cell(True) == "true"
    assert output.cell(2.0) == "2"
    assert output.cell("two\nlines") == "two lines"


def test_services_table() -> None:
    rows = [
        {"name": "web", "image": "busybox", "revision": 2, "replicas": 3, "running": 3, "ready": 2, "updated": 1,
         "status": "progressing"},
    ]
    lines = services_table(rows, wide=False).splitlines()
    assert lines[0].split() == ["NAME", "IMAGE", "REVISION", "READY", "STATUS"]
    assert lines[1].split() == ["web", "busybox", "2", "2/3", "progressing"]
    wide = services_table(rows, wide=True).splitlines()
    assert wide[0].split()[:7] == ["NAME", "IMAGE", "REVISION", "READY", "STATUS", "RUNNING", "UPDATED"]
    assert wide[1].split()[5:7] == ["3", "1/3"]


def test_containers_table() -> None:
    rows = [
        {"id": "abc123", "name": "drover-web-abc123", "service": "web", "node": "n1", "revision": 1,
         "state": "running", "ready": True, "restarts": 0, "host_port": 32768, "ports": {"http": 32768}},
        {"id": "def456", "name": "drover-web-def456", "service": "web", "node": "n2", "revision": 1,
         "state": "pending", "ready": False, "restarts": 2, "host_port": None, "ports": {}},
    ]
    lines = containers_table(rows, wide=False).splitlines()
    assert lines[0].split() == ["NAME", "SERVICE", "NODE", "REVISION", "STATE", "READY", "RESTARTS", "PORT"]
    assert lines[1].split() == ["drover-web-abc123", "web", "n1", "1", "running", "yes", "0", "32768"]
    assert lines[2].split() == ["drover-web-def456", "web", "n2", "1", "pending", "no", "2", "-"]
    wide = containers_table(rows, wide=True).splitlines()
    assert wide[0].split()[0] == "ID"
    assert "http:32768" in wide[1]


def test_nodes_table() -> None:
    rows = [
        {"name": "n1", "status": "ready", "address": "127.0.0.1", "labels": {"zone": "a"},
         "capacity": {"cpu": 2.0, "memory": 4 << 30}, "allocated": {"cpu": 0.25, "memory": 64 << 20},
         "containers": 3, "last_heartbeat": output.iso(time.time() - 2)},
    ]
    lines = nodes_table(rows, wide=False).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ADDRESS", "CPU", "MEMORY", "CONTAINERS", "HEARTBEAT"]
    cells = lines[1].split()
    assert cells[:6] == ["n1", "ready", "127.0.0.1", "250m/2", "64Mi/4Gi", "3"]
    assert cells[6] in ("1s", "2s", "3s")
    assert "zone=a" in nodes_table(rows, wide=True)


def test_age_and_timestamps() -> None:
    now = 1_700_000_000.0
    assert output.timestamp("2023-11-14T22:13:20.000Z") == now
    assert output.timestamp(now) == now
    assert output.timestamp(None) is None
    assert output.age(now - 5, now) == "5s"
    assert output.age(now - 600, now) == "10m"
    assert output.age(now - 3 * 3600, now) == "3h"
    assert output.age(now - 3 * 86400, now) == "3d"
    assert output.age(None, now) == "-"


def test_memory_is_short() -> None:
    assert output.memory(64 << 20) == "64Mi"
    assert output.memory(16_000_000_000) == "14.9Gi"
    assert output.memory(0) == "0"
