"""The peer mesh: nodes find each other and offload heavy models to faster peers.

- ``discovery.py``: mDNS advertisement and browsing (python-zeroconf, imported only when
  discovery starts), the peer table, liveness from an application heartbeat.
- ``scheduler.py``: where each request runs (pure: predicted completion time, power of
  two choices, circuit breakers, hedging, cascade, exactly-once delivery, accounting).

Nothing is imported here: ``import edge_runtime`` stays light.
"""
