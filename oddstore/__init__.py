"""Shared plumbing of the services: settings, logging, database pool, gRPC lifecycle, storage codec."""
