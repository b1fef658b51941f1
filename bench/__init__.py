"""Benchmarks: programs that print a table comparing the system with a baseline measured in the same run."""
