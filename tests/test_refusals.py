"""Bad input is refused before Ray starts: exit 2, one line naming the field and value,
nothing written (issue 12's list, and more)."""

from __future__ import annotations

import pytest

from coretune.cli import main
from tests.conftest import TINY_SPEC

TAU = "{mode: soft, tau: 4.0, lam: 1.0}"
CCS = "args: {score: aum, beta: 0.1}"

SPEC_CASES = [  # (old, new, what the one-line message must contain)
    ("  - name: random\n", "  - name: nonsense\n", "unknown selector 'nonsense'"),
    ("ratios: [0.05, 0.2]", "ratios: [0, 0.2]", "ratio must be in (0, 1]"),
    ("ratios: [0.05, 0.2]", "ratios: [1.5]", "got 1.5"),
    ("ratios: [0.05, 0.2]", "ratios: [.nan]", "ratios"),
    ("ratios: [0.05, 0.2]", "ratios: []", "ratios"),
    ("ratios: [0.05, 0.2]", 'ratios: ["0.1"]', "ratios"),
    (TAU, "{mode: soft, tau: 0, lam: 1.0}", "tau must be > 0"),
    (TAU, "{mode: soft, tau: .inf, lam: 1.0}", "tau"),
    (TAU, "{mode: soft, tau: [], lam: 1.0}", "tau grid has no values"),
    (TAU, "{mode: soft, tau: 4.0, lam: 2}", "lam must be in [0, 1]"),
    (TAU, "{mode: soft, tau: 4.0, lam: true}", "lam"),
    ("datasets: digits", "datasets: nope", "unknown dataset 'nope'"),
    ("archs: mlp", "archs: resnet9000", "unknown arch 'resnet9000'"),
    ("archs: mlp", "archs: timm/does_not_exist", "timm has no model"),
    ("archs: mlp", "archs: [{name: mlp, args: {widht: 3}]", "widht"),
    (CCS, "args: {score: aum, strata: 0}", "'strata' should be greater than or equal to 1"),
    (CCS, "args: {score: bogus}", "'score' should be 'aum', 'forgetting', 'el2n', 'grand'"),
    (CCS, "args: {score: aum, beta: 1.0}", "'beta' should be less than 1"),
    (CCS, "args: {score: aum}\n    grid: {beta: []}", "grid ['beta'] has no values"),
    ("  - name: random\n", "  - name: random\n    args: {class_balanced: \"false\"}\n",
     "'class_balanced' should be a valid boolean"),
    ("  - name: random\n", "  - name: aum\n    args: {keep: middle}\n",
     "'keep' should be 'hardest' or 'easiest'"),
    ("seeds: [0]", "seeds: [-1]", "seeds"),
    ("seeds: [0]", "seeds: [18446744073709551616]", "seeds"),
    ("seeds: [0]", "seeds: [true]", "seeds"),
    ("seeds: [0]", "seeds: [0]\nseeds: [1]", "duplicate key 'seeds'"),
    ("seeds: [0]", "seeds: [0]\nbogus_key: 1", "bogus_key"),
    ("name: bad", "name: '..'", "name must not be only dots"),
    ("budget: {unit: iterations", "budget: {unit: hours", "budget.unit"),
    ("optimizer: {lr: 0.05", "optimizer: {lr: .inf", "optimizer.lr"),
    ("optimizer: {lr: 0.05", "optimizer: {lr: -1", "optimizer.lr"),
    ("seeds: [0]", "seeds: [0]\nresources: {cpu: 64}", "resources.cpu"),
    ("seeds: [0]", "seeds: [0]\nresources: {gpu: 1}", "resources.gpu"),
    ("seeds: [0]", "seeds: [0]\nmetric: val_acc", "needs a validation split"),
    ("- mode: hard", "- mode: hardest", "unknown label mode 'hardest'"),
    ("seeds: [0]", "seeds: [0]\nplugins: [no_such_module_xyz]", "no_such_module_xyz"),
    ("name: bad", "name: [1, 2", "not valid YAML"),
]


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    def refuse(*a, **k):
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(ray, "init", refuse)


def _refused(capsys, tmp_path, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (needle, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("old,new,needle", SPEC_CASES, ids=[c[2][:40] for c in SPEC_CASES])
def test_malformed_specs(capsys, tmp_path, no_ray, old, new, needle):
    text = TINY_SPEC.format(name="bad")
    assert old in text, old
    spec = tmp_path / "bad.yaml"
    spec.write_text(text.replace(old, new))
    _refused(capsys, tmp_path, ["sweep", str(spec), "--out", str(tmp_path / "out"),
                                "--cache", str(tmp_path / "cache")], needle)


def test_malformed_command_lines(capsys, tmp_path, no_ray, write_spec):
    spec = str(write_spec())
    (tmp_path / "file").write_text("x")
    cases = [
        (["sweep", str(tmp_path), "--out", str(tmp_path / "out")], "is a directory"),
        (["sweep", str(tmp_path / "absent.yaml"), "--out", str(tmp_path / "out")], "not found"),
        (["sweep", spec, "--out", str(tmp_path / "file" / "out")], "is not a directory"),
        (["sweep", spec, "--out", str(tmp_path / "file")], "is not a directory"),
        (["sweep", spec, "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "file")],
         "--cache"),
        (["report", str(tmp_path / "nothing")], "no trial results"),
    ]
    for argv, needle in cases:
        _refused(capsys, tmp_path, argv, needle)


def test_structural_refusals_import_neither_torch_nor_ray(tmp_path):
    """A malformed spec is refused before torch or Ray is even imported (fast)."""
    import subprocess
    import sys

    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY_SPEC.format(name="bad").replace("ratios: [0.05, 0.2]", "ratios: [0]"))
    probe = ("import sys\nfrom coretune.cli import main\n"
             f"code = main(['sweep', {str(spec)!r}, '--out', {str(tmp_path / 'o')!r}])\n"
             "print(code, 'torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
    assert "ratio must be in (0, 1]" in out.stderr
