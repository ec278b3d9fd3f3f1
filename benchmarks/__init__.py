"""Benchmarks: load harnesses whose figures are recorded in RESULTS.md."""
