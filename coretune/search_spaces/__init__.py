"""Sweep definitions (YAML) and their schema."""
