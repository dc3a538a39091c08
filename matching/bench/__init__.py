"""Benchmark harness: readers for the public instance formats, greedy baselines and
runners.  Standard library and ortools only."""
