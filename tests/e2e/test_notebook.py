"""``notebooks/predictive_maintenance.ipynb`` executed top to bottom in a real Jupyter kernel.

A notebook that does not run is a broken promise; this runs every cell with nbclient (the
ipykernel of this environment) and checks what the cells computed, not only that they ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "predictive_maintenance.ipynb"


def test_the_predictive_maintenance_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["PLANTWATCH_NOTEBOOK_DIR"] = str(tmp_path / "work")
    try:
        NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        os.environ.pop("PLANTWATCH_NOTEBOOK_DIR", None)
    errors = [
        out for cell in nb.cells for out in cell.get("outputs", []) if out["output_type"] == "error"
    ]
    assert not errors
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    work = tmp_path / "work"
    # what its evaluation cell measured: the PCA model found the bearing wear, and quickly
    evaluation = {r["model"]: r for r in json.loads((work / "evaluation.json").read_text())}
    assert set(evaluation) == {"pca", "iforest"}
    assert evaluation["pca"]["detected"] is True
    assert float(evaluation["pca"]["delay (min)"]) < 30
    # the model it registered and promoted, and the listing it printed
    assert (work / "models" / "centrifugal_pump" / "promoted.json").is_file()
    assert "centrifugal_pump/pca/v1" in text
    # the RUL table per machine
    assert "time to failure" in text
