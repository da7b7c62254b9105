"""Parquet schema, leaderboards and paper comparison.

- :mod:`coretune.reports.tables`: Arrow schemas of the trials, curves and selections tables,
  and atomic Parquet read/write/append.
- :mod:`coretune.reports.paper`: the papers' published tables (packaged ``paper_tables/``).
- :mod:`coretune.reports.leaderboard`: per (dataset, arch) leaderboards, as rich tables and
  ``leaderboard.md``, with the published numbers beside ours.
"""
