"""The README's commands and its library example are the ones that work."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_library_example_runs():
    (block,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    proc = subprocess.run(
        [sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_ci_runs_exactly_the_readme_test_command():
    bash_blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert len(bash_blocks) == 2, "the README holds exactly two set-up commands"
    assert "scripts/train.py" in bash_blocks[0]
    test_command = bash_blocks[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
