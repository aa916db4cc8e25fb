"""Adaptive sampling: activity policies (motion gate, change, novelty, score), the rate
controller that turns activity into a sampling rate, and the CPU/thermal budget that caps it.

Timing defaults live in :mod:`edge_runtime.sampling.constants`.
"""
