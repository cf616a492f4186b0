"""Execute docs/notebook.ipynb in a real Jupyter kernel and save it with its outputs.

The saved outputs are what a reader sees on GitHub or in Jupyter without running anything, and
``tests/test_teaching_docs.py`` checks that they are still what the code displays. Run this after
changing the notebook or the displays:

    pip install '.[notebook]'          # nbformat, nbclient, ipykernel
    python docs/execute_notebook.py

The kernel imports symcnn from this checkout (``PYTHONPATH``), not from an installed copy.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent / "notebook.ipynb"


def execute(path: Path = NOTEBOOK, timeout: int = 300) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    root = str(path.parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.validate(notebook)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        nbformat.write(notebook, file)
    os.chmod(temporary, path.stat().st_mode & 0o777)  # mkstemp makes it private
    os.replace(temporary, path)


if __name__ == "__main__":
    execute(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else NOTEBOOK)
    print(f"executed and saved {NOTEBOOK.name if len(sys.argv) == 1 else sys.argv[1]}")
