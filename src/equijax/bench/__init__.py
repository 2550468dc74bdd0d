"""Benchmarks: each prints a table, writes JSON, and runs the reference side by side."""
