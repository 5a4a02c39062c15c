"""Experiment config files: every shipped one parses; bad keys and types are clear errors."""

import sys
from pathlib import Path

import pytest

from metarl.cli import ConfigFileError, load_config_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*/*.toml"))
ENV_IDS = {
    "particles2d": "metarl/Particles2D-v0",
    "halfcheetah-dir": "metarl/HalfCheetahDir-v0",
    "halfcheetah-vel": "metarl/HalfCheetahVel-v0",
}
# Ant configs: AntDir and AntGoal for MAML-TRPO and ProMP
ANT = {"ant-dir": "metarl/AntDir-v0", "ant-goal": "metarl/AntGoal-v0"}
ANT_CELLS = {(a, e) for a in ("maml-trpo", "promp") for e in ANT}
# Meta-World configs: ML1 reach and push for MAML-TRPO and ProMP, ML10 for MAML-TRPO
METAWORLD = {
    "ml1-reach": "metarl/ML1-reach-v0",
    "ml1-push": "metarl/ML1-push-v0",
    "ml10": "metarl/ML10-v0",
}
METAWORLD_CELLS = {(a, e) for a in ("maml-trpo", "promp") for e in ("ml1-reach", "ml1-push")}


def test_every_agent_has_a_config_for_every_env():
    names = {(p.parent.name, p.stem) for p in SHIPPED}
    classic = {(a, e) for a in ("maml-trpo", "promp", "maml-dice") for e in ENV_IDS}
    assert names == classic | ANT_CELLS | METAWORLD_CELLS | {("maml-trpo", "ml10")}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_config_parses_into_its_agent_and_env(path):
    cfg, agent_cfg = train.parse_args(["--config", str(path)])
    assert cfg.agent == path.parent.name
    assert cfg.env == {**ENV_IDS, **ANT, **METAWORLD}[path.stem]
    assert type(agent_cfg).__name__.lower().startswith(path.parent.name.replace("-", ""))


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('agent = "promp"\niterations = 7\nclip_eps = 0.2\nhidden-sizes = [32, 32]\n')
    cfg, agent_cfg = train.parse_args(["--config", str(path), "--iterations", "9"])
    assert (cfg.agent, cfg.iterations) == ("promp", 9)
    assert agent_cfg.clip_eps == 0.2 and agent_cfg.hidden_sizes == (32, 32)


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_kll = 0.01\n", "unknown key 'max_kll'; known keys:"),
        ('iterations = "300"\n', "iterations must be an integer, got '300'"),
        ("inner_lr = true\n", "inner_lr must be a number, got True"),
        ("hidden_sizes = 100\n", "hidden_sizes must be a list of int values"),
        ("iterations = \n", "is not valid TOML"),
        # a key of another agent than the file's own
        ('agent = "maml-dice"\nmax_kl = 0.02\n', "unknown key 'max_kl'"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=message.replace("(", r"\(")):
        train.parse_args(["--config", str(path)])


def test_missing_config_file_points_to_the_shipped_ones():
    with pytest.raises(ConfigFileError, match="not found; the shipped ones are under configs/"):
        load_config_file("nope.toml", [train.TrainConfig])


def test_bad_config_is_one_line_from_the_script(tmp_path):
    from scripts_helpers import run_script

    path = tmp_path / "bad.toml"
    path.write_text("max_kll = 0.01\n")
    proc = run_script("train", "--config", str(path))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "unknown key 'max_kll'" in proc.stderr
