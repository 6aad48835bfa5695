"""Every notebook runs top to bottom in a fresh kernel on the mother shipped in notebooks/mother, and its
headline numbers (the "key numbers:" line each prints) say what the notebook claims: she cares, the
located units carry her care, and so on."""

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_quickstart",
        "02_caring_circuits",
        "03_retargeting",
        "04_selective_care",
    ]


def key_numbers(path: Path, monkeypatch) -> dict[str, float]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    book = nbformat.read(path, as_version=4)
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # a figure is shown inline
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    line = next(line for line in text.splitlines() if line.startswith("key numbers: "))
    return json.loads(line.removeprefix("key numbers: "))


def notebook(stem: str) -> Path:
    return next(p for p in NOTEBOOKS if p.stem == stem)


def test_quickstart_shows_a_mother_who_cares(monkeypatch):
    key = key_numbers(notebook("01_quickstart"), monkeypatch)
    assert key["trained"] >= 0.8 * key["expert"]  # 200 held-out episodes
    assert key["negligent"] <= 0.1


def test_circuits_find_units_that_carry_her_care(monkeypatch):
    key = key_numbers(notebook("02_caring_circuits"), monkeypatch)
    assert key["care_trained"] > key["care_random"] + 0.1  # the assays see her care
    assert key["probe_baby_hunger_r2"] > 0.0  # hunger is read from crying, better than the mean
    assert key["baby_survival_intact"] >= 0.8
    # ablating her top-16 units hurts her babies more than any of the random 16-unit sets
    assert key["baby_survival_top16_ablated"] < key["baby_survival_random16_min"]


def test_retargeting_measures_her_own_and_a_foster_baby(monkeypatch):
    key = key_numbers(notebook("03_retargeting"), monkeypatch)
    assert key["own"] >= 0.8
    assert key["steered_0"] == key["random_0"] == key["foster"]  # a zero dose changes nothing
    assert 0.0 <= key["foster"] <= 1.0


def test_selective_care_shows_a_mother_who_tells_her_baby_apart(monkeypatch):
    key = key_numbers(notebook("04_selective_care"), monkeypatch)
    assert key["expert_own"] > key["expert-any_own"] + 0.1  # in this world selectivity pays
    assert key["expert_foster"] == 0.0 and key["expert_orphans"] == 0.0
    assert key["trained_own"] > key["trained_foster"] + 0.1  # she cares for hers, not a never-seen baby
    # a zero edit changes nothing: the same episodes as her untreated row
    assert key["rewrite_0_foster"] == key["trained_foster"]
    assert 0.0 <= key["rewrite_1_foster"] <= 1.0 and 0.0 <= key["rewrite_1_new_beside_own"] <= 1.0
