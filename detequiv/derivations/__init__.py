"""Stage: derivations."""
