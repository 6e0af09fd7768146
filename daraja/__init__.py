"""The Daraja (Safaricom M-Pesa API) client, payload parsing and code catalogue. No models."""
