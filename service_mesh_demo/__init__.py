"""The demo service mesh (placeholder until its issue lands)."""
