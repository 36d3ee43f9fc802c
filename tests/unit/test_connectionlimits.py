"""The listener's connection policy: caps per address and in all, who gives way."""

from __future__ import annotations

import pytest

from tessera.portal.connectionlimits import ConnectionLimitError, ConnectionLimits, global_cap


def test_the_global_cap_keeps_a_reserve_below_the_open_file_limit() -> None:
    assert global_cap(1024, 0) == 768
    assert global_cap(200, 0) == 136  # at least 64 kept
    assert global_cap(20000, 0) == 15000
    assert global_cap(1024, 500) == 500
    with pytest.raises(ConnectionLimitError, match="above what the open-file limit"):
        global_cap(1024, 769)
    with pytest.raises(ConnectionLimitError, match="leaves no room"):
        global_cap(64, 0)


def test_per_address_cap_refuses_and_frees_on_close() -> None:
    limits: ConnectionLimits[int] = ConnectionLimits(total=100, per_address=2)
    assert limits.admit(1, "a").admitted and limits.admit(2, "a").admitted
    refused = limits.admit(3, "a")
    assert not refused.admitted and refused.reason == "more than 2 connections from a"
    assert limits.admit(4, "b").admitted
    limits.closed(1)
    limits.closed(1)  # idempotent
    assert limits.count("a") == 1 and len(limits) == 2
    assert limits.admit(5, "a").admitted


def test_at_the_global_cap_the_oldest_waiting_connection_gives_way() -> None:
    limits: ConnectionLimits[int] = ConnectionLimits(total=3, per_address=0)
    for key in (1, 2, 3):
        assert limits.admit(key, f"10.0.0.{key}").admitted
    limits.started(1)  # being served: never displaced
    admission = limits.admit(4, "10.0.0.4")
    assert admission.admitted and admission.displaced == 2
    assert limits.count("10.0.0.2") == 0 and len(limits) == 3 and limits.waiting == 2
    limits.started(3)
    limits.started(4)
    refused = limits.admit(5, "10.0.0.5")
    assert not refused.admitted and refused.reason == "more than 3 connections open"
    assert len(limits) == 3


def test_no_per_address_cap_when_zero() -> None:
    limits: ConnectionLimits[int] = ConnectionLimits(total=1000, per_address=0)
    assert all(limits.admit(key, "proxy").admitted for key in range(500))
    assert limits.count("proxy") == 500
