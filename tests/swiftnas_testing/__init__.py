"""Helpers of the test suite and the benchmarks: a throwaway PostgreSQL server and evaluators for distributed
searches. Subprocesses and Ray workers import them with ``tests/`` on their PYTHONPATH."""
