"""Learning runs (slow, excluded by default: ``pytest -m slow``)."""

import json

import pytest
from scripts_helpers import run_script

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("agent", ["maml-trpo", "promp", "maml-dice"])
def test_particles_adaptation_helps_after_meta_training(tmp_path, agent):
    """After 30 iterations one adaptation step must clearly beat the unadapted policy on 20
    held-out tasks (before training it barely does: about -77 before and -70 after)."""
    proc = run_script(
        "train",
        "--agent",
        agent,
        "--iterations",
        "30",
        "--eval-tasks",
        "20",
        "--eval-adapt-steps",
        "1",
        "--out",
        str(tmp_path),
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    steps = json.loads((run_dir / "eval.json").read_text())["steps"]
    before, after = steps[0]["mean_return"], steps[1]["mean_return"]
    assert after > before + 5.0 and after > -35.0, (before, after)
