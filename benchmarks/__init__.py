"""The sessions_db benchmark suite: every backend next to its raw driver.

Run it with ``python -m benchmarks`` (see ``benchmarks/README.md``).
"""
