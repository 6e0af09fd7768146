"""The event outbox: what happened (a payment succeeded, a break was opened), written in the
same transaction as the change it describes, for the features above to react to (outbound
webhooks first)."""
