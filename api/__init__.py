"""Interfaces: the HTTP API (filled in by the API issue)."""
