"""Benchmarks for the gateway: ``python -m bench.<name>`` from the repository root.

``cancel``, ``overhead``, ``throughput`` and ``scale`` each start what they need (a gateway as a
separate process and a fake upstream on loopback ports), print a table, and write JSON and PNG
plots to ``bench/results/``. ``python -m bench.run_all`` (or ``bench/run_all``) runs them all.
See ``bench/README.md``. Nothing here imports ``tests/``.
"""
