"""Where the cloud stand-ins may listen: loopback, or a Linux bridge's address on this host.

The stand-ins hand out administrator credentials and accept tokens from anyone who can reach
them, so they listen only where the harness and its own pods are: loopback (127.0.0.0/8, ::1,
"localhost") for the process environment, or the address of a bridge interface on this host
(docker0, kind's br-<id>, cni0, crossfed's CI bridge) so that a kind cluster's pods can reach
them. A wildcard (0.0.0.0, ::) would expose them on every interface, and an address not on
this host cannot be bound at all: both are refused with the reason and the fix.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

SYS_NET = Path("/sys/class/net")
SIOCGIFADDR = 0x8915
IF_INET6 = Path("/proc/net/if_inet6")


def _ipv4_of(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR,
                                 struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def _ipv6_of(interface: str) -> set[str]:
    found: set[str] = set()
    try:
        lines = IF_INET6.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[5] == interface:
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found


def bridge_addresses(sys_net: Path | None = None) -> dict[str, str]:
    """Address -> bridge interface, for every Linux bridge on this host (IPv4 and IPv6)."""
    sys_net = SYS_NET if sys_net is None else sys_net
    found: dict[str, str] = {}
    try:
        interfaces = sorted(p.name for p in sys_net.iterdir())
    except OSError:
        return found
    for name in interfaces:
        if not (sys_net / name / "bridge").exists():
            continue
        ipv4 = _ipv4_of(name)
        if ipv4:
            found[ipv4] = name
        for ipv6 in _ipv6_of(name):
            found[ipv6] = name
    return found


def check_listen_host(host: str) -> None:
    """Raise ValueError (the reason and the fix) unless the stand-ins may listen on host."""
    if host == "localhost":
        return
    fix = ("listen on 127.0.0.1 (the default), or on the address of the bridge the cluster's "
           "nodes are attached to (e.g. kind's br-<id> or docker0, see `ip -br addr`)")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"stand-in host {host!r} is not an IP address or 'localhost'; "
                         f"{fix}") from None
    if address.is_loopback:
        return
    if address.is_unspecified:
        raise ValueError(f"stand-in host {host!r} would listen on every interface, where any "
                         f"host on those networks could fetch the stand-ins' credentials and "
                         f"use their tokens; {fix}")
    bridges = bridge_addresses()
    if str(address) in bridges:
        return
    known = ", ".join(f"{a} ({i})" for a, i in sorted(bridges.items())) or "none"
    raise ValueError(f"stand-in host {host!r} is neither loopback nor the address of a bridge "
                     f"interface on this host (bridges here: {known}); {fix}")
