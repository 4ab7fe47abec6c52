"""Ingest: events in from every source, customers, events and summaries out.

`parse` (the one reader, for files, HTTP and simulations), `batch` and `referrals` (what a batch
asks of the database), `store` (one batch, one transaction; the portable form) with `_postgres`
(PostgreSQL's fast form) beside it, and `writer` (batches stored by writer threads: the entry
points `ingest_file` and `ingest_events`).
"""
