"""xpmfs: experiments as typed, content-addressed tasks; the workspace directory is the database."""

from __future__ import annotations

__version__ = "0.1.0"
