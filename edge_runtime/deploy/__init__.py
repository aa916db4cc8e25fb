"""Deploying a node: signed updates of models and configs (``edge-runtime update``).

- :mod:`edge_runtime.deploy.minisign`: the minisign signature and key formats;
- :mod:`edge_runtime.deploy.updates`: stage, verify, self-test, swap, health check,
  roll back.

Nothing is imported here: ``import edge_runtime`` stays light.
"""
