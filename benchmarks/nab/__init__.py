"""NAB benchmark helpers: corpus loading and detector runs (see benchmarks/nab_bench.py)."""
