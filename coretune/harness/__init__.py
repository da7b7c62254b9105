"""Data, models, losses, training, teacher, dynamics, artifacts and the Tune driver."""
