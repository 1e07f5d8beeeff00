"""Benchmarks: bench/run runs them all (see docs/performance.md)."""
