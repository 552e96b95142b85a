"""txtoken integration for grpc (placeholder until its issue lands)."""
