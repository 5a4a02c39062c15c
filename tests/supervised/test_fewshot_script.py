"""Smoke runs of scripts/fewshot.py, as a user runs it, with a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fewshot.py"
TINY = [
    "--dataset", "glyphs", "--glyph-classes", "40", "--glyph-samples", "4",
    "--ways", "5", "--shots", "1", "--queries", "2", "--test-queries", "2",
    "--iterations", "3", "--eval-every", "2", "--val-tasks", "2", "--test-tasks", "3",
    "--hidden", "8", "--threads", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("glyph-data")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fewshot_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "method_args", [["--method", "protonets"], ["--method", "maml", "--meta-batch", "2"]]
)
def test_script_trains_and_writes_a_run_folder(
    method_args: list[str], data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(SCRIPT), *method_args, *TINY]
    args += ["--data-root", str(data_root), "--out", str(out)]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "meta-test accuracy" in proc.stdout
    (run,) = out.iterdir()
    assert run.name.endswith(f"-fewshot-glyphs-{method_args[1]}")
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "test.json"}
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"best.pt", "last.pt"}
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == method_args[1] and config["iterations"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "loss" in r] == [1, 2, 3]
    assert [r["iteration"] for r in rows if "val_accuracy" in r] == [2, 3]
    result = json.loads((run / "test.json").read_text())
    assert 0.0 <= result["accuracy"] <= 1.0 and result["ci95"] >= 0.0
    assert result["test_tasks"] == 3 and result["train_seconds"] > 0


def test_bad_input_names_the_fix(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    base = [*TINY, "--data-root", str(data_root), "--out", str(tmp_path / "x")]
    assert script.main([*base, "--ways", "30"]) == 2
    assert "lower --ways" in capsys.readouterr().err
    assert script.main([*base, "--queries", "9"]) == 2
    assert "raise --glyph-samples" in capsys.readouterr().err
    missing = tmp_path / "nothing-here"
    assert script.main(["--dataset", "omniglot", "--data-root", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "images_background" in err and "--download" in err
    assert script.main([*base, "--method", "reptile"]) == 2
    assert "choose --method from ['protonets', 'maml']" in capsys.readouterr().err
    assert script.main([*base, "--dataset", "cifar"]) == 2
    assert "choose --dataset from" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(["--help"])
    assert exit_info.value.code == 0 and "--glyph-classes" in capsys.readouterr().out
