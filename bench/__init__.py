"""Benchmarks for the gateway: ``python -m bench.<name>`` from the repository root.

``cancel``, ``overhead``, ``throughput``, ``scale``, ``workers`` and ``startup`` each start what
they need (gateways as separate processes and a fake upstream on loopback ports), print a
table, and write JSON (and PNG plots) to ``bench/results/``. ``python -m bench.run_all`` (or
``bench/run_all``) runs them all; ``upstream_client`` and ``compare`` are run on their own. See
``bench/README.md``. ``pg_scale`` and ``pg_driver`` start a throwaway PostgreSQL through
``tests/postgres.py`` (the ``test`` extra); nothing else here imports ``tests/``.
"""
