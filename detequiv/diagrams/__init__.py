"""Stage: diagrams."""
