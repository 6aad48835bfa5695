"""Golden runs: for every training method, and for lava, a tiny run (16 worlds x 32 steps x 4 updates,
one torch thread) must give byte-identical metrics.csv and mother.safetensors to the hashes below, which
the code before the stream refactor produced (commit 9121f80, issue 15). A change of behaviour on purpose
updates a hash here, in a commit that says which and why.

Bytes depend on the CPU's float kernels as well as on our code: the hashes were recorded on this
project's machines (AMD EPYC, AVX2). Where a fixed forward and backward pass of the network gives other
bytes than it did there (`PLATFORM`), the runs cannot be compared byte for byte and are skipped, saying so.
"""

import hashlib

import pytest
import torch

from caring.config import train_config
from caring.networks import MotherNet
from caring.tasks import get_task
from caring.train import start_run
from worlds.config import build_config

BASE = {"worlds": 16, "rollout": 32, "hidden": 32, "checkpoint_every": 2, "seed": 5, "steps": 4 * 1024,
        "mat_learned_weight": 0.5, "demo_episodes": 2, "beta_schedule": "adaptive", "labels": 48,
        "segment_length": 8, "reward_model_steps": 4}  # fmt: skip
# lava-rlmf is lava's RLMF recipe as its defaults have it (Task.method_defaults), so LAVA sets none of it
LAVA = {k: v for k, v in BASE.items() if k != "mat_learned_weight"} | {"steps": 4 * 512, "reward_scale": 1.0}
LAVA_RLMF_FIRST = {  # lava's RLMF as this golden recorded it before that recipe changed
    "mat_learned_weight": 0.5, "mat_judge": "transition", "mat_penalty": 1.0, "critics": "shared",
    "value_norm": False, "adv_norm": "per-stream", "harm_threshold_relative": 0.0,
}  # fmt: skip
LAGRANGIAN = {**BASE, "method": "ppo-lagrangian", "cost_limit": 1e-3, "lagrange_lr": 1.0}
CASES = {  # name: (world, world settings, training settings); every setting a default could change is set,
    # but lava-rlmf's: it is lava's RLMF recipe as its defaults have it
    "ppo": ("nursery", {}, {**BASE, "method": "ppo"}),
    "rlmf-constant": ("nursery", {}, {**BASE, "method": "rlmf", "beta_schedule": "constant"}),
    "rlmf-linear": ("nursery", {}, {**BASE, "method": "rlmf", "beta_schedule": "linear", "beta_horizon": 3}),
    "rlmf-exp": ("nursery", {}, {**BASE, "method": "rlmf", "beta_schedule": "exp", "beta_kappa": 0.3}),
    "rlmf-adaptive": ("nursery", {}, {**BASE, "method": "rlmf", "harm_threshold": 0.09}),
    "rlmf-adaptive-weaned": ("nursery", {}, {**BASE, "method": "rlmf", "steps": 3072, "wean_steps": 1024}),
    "rlmf-rules-only": ("nursery", {}, {**BASE, "method": "rlmf", "mat_learned_weight": 0.0}),
    "rlhf": ("nursery", {}, {**BASE, "method": "rlhf"}),
    "rlaif": ("nursery", {}, {**BASE, "method": "rlaif", "query": "random"}),
    "kindness": ("nursery", {}, {**BASE, "method": "kindness"}),
    "tom": ("nursery", {}, {**BASE, "method": "tom"}),
    "ppo-lagrangian": ("nursery", {}, LAGRANGIAN),
    "choice": ("nursery", {}, {**BASE, "method": "choice"}),
    "lava-ppo": ("lava", {}, {**LAVA, "method": "ppo"}),
    "lava-rlmf": ("lava", {}, {**LAVA, "method": "rlmf"}),  # lava's RLMF recipe (Task.method_defaults)
    "lava-rlmf-first": ("lava", {}, {**LAVA, **LAVA_RLMF_FIRST, "method": "rlmf"}),
}
GOLDEN = {  # name: (sha256 of metrics.csv, sha256 of mother.safetensors)
    "ppo": (
        "db9f42a35e907039b892a3821ce0b21bf7eea907e1f4c1a7e43f4ca91c0fc592",
        "f416bed80541a68c3aac64239eca2742fa11209ae95921205917739a5550a13a",
    ),
    "rlmf-constant": (
        "5efde13eadecdf9a46ad17feaf1dc83e2cd5eb696801f871230d878df10fbfb4",
        "a7c94c56e8f6aecbb5796475ac0a0b54109ef37f534e5bd3b0a14b562b80e215",
    ),
    "rlmf-linear": (
        "67cb61d5ecabb6b03dc466090958cd45509775a4678b486e71183cbb67ab53a4",
        "5b8815b4c2ecf3a45eb4663300e2399b960f4036a2aff5c4340ea21030c52963",
    ),
    "rlmf-exp": (
        "0571bc9dce4443314a1421fa3b3cdf42a6bab233f487995e5ef392e189f454dc",
        "15404edb5c5ea3437bbf4ff65d63c6a8f7693c320c789d1da3f84ac31b9d8c83",
    ),
    "rlmf-adaptive": (
        "504bf076c9390e7f9bf5964f43f383693c17bd873d1f4a7ac84eb678fd030d92",
        "17be0ff3dd9c5920a28ca9c10e06a617ba46871a6808a3d1394d6a5d9890fb2f",
    ),
    "rlmf-adaptive-weaned": (
        "c59e0ab4a0b85115721e59054fa6b07a9e5ef23d41795580996cd340c6a59838",
        "41cb746b8d8b2ee80dd5922913039983cd7bc21c010d0b5c567c521df7151e72",
    ),
    "rlmf-rules-only": (
        "7a68bc5a1b11ebe37e1029a73c232779331789633eeedf9f39fcec9a91bcb7fb",
        "666fa2a2332922a3be8e40f133fcf30b110471c1d244bbe23d1322e7c5509ca6",
    ),
    "rlhf": (
        "84ea67e1c60fee7603eb4dfcce66c23d4689f7ded9c46006330b91c7ca98adbc",
        "388cc904f1a964b07a6fe21dd22b8c3142eb5ff2dbe4579fd7e5e57fb180de8b",
    ),
    "rlaif": (
        "6be3cd2f38319360ddb6a164289876bba01daecf8f9fb7b614c9c602d1d288d1",
        "874fe5ee59321c33e116a1af939d58fe0bf8c86407d5636f457dc287016159ed",
    ),
    "kindness": (
        "ce55c2a6eb2c140e1c0a8393f5e75704363c26b5a58266f8163765039513435b",
        "6bf3c8caa9339be2edf04bed034e6c161ace7fe53554f8f6f33a2e097af1c6f5",
    ),
    "tom": (
        "385ebb5b905549377bbc6dc96b70b67be813dab46cfcd17756dcb06f85f0a5db",
        "6e97e31021e82573fd3d2a7e5469e6cca0ec40d2c4be5bd7443bd8739943ccbf",
    ),
    "ppo-lagrangian": (
        "1ab3f4be4127489b460a69bbb06efdade80d96be4ebc16264aed3ab565a0f959",
        "3921d57e024e46a198fa6bdc4c67bf734686d8987466c3b2f0b8a1debaf60aeb",
    ),
    "choice": (
        "468d69bf2b1b86011115fa67da878deb335d2448f01696c32ef19a7f2974dcc9",
        "97da1602b08fbf52690c6320658180f92c6d954d2986bfa8c46da3a067856af8",
    ),
    "lava-ppo": (
        "1e66fa802dfe8a132c95ab7c002893e287cd1def2192903d9cb1c5109d851b38",
        "632ce79209126a5324ff831b254ec5c11e14b86fe967d845d4b2b90501e1068e",
    ),
    "lava-rlmf": (
        "801b360619dd7c268258974a0226ed288f1f5f22f29052369307fad3c26400a4",
        "31a490f1ccd15c8fda5f22da59d9199902d3161f2629212241fe087a20e166af",
    ),
    "lava-rlmf-first": (  # recorded before lava's RLMF recipe changed: the first milestone's settings
        "67a0fda8aff1b4b703985b9c26e2d87e3278d7ebb86bc86388ace2e065d41156",
        "0df9fffc81ce18641a6765fcefb9f4bb5d6c59a9f7c067046093a73309190ec8",
    ),
}
PLATFORM = "fa9245575ca7016d24197556c0e7feffd515ba0a0f1551ea95e851c6c5f3ce04"


def float_fingerprint() -> str:
    """sha256 of the gradients of a fixed network on fixed inputs, one thread: the CPU's float kernels."""
    torch.manual_seed(0)
    net = MotherNet(500, 9, 32)
    obs = torch.randint(0, 256, (64, 500), dtype=torch.uint8)
    logits, v_task, v_mat = net(obs)
    (logits.pow(2).sum() + v_task.sum() + v_mat.sum()).backward()
    return hashlib.sha256(b"".join(p.grad.numpy().tobytes() for p in net.parameters())).hexdigest()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", CASES)
def test_a_tiny_run_is_byte_identical_to_its_golden_hashes(name, tmp_path, one_thread):
    if float_fingerprint() != PLATFORM:
        pytest.skip("this CPU's float kernels differ from those the golden hashes were recorded with")
    world, world_settings, settings = CASES[name]
    task = get_task(world)
    run = tmp_path / "run"
    start_run(run, build_config(task.config_class, world_settings), train_config(task, settings), "cpu",
              resume=False, log=lambda message: None).run()  # fmt: skip
    files = ("metrics.csv", "mother.safetensors")
    assert tuple(hashlib.sha256((run / f).read_bytes()).hexdigest() for f in files) == GOLDEN[name]
