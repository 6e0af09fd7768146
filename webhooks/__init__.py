"""Outbound webhooks: tell the merchant's systems what happened, signed (Standard Webhooks),
retried for days, never lost, with every attempt on the record."""
