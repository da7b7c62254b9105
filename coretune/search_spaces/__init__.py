"""Search spaces: YAML → validated ``SweepSpec`` → ``TrialSpec`` s, and the packaged spaces."""

from pathlib import Path

DEMO_SPEC = Path(__file__).parent / "demo.yaml"
