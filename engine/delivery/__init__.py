"""Delivery: dispatch claims due sends, the deliverer checks the policies at send time, renders
the template and hands the message to its channel; the ledger records each step."""
