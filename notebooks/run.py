"""Run the notebooks top to bottom against a data root, headless (`make notebooks`).

    python notebooks/run.py --data-root .clickscore [01_sessions_and_funnel ...]

Each notebook runs in its own kernel (the venv's ipykernel) with $CLICKSCORE_DATA_ROOT set,
from this folder, as Jupyter would; the executed copy, outputs and plots included, is written
to <data root>/notebooks/. Exits 1 naming the notebook and the error of the first failing
cell. The notebooks in git carry no outputs (`--strip` removes them after editing)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def notebooks(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if names:
        found = [p for p in found if p.stem in names or p.name in names]
        missing = set(names) - {p.stem for p in found} - {p.name for p in found}
        if missing:
            raise SystemExit(f"no such notebook in {HERE}: {sorted(missing)}")
    return found


def images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG plots the executed notebook shows."""
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def execute(path: Path, data_root: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute one notebook against `data_root`; its executed copy is written under it."""
    notebook = nbformat.read(path, as_version=4)
    out = data_root / "notebooks" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    # the kernel gets the data root in its environment; its own stderr (the JVM's,
    # Jupyter's) goes to a log beside the executed copy
    try:
        with out.with_suffix(".kernel.log").open("w") as kernel_log:
            NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(HERE)}}).execute(
                               env={**os.environ, "CLICKSCORE_DATA_ROOT": str(data_root)},
                               stdout=kernel_log, stderr=kernel_log)
    finally:
        nbformat.write(notebook, out)
    return notebook


def strip(path: Path) -> None:
    """Remove outputs and execution counts, as the notebooks are kept in git."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata = {}
    nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("CLICKSCORE_DATA_ROOT", ".clickscore")))
    parser.add_argument("--strip", action="store_true",
                        help="strip the outputs of the notebooks in git instead")
    args = parser.parse_args(argv)
    for path in notebooks(args.names):
        if args.strip:
            strip(path)
            continue
        started = time.monotonic()
        try:
            executed = execute(path, args.data_root.resolve())
        except CellExecutionError as exc:
            last = [line for line in str(exc).splitlines() if line.strip()][-1]
            out = args.data_root / "notebooks" / path.name
            print(f"{path.name}: a cell failed: {last} (executed copy: {out}; kernel log: "
                  f"{out.with_suffix('.kernel.log')})", file=sys.stderr)
            return 1
        print(f"{path.name}: {images(executed)} plots in {time.monotonic() - started:.1f}s -> "
              f"{args.data_root / 'notebooks' / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
