"""Where the stand-ins may listen: loopback or a bridge of this host, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossfed import listen
from crossfed.environments.standins import LocalStandIns
from crossfed.listen import check_listen_host

pytestmark = [pytest.mark.local]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_is_accepted(host: str) -> None:
    check_listen_host(host)


@pytest.mark.parametrize(("host", "reason"), [
    ("0.0.0.0", "every interface"), ("::", "every interface"),
    ("192.0.2.10", "neither loopback nor the address of a bridge"),
    ("stand-ins.example", "not an IP address"),
])
def test_others_are_refused_with_the_reason_and_the_fix(host: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        check_listen_host(host)
    assert "listen on 127.0.0.1" in str(refused.value)


def _interface_with_ipv4() -> tuple[str, str]:
    for path in sorted(Path("/sys/class/net").iterdir()):
        address = listen._ipv4_of(path.name)
        if path.name != "lo" and address and not (path / "bridge").exists():
            return path.name, address
    pytest.skip("no non-loopback, non-bridge interface with an IPv4 address here")


def test_an_address_of_this_host_is_accepted_only_on_a_bridge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name, address = _interface_with_ipv4()
    with pytest.raises(ValueError, match="neither loopback nor"):
        check_listen_host(address)  # on this host, but not a bridge: pods are not there
    (tmp_path / name / "bridge").mkdir(parents=True)  # the same interface, seen as a bridge
    monkeypatch.setattr(listen, "SYS_NET", tmp_path)
    assert listen.bridge_addresses()[address] == name
    check_listen_host(address)


def test_the_stand_ins_refuse_to_start_on_a_wildcard(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every interface"):
        LocalStandIns.start(tmp_path / "clouds", host="0.0.0.0")
    assert not (tmp_path / "clouds").exists(), "something was started before the check"
