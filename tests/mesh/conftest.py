"""Fixtures of the mesh tests: a network of namespaces per test, torn down after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.mesh.netns import Net


@pytest.fixture
def make_net() -> Iterator[Callable[[int], Net]]:
    """``make_net(3)``: three hosts on a bridge; every net made is closed after the test,
    passed or failed."""
    nets: list[Net] = []

    def make(n_hosts: int) -> Net:
        net = Net(n_hosts)
        nets.append(net)
        return net

    try:
        yield make
    finally:
        for net in nets:
            net.close()
