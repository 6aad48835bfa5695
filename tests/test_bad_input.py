"""Malformed input: one clear error line and exit status 2 on the CLI, a ValueError in the API."""

import subprocess
import sys

import numpy as np
import pytest

import worlds
from analysis.cli import main
from worlds.config import ConfigError
from worlds.nursery.nursery_v0 import NurseryEnv

CLI_CASES = {
    "unknown world": (
        ["eval", "jungle", "--policy", "expert"],
        "unknown world 'jungle'; valid worlds: nursery",
    ),
    "unknown --set key": (
        ["eval", "nursery", "--policy", "expert", "--set", "wingspan=3"],
        "unknown NurseryConfig key",
    ),
    "bad value type": (
        ["eval", "nursery", "--policy", "expert", "--set", "height=tall"],
        "height: expected int",
    ),
    "out of range": (
        ["eval", "nursery", "--policy", "expert", "--set", "curiosity=1.5"],
        "out of range [0.0, 1.0]",
    ),
    "grid too small": (
        ["eval", "nursery", "--policy", "expert", "--set", "height=7", "--set", "n_walls=60"],
        "interior cells but the layout needs",
    ),
    "bad choice": (
        ["eval", "nursery", "--policy", "expert", "--set", "baby_markers=purple"],
        "is not one of kin",
    ),
    "set without =": (
        ["eval", "nursery", "--policy", "expert", "--set", "height"],
        "--set expects key=value",
    ),
    "unknown policy": (
        ["eval", "nursery", "--policy", "saint"],
        "unknown policy 'saint'; valid nursery policies: expert",
    ),
    "zero episodes": (
        ["eval", "nursery", "--policy", "expert", "--episodes", "0"],
        "--episodes must be at least 1, got 0",
    ),
    "non-integer episodes": (
        ["eval", "nursery", "--policy", "expert", "--episodes", "many"],
        "--episodes must be an integer, got 'many'",
    ),
    "NaN world setting": (
        ["eval", "nursery", "--policy", "expert", "--set", "curiosity=nan"],
        "curiosity=nan is not a finite number",
    ),
    "infinite world setting": (
        ["eval", "nursery", "--policy", "expert", "--set", "baby_reward_weight=-inf"],
        "baby_reward_weight=-inf is not a finite number",
    ),
    "NaN training setting": (
        ["train", "nursery", "--out", "/nonexistent/run", "--train-set", "lr=nan"],
        "lr=nan is not a finite number",
    ),
    "infinite int setting": (
        ["train", "nursery", "--out", "/nonexistent/run", "--train-set", "steps=1e999"],
        "steps: expected int, got '1e999'",
    ),
    "ten billion episodes": (
        ["eval", "nursery", "--policy", "expert", "--episodes", "10000000000"],
        "--episodes must be at most 1000000, got 10000000000",
    ),
    "zero demo episodes": (
        ["demo", "--episodes", "0"],
        "--episodes must be at least 1, got 0",
    ),
    "audit of ten billion episodes": (
        ["audit", "runs/x", "--episodes", "10000000000"],
        "--episodes must be at most 1000000, got 10000000000",
    ),
    "seed 2**70": (
        ["eval", "nursery", "--policy", "expert", "--seed", str(2**70)],
        f"--seed must be at most {2**62}, got {2**70}",
    ),
    "fractional seed": (
        ["render", "nursery", "--policy", "expert", "--seed", "1.5"],
        "--seed must be an integer, got '1.5'",
    ),
    "zero render steps": (
        ["render", "nursery", "--policy", "expert", "--steps", "0"],
        "--steps must be at least 1, got 0",
    ),
    "NaN steering coefficient": (
        ["retarget", "runs/x", "--out", "/nonexistent/r", "--coefficients", "1", "nan"],
        "--coefficients must be a finite number, got nan",
    ),
    "missing config file": (
        ["eval", "nursery", "--policy", "expert", "--config", "/nonexistent/x.toml"],
        "cannot read config file",
    ),
    "unknown preset": (
        ["eval", "nursery", "--policy", "expert", "--preset", "famine"],
        "unknown preset 'famine'; valid presets: default, hungry",
    ),
    "unknown preset by --set": (
        ["eval", "nursery", "--policy", "expert", "--set", "preset=famine"],
        "unknown preset 'famine'; valid presets: default, hungry",
    ),
    "a preset in a world without any": (
        ["eval", "lava", "--policy", "expert", "--preset", "hungry"],
        "unknown preset 'hungry'; valid presets: none in this world",
    ),
    "unknown subcommand": (["dance"], "invalid choice: 'dance'"),
    "cuda without cuda": (["eval", "nursery", "--policy", "expert", "--device", "cuda:0"], None),
    "render to a non-gif": (
        ["render", "nursery", "--policy", "expert", "--out", "movie.mp4"],
        "must name a .gif",
    ),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_rejects_with_one_line(case, capsys):
    argv, expected = CLI_CASES[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("caring: error: ")
    if expected is not None:
        assert expected in err
    elif case == "cuda without cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        assert "CUDA is not available" in err


def test_corrupt_config_files_are_rejected(tmp_path, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{height: 12")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("height = = 3")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    wrong_suffix = tmp_path / "conf.yaml"
    wrong_suffix.write_text("height: 3")
    for path, message in (
        (bad_json, "is not valid JSON"),
        (bad_toml, "is not valid TOML"),
        (listed, "must hold a table"),
        (wrong_suffix, "must end in .json or .toml"),
    ):
        assert main(["eval", "nursery", "--policy", "expert", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


SEEDED = {  # every command that takes --seed, with what it needs besides
    "eval": ["eval", "nursery", "--policy", "expert"],
    "render": ["render", "nursery", "--policy", "expert"],
    "train": ["train", "nursery", "--out", "/nonexistent/run"],
    "demo": ["demo", "--out", "/nonexistent/demo"],
    "audit": ["audit", "runs/x"],
    "probe": ["probe", "runs/x", "--out", "/nonexistent/p"],
    "retarget": ["retarget", "runs/x", "--out", "/nonexistent/r"],
}


@pytest.mark.parametrize("command", SEEDED)
def test_every_command_has_the_same_seed_rule(command, capsys):
    """`eval --seed -1` was accepted while `train` refused it; 2**70 overflowed inside torch."""
    for seed, message in (("-1", "at least 0, got -1"), (str(2**70), f"at most {2**62}, got {2**70}")):
        assert main([*SEEDED[command], "--seed", seed]) == 2
        assert capsys.readouterr().err == f"caring: error: --seed must be {message}\n"


def test_non_finite_and_undecodable_config_files_are_rejected_naming_the_file(tmp_path, capsys):
    cases = {
        "binary.toml": (b"\x89PNG\r\n\x1a\n\x00\xff", "is not text: byte 0 is not UTF-8"),
        "nan.toml": (b"curiosity = nan\n", "curiosity=nan is not a finite number"),
        "inf.toml": (b"curiosity = inf\n", "curiosity=inf is not a finite number"),
        "nan.json": (b'{"curiosity": NaN}', "curiosity=nan is not a finite number"),
        "overflow.json": (b'{"curiosity": 1e999}', "curiosity=inf is not a finite number"),
        "huge.json": (b'{"curiosity": 1' + b"0" * 400 + b"}", "an integer of 401 digits is too large"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert main(["eval", "nursery", "--policy", "expert", "--config", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, name
        assert name in err or "curiosity" in err, name
    (tmp_path / "dir.toml").mkdir()
    assert main(["eval", "nursery", "--policy", "expert", "--config", str(tmp_path / "dir.toml")]) == 2
    assert f"cannot read config file {tmp_path / 'dir.toml'}" in capsys.readouterr().err


def test_config_file_values_are_used(tmp_path, capsys):
    good = tmp_path / "small.toml"
    good.write_text("height = 9\nwidth = 9\nn_walls = 2\nmax_cycles = 30\n")
    assert (
        main(["eval", "nursery", "--policy", "expert", "--episodes", "3", "--config", str(good), "--json"])
        == 0
    )
    assert '"episodes": 3' in capsys.readouterr().out


def test_console_script_never_prints_a_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "eval", "nursery", "--policy", "nobody"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


API_CASES = {
    "unknown world": (lambda: worlds.make("jungle"), "unknown world"),
    "unknown key": (lambda: worlds.make("nursery", wingspan=2), "unknown NurseryConfig key 'wingspan'"),
    "wrong type": (lambda: worlds.make("nursery", n_mothers="two"), "n_mothers: expected int"),
    "float for int": (lambda: worlds.make("nursery", n_mothers=1.5), "n_mothers: expected int"),
    "grid too small": (lambda: worlds.make("nursery", height=7, width=7, n_walls=20), "interior cells"),
    "energy start above max": (
        lambda: worlds.make("nursery", energy_start=90, energy_max=60),
        "exceeds energy_max",
    ),
    "bad render mode": (lambda: worlds.make("nursery", render_mode="ascii"), "render_mode 'ascii'"),
    "NaN keyword": (
        lambda: worlds.make("nursery", baby_reward_weight=float("nan")),
        "baby_reward_weight=nan is not a finite number",
    ),
    "infinite keyword": (
        lambda: worlds.make("nursery", curiosity=float("inf")),
        "curiosity=inf is not a finite",
    ),
    "NaN lava keyword": (
        lambda: worlds.make("lava", lava_penalty=float("nan")),
        "lava_penalty=nan is not a finite",
    ),
    "integer too large for a float": (
        lambda: worlds.make("nursery", curiosity=10**400),
        "curiosity: an integer of 401 digits is too large for a float",
    ),
}


@pytest.mark.parametrize("case", API_CASES)
def test_api_rejects_bad_configs(case):
    make, message = API_CASES[case]
    with pytest.raises(ValueError, match=message):
        make()
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "action, message",
    [
        (9, r"must be in \[0, 9\)"),
        (-1, r"must be in \[0, 9\)"),
        (2.0, "must be an int"),
        ("up", "must be an int"),
        (np.array([1, 2]), "must be an int"),
        (True, "must be an int"),
    ],
)
def test_step_rejects_bad_actions(action, message):
    env = NurseryEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step({"mother_0": action, "mother_1": 0})


def test_step_rejects_unknown_agents_and_step_before_reset():
    env = NurseryEnv()
    with pytest.raises(ValueError, match="call reset"):
        env.step({"mother_0": 0})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown agent 'father_0'"):
        env.step({"father_0": 0})
    assert env.step({"mother_0": np.int64(3)})[0]  # numpy ints are fine; a missing agent stays put


@pytest.mark.parametrize("make", [NurseryEnv, lambda: worlds.make("lava")])
def test_views_reject_bad_seeds_and_non_dict_actions(make):
    env = make()
    for seed in (-1, 2**70, 1.5, "7", True):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 4611686018427387904\] or None"):
            env.reset(seed=seed)
    assert env.reset(seed=np.int64(2**62))[0]  # the largest seed, as a numpy int, is fine
    for actions in (None, [0, 0], 3):
        with pytest.raises(ValueError, match="step\\(\\) takes a dict of actions"):
            env.step(actions)


def test_vector_env_rejects_bad_seeds():
    env = worlds.make_vec("nursery", num_envs=2)
    with pytest.raises(ValueError, match="seed must be an int"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="seed must be an int"):
        env.reset(seed=2**70)


def test_baby_brain_output_is_checked():
    env = NurseryEnv(baby_brain=lambda obs: np.array([7, 7]), birth_step=0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="baby_brain must return 2 moves"):
        env.step({"mother_0": 0, "mother_1": 0})
