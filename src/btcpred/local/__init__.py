"""Throwaway local Redis and PostgreSQL servers for tests and development."""
