"""Parquet schema, leaderboards and paper comparison."""
