"""Evaluation: a tick recomputes stages, fires triggers and advances enrollments through their
steps, as set-based SQL over what changed in its window; `explain` says why, for one customer."""
