"""Running the scripts as a user does, for the tests."""

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = ("time", "env_steps_per_s")  # metric keys that depend on the machine, not the run


def run_script(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python scripts/<name>.py ARGS`` from the repository root."""
    cmd = [sys.executable, f"scripts/{name}.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, to call its ``main(argv)`` in-process."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def metrics(run_dir: Path) -> list[dict]:
    """The run's metric rows without the timing columns."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def interrupt_training(
    args: list[str], after_line: str, sig: int = signal.SIGINT
) -> tuple[int, str]:
    """Start ``scripts/train.py ARGS``, send ``sig`` once it printed a line starting with
    ``after_line``, and return its exit code and stderr."""
    cmd = [sys.executable, "scripts/train.py", *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stdout:
        if line.startswith(after_line):
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err
