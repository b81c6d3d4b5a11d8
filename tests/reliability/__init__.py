"""Reliability and security suites: model-based, stress, crash, outage, hostile input."""
