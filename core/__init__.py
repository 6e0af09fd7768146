"""Shared building blocks: money, phone numbers, API-key auth, error shape, idempotency, logs."""
