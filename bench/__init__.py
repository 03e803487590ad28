"""Benchmarks. Each writes JSON into bench/results/ and its table into docs/performance.md."""
