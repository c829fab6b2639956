"""Security material: JWTs, credentials files, certificates, role permissions, server configs."""

from __future__ import annotations

import base64
import json
import ssl
import stat
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drover.shared import security_jwt as sj
from drover.shared import security_pki as pki
from drover.shared import security_roles as roles
from drover.shared.security import SecurityDir, ServerSpec, connect_options, load_credentials
from drover.shared.subjects import Names, fleet_prefix


def _verify(token: str) -> dict[str, object]:
    """Check the signature the way nats-server does: ed25519 over ``header.payload`` by ``iss``."""
    head, payload, sig = token.split(".")
    claims = sj.decode_unverified(token)
    raw = base64.b32decode(str(claims["iss"]).encode())[1:-2]  # prefix byte, 32-byte key, crc16
    nacl.signing.VerifyKey(raw).verify((head + "." + payload).encode(), sj._unb64(sig))  # raises if bad
    return claims


def test_user_jwt_is_signed_by_the_account_and_carries_permissions() -> None:
    account = sj.new_seed("account")
    user = sj.new_seed("user")
    perms = roles.agent("c1", "n1")
    token = sj.user_jwt(account, sj.public_key(user), name="agent n1", perms=perms)
    claims = _verify(token)
    assert claims["iss"] == sj.public_key(account) and claims["sub"] == sj.public_key(user)
    nats = claims["nats"]
    assert isinstance(nats, dict) and nats["type"] == "user" and nats["version"] == 2
    assert "drover.c1.hb.n1" in nats["pub"]["allow"]


def test_operator_and_account_chain() -> None:
    op, acc = sj.new_seed("operator"), sj.new_seed("account")
    assert sj.public_key(op).startswith("O") and sj.public_key(acc).startswith("A")
    claims = _verify(sj.account_jwt(op, acc, name="DROVER", jetstream=True))
    assert claims["iss"] == sj.public_key(op)
    assert claims["nats"]["limits"]["disk_storage"] == -1  # type: ignore[index]
    assert _verify(sj.operator_jwt(op, name="o", system_account=sj.public_key(acc)))["sub"] == sj.public_key(op)


def test_credentials_file_and_seed_file_round_trip(tmp_path: Path) -> None:
    seed = sj.new_seed("user")
    text = sj.creds_text("aaa.bbb.ccc", seed)
    loaded = sj.parse_credentials(text)
    assert loaded.jwt == "aaa.bbb.ccc" and loaded.seed == seed
    seed_file = tmp_path / "n.seed"
    seed_file.write_bytes(seed + b"\n")
    assert load_credentials(str(seed_file)).jwt is None
    assert "nkeys_seed" in connect_options(str(seed_file), None)
    with pytest.raises(sj.CredentialsError):
        sj.parse_credentials("hello")
    with pytest.raises(sj.CredentialsError):
        load_credentials(str(tmp_path / "missing.creds"))


