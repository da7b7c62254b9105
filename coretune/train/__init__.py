"""Training: datasets, models, augmentation, losses, label sources, evaluators, the loop.

Everything here runs without Ray; the driver schedules it. Importing the package
registers every dataset module of :mod:`coretune.train.datasets`.
"""

from coretune.train import datasets  # noqa: F401 - registers the datasets
