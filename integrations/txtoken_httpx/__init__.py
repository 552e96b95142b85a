"""txtoken integration for httpx (placeholder until its issue lands)."""
