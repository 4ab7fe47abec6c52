"""Reporting: the figures of `journey report` (text, JSON, CSV and an HTML page with charts), split
(A/B) results, and every journey drawn as a flow with its live counts (`journey graph`)."""
