"""Per-process worker state, made after the fork (worker_process_init), never at import."""

from __future__ import annotations

from typing import Any

STATE: dict[str, Any] = {}
