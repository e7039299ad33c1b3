"""Broker accounts, sans-IO: hashes in mosquitto_passwd's own format, user-name rules, and
the password and ACL files (their effect on a real broker: tests/faults/test_broker_auth.py)."""

from __future__ import annotations

import base64
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import broker_accounts as ba


def test_hash_matches_mosquitto_passwd_for_the_same_salt(tmp_path):
    """mosquitto_passwd hashes a password; ours, with its salt, is the same line."""
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "tono-1", "s3cret-Pass"], check=True, timeout=30)
    username, hashed = path.read_text().strip().split(":", 1)
    salt = base64.b64decode(hashed.split("$")[3])
    assert username == "tono-1"
    assert ba.hash_password("s3cret-Pass", salt=salt) == hashed
    assert ba.password_file([ba.Account("tono-1", "device", hashed)]) == path.read_text()


def test_each_hash_has_its_own_salt_and_passwords_are_long():
    password = ba.new_password()
    assert len(password) >= 24 and ba.new_password() != password
    first, second = ba.hash_password(password), ba.hash_password(password)
    assert first != second and first.startswith(f"$7${ba.HASH_ITERATIONS}$")


@given(st.text(min_size=1, max_size=70))
def test_a_user_name_is_an_id_of_the_contract(name):
    allowed = ba.USERNAME.fullmatch(name) is not None and not name.startswith(ba.GATEWAY_PREFIX)
    try:
        assert ba.check_username(name) == name and allowed
    except ba.AccountError as error:
        assert not allowed and error.value == name and error.reason in {"INVALID", "RESERVED"}


@pytest.mark.parametrize("name", ["a/b", "a+b", "a#b", "a:b", "", "x" * 65, "AA:BB:CC:DD:EE:FF"])
def test_topic_characters_and_colons_are_refused(name):
    with pytest.raises(ba.AccountError) as refused:
        ba.check_username(name)
    assert refused.value.reason == "INVALID"


def test_gateway_names_are_reserved():
    assert ba.gateway_username("gw1") == "pmpgw-gw1"
    with pytest.raises(ba.AccountError) as refused:
        ba.check_username("pmpgw-gw1")
    assert refused.value.reason == "RESERVED"
    with pytest.raises(ba.AccountError):
        ba.gateway_username("a/b")


def test_only_devices_and_hubs_of_a_known_kind_connect():
    assert ba.connects("tono-1", "bp") and ba.connects("hub-1", "hub")
    assert not ba.connects("AA:BB:CC:DD:EE:FF", "glu") and not ba.connects("new-1", "unknown")


def test_acl_gives_the_gateways_accounts_their_topics_and_publishers_only_their_own_id():
    accounts = [ba.Account("tono-1", "device", "h1"), ba.Account("hub-1", "hub", "h2"),
                ba.Account("pmpgw-gw1", "gateway", "h3"), ba.Account("pmpgw-monitor", "monitor", "h4")]
    assert ba.acl_file(accounts).split("\n\n") == [
        "user pmpgw-gw1\ntopic readwrite pmp/v1/#\ntopic read $SYS/broker/#",
        "user pmpgw-monitor\ntopic read pmp/v1/gateway/#",
        "pattern write pmp/v1/dev/%u/m\npattern read pmp/v1/dev/%u/ack\n"
        "pattern write pmp/v1/hub/%u/gatt\npattern read pmp/v1/hub/%u/ack\n"]
    assert ba.password_file(accounts).splitlines() == ["tono-1:h1", "hub-1:h2", "pmpgw-gw1:h3", "pmpgw-monitor:h4"]


def test_the_acl_does_not_grow_with_the_fleet():
    """Mosquitto parses per-user ACL blocks in quadratic time; devices get patterns only."""
    own = [ba.Account("pmpgw-gw1", "gateway", "h")]
    fleet = [ba.Account(f"tono-{i}", "device", "h") for i in range(1000)]
    assert ba.acl_file(own + fleet) == ba.acl_file(own)
