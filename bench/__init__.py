"""Benchmarks: `python -m bench` (or `make bench`) runs every bench/bench_*.py module's main().
Results and the commands that produced them are recorded in docs/BENCHMARKS.md."""
