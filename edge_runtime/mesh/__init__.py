"""The peer mesh: nodes find each other and offload heavy models to faster peers.

- ``discovery.py``: mDNS advertisement and browsing (python-zeroconf, imported only when
  discovery starts), the peer table, liveness from an application heartbeat.
- ``scheduler.py``: where each request runs (pure: predicted completion time, power of
  two choices, circuit breakers, hedging, cascade, exactly-once delivery, accounting).
- ``oip/``: the Open Inference Protocol (KServe v2 REST, Triton's binary tensors), a
  library: ``codec.py``, ``server.py`` (``make_app``, ``OipServer``), ``client.py``
  (``OipClient``).
- ``served.py``: the node's models as the server's model provider (loaded on demand).
- ``fleet.py``: the fleet CA (init, CSR, enroll, revoke, CRL) and the mutual-TLS contexts.
- ``node.py``: ``[mesh]`` checked and turned into listen address, TLS contexts, peers.

Nothing is imported here: ``import edge_runtime`` stays light.
"""
