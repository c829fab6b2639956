"""``drover up`` helpers and the daemon commands' wiring (configs built from flags, clean exit)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drover.cli import lab, up
from drover.cli.main import cli


def test_agent_names_and_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "Box.example.org")
    assert up.agent_names(3) == [("box", "127.0.0.1"), ("box-2", "127.0.0.2"), ("box-3", "127.0.0.3")]
    assert up.agent_names(0) == []


def test_nats_argv(tmp_path: Path) -> None:
    [single] = lab.nats_nodes(1, 4300)
    fixed = lab.nats_server_argv("/bin/nats-server", tmp_path, single, [single])
    assert fixed == ["/bin/nats-server", "-a", "127.0.0.1", "-js", "-sd", str(tmp_path / "nats"), "-p", "4300"]
    assert lab.nats_nodes(1, 0)[0].port > 0
    secured = lab.nats_server_argv("/bin/nats-server", tmp_path, single, [single], tmp_path / "sec.conf")
    assert secured[:3] == ["/bin/nats-server", "-c", str(tmp_path / "sec.conf")]


def test_nats_cluster_argv_routes_to_the_peers(tmp_path: Path) -> None:
    nodes = lab.nats_nodes(3, 0)
    assert len({n.port for n in nodes} | {n.cluster_port for n in nodes}) == 6
    argv = lab.nats_server_argv("/bin/nats-server", tmp_path, nodes[1], nodes)
    routes = argv[argv.index("--routes") + 1].split(",")
    assert routes == [f"nats://127.0.0.1:{n.cluster_port}" for n in (nodes[0], nodes[2])]
    assert argv[argv.index("-n") + 1] == "nats-2" and "--cluster_name" in argv
    assert argv[argv.index("-sd") + 1] == str(tmp_path / "nats-2")


def test_lab_children_give_each_agent_its_own_nats_source(tmp_path: Path) -> None:
    opts = up.UpOptions(tmp_path, 0, 3, "lab", False, False, "docker", "warning", nats_servers=3, controllers=2)
    urls, children = up.lab_children(opts, "/bin/nats-server")
    assert len(urls.split(",")) == 3
    assert [c.kind for c in children] == ["nats"] * 3 + ["controller"] * 2 + ["agent"] * 3
    agents = [c for c in children if c.kind == "agent"]
    assert [c.info["nats_source"] for c in agents] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert all("--remove-on-stop" in c.argv and urls in c.argv for c in agents)


def test_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert up.port_in_use("127.0.0.1", s.getsockname()[1])
    assert not up.port_in_use("127.0.0.1", lab.free_port())


def test_controller_command_builds_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import drover.controller.main as controller_main

    seen: list[Any] = []

    async def fake_run(cfg: Any) -> None:
        seen.append(cfg)

    monkeypatch.setattr(controller_main, "run_controller", fake_run)
    monkeypatch.setattr("drover.shared.log.configure", lambda **_: None)
    result = CliRunner().invoke(
        cli,
        ["controller", "--nats", "127.0.0.1:4300", "--id", "c1", "--cluster", "lab", "--node-grace", "1500ms",
         "--metrics-port", "9100"],
    )
    assert result.exit_code == 0, result.output
    [cfg] = seen
    assert (cfg.nats_url, cfg.id, cfg.cluster, cfg.node_grace, cfg.metrics_port) == (
        "nats://127.0.0.1:4300", "c1", "lab", 1.5, 9100
    )


def test_agent_command_builds_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import drover.agent.main as agent_main

    seen: list[Any] = []

    async def fake_run(cfg: Any, **_: Any) -> None:
        seen.append(cfg)

    monkeypatch.setattr(agent_main, "run_agent", fake_run)
    monkeypatch.setattr("drover.shared.log.configure", lambda **_: None)
    monkeypatch.setenv("DROVER_NATS", "nats://10.0.0.1:4222")
    result = CliRunner().invoke(
        cli,
        ["agent", "--node", "n1", "--label", "zone=a", "--label", "disk=ssd", "--address", "127.0.0.2",
         "--driver", "sim", "--cpu", "500m", "--memory", "1Gi"],
    )
    assert result.exit_code == 0, result.output
    [cfg] = seen
    assert cfg.nats_url == "nats://10.0.0.1:4222"
    assert (cfg.node, cfg.address, cfg.driver, cfg.cpu, cfg.memory) == ("n1", "127.0.0.2", "sim", 0.5, 1 << 30)
    assert cfg.labels == {"zone": "a", "disk": "ssd"}


def test_agent_data_dir_default_and_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import drover.agent.main as agent_main

    seen: list[Any] = []

    async def fake_run(cfg: Any, **_: Any) -> None:
        seen.append(cfg)

    monkeypatch.setattr(agent_main, "run_agent", fake_run)
    monkeypatch.setattr("drover.shared.log.configure", lambda **_: None)
    monkeypatch.setenv("DROVER_NATS", "nats://10.0.0.1:4222")
    monkeypatch.setenv("DROVER_HOME", str(tmp_path / "home"))
    assert CliRunner().invoke(cli, ["agent", "--node", "n1", "--cluster", "lab", "--driver", "sim"]).exit_code == 0
    assert CliRunner().invoke(cli, ["agent", "--node", "n2", "--data-dir", str(tmp_path / "d")]).exit_code == 0
    assert [c.data_dir for c in seen] == [str(tmp_path / "home" / "agents" / "lab" / "n1"), str(tmp_path / "d")]


def test_daemon_failure_is_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import drover.controller.main as controller_main

    async def broken(cfg: Any) -> None:
        raise RuntimeError("nats-server too old")

    monkeypatch.setattr(controller_main, "run_controller", broken)
    monkeypatch.setattr("drover.shared.log.configure", lambda **_: None)
    result = CliRunner().invoke(cli, ["controller", "--nats", "nats://127.0.0.1:1"])
    assert result.exit_code == 1
    assert "error: controller stopped: nats-server too old" in result.stderr