def test_security_dir_is_made_once_with_secret_files_private(tmp_path: Path) -> None:
    sec = SecurityDir(tmp_path / "s").ensure(["127.0.0.1"])
    first = sec.ca.read_bytes(), sec.seed("account"), sec.admin_creds.read_text()
    for secret in (sec.ca_key, sec.server_key, sec.admin_creds, sec.path / "account.seed"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    again = SecurityDir(tmp_path / "s").ensure(["127.0.0.1"])
    assert (again.ca.read_bytes(), again.seed("account"), again.admin_creds.read_text()) == first
    # A new host re-issues the server certificate only, under the same CA.
    SecurityDir(tmp_path / "s").ensure(["10.0.0.5", "nats.example"])
    hosts = pki.cert_hosts(sec.server_cert.read_bytes())
    assert {"127.0.0.1", "10.0.0.5", "nats.example"} <= set(hosts)
    assert sec.ca.read_bytes() == first[0]
    ctx = ssl.create_default_context(cafile=str(sec.ca))
    ctx.load_verify_locations(cafile=str(sec.ca))  # a valid PEM CA


def test_server_configs_for_three_servers_have_tls_routes(tmp_path: Path) -> None:
    sec = SecurityDir(tmp_path / "s").ensure()
    specs = [ServerSpec(f"s{i}", "127.0.0.1", 4222 + i, 6222 + i) for i in range(3)]
    confs = sec.server_configs(specs, [tmp_path / f"js{i}" for i in range(3)])
    assert len(confs) == 3
    for i, conf in enumerate(confs):
        assert f"port: {4222 + i}" in conf and "resolver: MEMORY" in conf and "verify: true" in conf
        routes = [f"nats-route://127.0.0.1:{6222 + j}" for j in range(3) if j != i]
        assert all(r in conf for r in routes) and f"nats-route://127.0.0.1:{6222 + i}" not in conf
    single = sec.server_configs(specs[:1], [tmp_path / "js"])[0]
    assert "cluster {" not in single and "tls {" in single


def test_roles_grant_least_privilege() -> None:
    n = Names("c1")
    agent = roles.agent("c1", "n1")
    assert agent.pub is not None and agent.sub is not None
    assert n.heartbeat("n1") in agent.pub and n.heartbeat("n2") not in agent.pub
    assert f"$KV.{n.nodes_bucket}.n1" in agent.pub
    assert not any(p.startswith(f"$KV.{b}") for p in agent.pub for b in (n.services_bucket, n.assignments_bucket))
    assert not any("STREAM.DELETE" in p or "STREAM.PURGE" in p or p == "$JS.API.>" for p in agent.pub)
    client = roles.client("c1", read_only=False)
    assert client.pub is not None and n.api("*") in client.pub
    assert not any(n.config_bucket in p for p in client.pub)  # no gossip secret for clients
    ro = roles.client("c1", read_only=True)
    assert ro.pub is not None and n.api("get_services") in ro.pub
    assert n.api("apply") not in ro.pub and n.api("scale") not in ro.pub and n.api("*") not in ro.pub
    fleet = roles.agent("c1", "P-*")
    assert fleet.pub is not None and n.heartbeat("*") not in fleet.pub and n.fleet("P", "hb", "*") in fleet.pub
    assert roles.for_role("admin", "c1").pub is None
    with pytest.raises(ValueError):
        roles.for_role("agent", "c1")
    with pytest.raises(ValueError):
        roles.for_role("root", "c1")


@given(st.text(min_size=1, max_size=40))
def test_heartbeat_node_comes_from_the_subject(node: str) -> None:
    n = Names("c1")
    got = n.heartbeat_node(f"drover.c1.hb.{node}")
    assert got == (node if "." not in node else None)
    assert n.heartbeat_node(f"drover.c2.hb.{node}") is None


def test_jwt_header_is_the_nats_one() -> None:
    token = sj.encode({"sub": "x"}, sj.new_seed("account"))
    assert json.loads(sj._unb64(token.split(".")[0])) == {"typ": "JWT", "alg": "ed25519-nkey"}


def test_only_concrete_inboxes_are_reply_subjects() -> None:
    from drover.shared.subjects import is_inbox

    assert is_inbox("_INBOX.abc") and is_inbox("_INBOX.abc.def")
    for bad in (None, "", "_INBOX.", "_INBOX.>", "_INBOX.*", "drover.c.hb.n2", "_INBOX.a b", "_INBOX..a", "x_INBOX.a"):
        assert not is_inbox(bad), bad


def test_agent_reads_of_the_assign_bucket_name_its_own_key() -> None:
    n = Names("c1")
    agent = roles.agent("c1", "n1")
    assert agent.pub is not None
    on_assign = sorted(p for p in agent.pub if f"KV_{n.assignments_bucket}" in p)
    assert on_assign == sorted([
        f"$JS.API.STREAM.INFO.KV_{n.assignments_bucket}",
        f"$JS.API.DIRECT.GET.KV_{n.assignments_bucket}.$KV.{n.assignments_bucket}.n1",
        f"$JS.API.CONSUMER.CREATE.KV_{n.assignments_bucket}.*.$KV.{n.assignments_bucket}.n1",
    ])


def test_revocation_is_signed_into_the_account_jwt(tmp_path: Path) -> None:
    sec = SecurityDir(tmp_path / "s").ensure(["127.0.0.1"])
    assert sec.revocations() == {}
    before = _verify(sec.jwt("account"))
    assert "revocations" not in before["nats"]  # type: ignore[operator]
    user = sj.parse_credentials(sec.issue("client", cluster="c1")).public_key
    token = sec.revoke(user, name="alice", now=1_700_000_000)
    claims = _verify(token)
    assert claims["iss"] == sj.public_key(sec.seed("operator")) and claims["sub"] == sec.account_public
    assert claims["nats"]["revocations"] == {user: 1_700_000_000}  # type: ignore[index]
    assert sec.jwt("account") == token  # the config's preload carries it from now on
    assert token in sec.security_config()
    # Revoking again keeps the first time; another user is added.
    other = sj.parse_credentials(sec.issue("agent", cluster="c1", node="n1")).public_key
    sec.revoke(user, now=1_800_000_000)
    sec.revoke(other, now=1_800_000_001)
    assert {r.user: r.time for r in sec.revocations().values()} == {user: 1_700_000_000, other: 1_800_000_001}
    assert sec.revocations()[user].name == "alice"
    assert _verify(sec.jwt("account"))["nats"]["revocations"] == {  # type: ignore[index]
        user: 1_700_000_000, other: 1_800_000_001,
    }


def test_fleet_subjects_bind_nodes_to_the_prefix_token() -> None:
    n = Names("c1")
    assert n.fleet("P", "hb", "P-17") == "drover.c1.fleet.P.hb.P-17"
    assert n.heartbeat_node("drover.c1.fleet.P.hb.P-17") == "P-17"
    assert n.heartbeat_node("drover.c1.hb.P-17") == "P-17"
    assert n.fleet_node("drover.c1.fleet.P.register.P-17", "register") == "P-17"
    # Another prefix's node, a node that merely starts with the letters, the prefix alone, other kinds.
    for subject in ("drover.c1.fleet.P.hb.Q-1", "drover.c1.fleet.P.hb.PX-1", "drover.c1.fleet.P.hb.P-",
                    "drover.c1.fleet.P.hb.P", "drover.c1.fleet.P.register.P-1", "drover.c2.fleet.P.hb.P-1",
                    "drover.c1.fleet.P.hb.P-1.x", "drover.c1.fleet..hb.-1"):
        assert n.heartbeat_node(subject) is None, subject
    assert fleet_prefix("P-*") == "P" and fleet_prefix("P*") == "P" and fleet_prefix("n1") is None
    assert fleet_prefix("*") is None


def test_fleet_credentials_speak_only_on_their_prefix_subjects() -> None:
    n = Names("c1")
    perms = roles.agent("c1", "P-*")
    assert perms.pub is not None and perms.sub is not None
    assert n.fleet("P", "hb", "*") in perms.pub and n.fleet("P", "register", "*") in perms.pub
    # Nothing on the per-node subjects (a '*' there would be any node), no secrets, no gossip key.
    assert not any(p.startswith(n.heartbeat_prefix) or p.startswith(f"$KV.{n.nodes_bucket}") for p in perms.pub)
    assert not any("secrets" in p for p in perms.pub)
    assert not any(f"DIRECT.GET.KV_{n.config_bucket}" in p or f"CONSUMER.CREATE.KV_{n.config_bucket}" in p
                   for p in perms.pub)
    assert perms.sub == [n.fleet("P", "die", "*"), roles.INBOX]
