"""Exports: a campaign's approved assets with their provenance, as files for delivery."""
