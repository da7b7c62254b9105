"""Training: datasets, models, augmentation, losses, label sources, evaluators, the loop.

Everything here runs without Ray; the driver schedules it.
"""
