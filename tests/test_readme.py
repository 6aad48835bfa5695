"""The README's Python example runs as written, and its two commands are the ones CI uses."""

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    spaces = []
    for block in blocks:
        spaces.append({})
        exec(compile(textwrap.dedent(block), "README.md", "exec"), spaces[-1])
    assert spaces[0]["obs"].shape == (4096, 3, 500)
    assert spaces[1]["acts"]["hook_trunk_2"].shape == (32, 128)
    assert [r["episodes"] for r in spaces[2]["results"]] == [16, 16, 16]  # mothers side by side
    assert spaces[3]["obs"].shape == (64, 500) and spaces[3]["rewards"].shape == (64,)  # the vector env
    assert spaces[4]["Steady"].name == "steady"  # the training-method example (tests/test_streams.py runs it)


def test_ci_runs_the_readme_test_command():
    commands = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    test_command = next(line for line in commands.splitlines() if "pytest" in line)
    assert test_command in (ROOT / ".ci" / "run").read_text()
