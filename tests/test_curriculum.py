"""A curriculum's warm-up (`warmup_world`, `warmup_steps`): the run trains first in its world with some
settings changed, then in its own world, one mother throughout; a kill on either side of the change
resumes to the same bytes; settings that cannot work are one clear line."""

import json

import pytest

from analysis.cli import main
from caring.config import TrainConfig
from caring.train import start_run
from worlds.config import build_config
from worlds.nursery.config import NurseryConfig

PER_UPDATE = 8 * 2 * 8  # worlds x mothers x rollout: budgets count mothers, not orphan slots
WARMUP = "orphans=0,birth_place=beside"


def config(**overrides):
    settings = dict(method="ppo", steps=4 * PER_UPDATE, worlds=8, rollout=8, hidden=16, checkpoint_every=1,
                    snapshot_every=0, warmup_world=WARMUP, warmup_steps=2 * PER_UPDATE, seed=5)  # fmt: skip
    return build_config(TrainConfig, settings | overrides)


SELECTIVE = build_config(NurseryConfig, {"preset": "selective"})


class Killed(Exception):
    pass


def test_the_warm_up_trains_in_its_world_then_the_run_in_its_own(tmp_path):
    trainer = start_run(tmp_path / "run", SELECTIVE, config(), "cpu", resume=False)
    assert trainer.core.config.orphans == 0 and trainer.core.config.birth_place == "beside"
    seen = []

    clocks = {}

    def watch(update, total, row, speed):
        seen.append((update, trainer.core.config.orphans, trainer.state.baby_alive.shape[0]))
        clocks[update] = trainer.state.t.clone()

    trainer.run(watch)
    # the new world's episodes start staggered over their phases, not all at step 0 together
    assert len(clocks[2].unique()) >= 5 and int(clocks[2].max()) > 8
    # after update 2 (the warm-up's last) the worlds are the run's own: 2 mothers' babies + 2 orphans
    assert seen == [(1, 0, 2), (2, 2, 4), (3, 2, 4), (4, 2, 4)]
    assert trainer.core.config == SELECTIVE and trainer.stream.ctx.core is trainer.core
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["warmup_world"] == WARMUP and saved["world"]["orphans"] == 2
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == [str(u * PER_UPDATE) for u in (1, 2, 3, 4)]


@pytest.mark.parametrize("killed_after", [1, 2, 3])  # in the warm-up, at its last update, after it
def test_a_kill_on_either_side_of_the_warm_up_resumes_to_the_same_bytes(tmp_path, killed_after):
    start_run(tmp_path / "whole", SELECTIVE, config(), "cpu", resume=False).run()
    cut = start_run(tmp_path / "cut", SELECTIVE, config(), "cpu", resume=False)

    def kill(update, total, row, speed):
        if update == killed_after:
            raise Killed

    with pytest.raises(Killed):
        cut.run(kill)
    start_run(tmp_path / "cut", SELECTIVE, config(), "cpu", resume=True).run()
    for name in ("metrics.csv", "mother.safetensors"):  # the checkpoint also counts speed.csv bytes
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_a_warm_up_changes_what_is_learned(tmp_path):
    """Same seed, same budget: with a warm-up the mother's weights end elsewhere (it is not ignored)."""
    plain = start_run(tmp_path / "plain", SELECTIVE, config(warmup_world="", warmup_steps=0), "cpu", False)
    plain.run()
    warm = start_run(tmp_path / "warm", SELECTIVE, config(), "cpu", resume=False)
    warm.run()
    assert (tmp_path / "plain" / "mother.safetensors").read_bytes() != (
        tmp_path / "warm" / "mother.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    "warmup, steps, error",
    [
        ("view_radius=2", 2, "changes the observation size (290 vs 530)"),
        ("n_mothers=1", 2, "changes the number of mothers (1 vs 2)"),
        ("wings=3", 2, "warmup_world: unknown NurseryConfig key 'wings'"),
        ("orphans=99", 2, "warmup_world: orphans=99 is out of range"),
        ("pit_share=0.5", 2, "pit_share=0 (got 0.5)"),
        ("orphans", 2, "warmup_world expects key=value,key=value"),
        (WARMUP, 4, "needs 0 < warmup_steps < steps"),
        ("", 2, "warmup_steps=256 needs a warmup_world"),
    ],
)
def test_a_warm_up_that_cannot_work_is_one_clear_line(tmp_path, capsys, warmup, steps, error):
    args = ["train", "nursery", "--preset", "selective", "--method", "ppo", "--steps", str(4 * PER_UPDATE),
            "--out", str(tmp_path / "run"), "--train-set", "worlds=8", "--train-set", "rollout=8",
            "--train-set", "hidden=16", "--train-set", f"warmup_world={warmup}",
            "--train-set", f"warmup_steps={steps * PER_UPDATE}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "metrics.csv").exists()
