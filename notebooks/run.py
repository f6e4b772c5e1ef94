"""Runs prewarm's notebooks top to bottom, as CI does, and fails on the first cell that fails.

    python3 notebooks/run.py OUT_DIR NOTEBOOK.ipynb [NOTEBOOK.ipynb ...]

Inputs come from the environment each notebook names (PREWARM_SIMULATE_DIR, PREWARM_BACKTEST_DIR,
PREWARM_DATABASE__URL, ...). The executed copies, with their outputs, are written to OUT_DIR; the
notebooks in the repository stay without outputs.
"""

import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for arg in sys.argv[2:]:
        path = Path(arg).resolve()
        nb = nbformat.read(path, as_version=4)
        if any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            print(f"{path.name}: committed with outputs; clear them before committing", file=sys.stderr)
            failed += 1
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
            print(f"{path.name}: ran {sum(c.cell_type == 'code' for c in nb.cells)} cells")
        except CellExecutionError as e:
            # The kernel's traceback is coloured for a terminal: plain text reads better in CI logs.
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
            print(f"{path.name}: a cell failed\n{plain}", file=sys.stderr)
            failed += 1
        nbformat.write(nb, out / path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
