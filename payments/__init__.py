"""Payments: the Payment record, its append-only events, the STK flow, the transition function."""
