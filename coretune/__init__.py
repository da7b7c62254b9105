"""coretune: a Ray Tune harness for coreset selection under hard and soft labels."""

__version__ = "0.1.0"
