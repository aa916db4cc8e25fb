"""The Open Inference Protocol (KServe v2 REST) with Triton's binary tensor extension.

A library: it knows nothing of pipelines or the daemon. ``codec.py`` (tensors <-> JSON and
binary bodies), ``server.py`` (``make_app``, ``OipServer``: endpoints, limits, deadlines,
per-peer backpressure), ``client.py`` (``OipClient``, async, typed errors). Nothing is
imported here: ``import edge_runtime.mesh.oip`` stays light.
"""
