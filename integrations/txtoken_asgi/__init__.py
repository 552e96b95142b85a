"""txtoken integration for asgi (placeholder until its issue lands)."""
