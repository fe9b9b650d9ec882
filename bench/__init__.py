"""pgbyte's benchmarks: connectors and orchestrator against COPY baselines on firenibble.

Run from the repository root with `make bench` or `.venv/bin/python -m bench --help`.
"""
