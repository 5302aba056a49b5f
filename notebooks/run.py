"""Run the notebooks top to bottom against a data root, headless (`make notebooks`).

    python notebooks/run.py --data-root .clickscore [01_sessions_and_funnel ...]

The notebooks run in one kernel (the venv's ipykernel) with $CLICKSCORE_DATA_ROOT set, from
this folder, as Jupyter would, its namespace cleared (`%reset -f`) before each, so each must
import and build what it uses while the Spark session (and its JVM) starts once;
`--kernel-per-notebook` gives each its own kernel instead. The executed copy, outputs and
plots included, is written to <data root>/notebooks/, the kernel's own stderr to
kernel.log beside them. Exits 1 naming the notebook and the error of the first failing cell.
The notebooks in git carry no outputs (`--strip` removes them after editing)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO

import nbformat
from jupyter_client.manager import AsyncKernelManager as KernelManager
from jupyter_core.utils import run_sync
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


def execute(path: Path, data_root: Path, kernel: KernelManager | None = None,
            timeout: int = 600) -> nbformat.NotebookNode:
    """Execute one notebook against `data_root` in `kernel` (a new one when None); its
    executed copy is written under the data root."""
    notebook = nbformat.read(path, as_version=4)
    out = data_root / "notebooks" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kernel is None:
            with out.with_suffix(".kernel.log").open("w") as kernel_log:
                _client(notebook).execute(**_kernel_args(data_root, kernel_log))
        else:
            _client(notebook, kernel).execute()
    finally:
        nbformat.write(notebook, out)
    return notebook


def _client(notebook: nbformat.NotebookNode, kernel: KernelManager | None = None,
            timeout: int = 600) -> NotebookClient:
    return NotebookClient(notebook, km=kernel, timeout=timeout, kernel_name="python3",
                          resources={"metadata": {"path": str(HERE)}})


def _kernel_args(data_root: Path, log: TextIO) -> dict:
    # the kernel gets the data root in its environment; its own stderr (the JVM's,
    # Jupyter's) goes to a log
    return {"env": {**os.environ, "CLICKSCORE_DATA_ROOT": str(data_root)}, "cwd": str(HERE),
            "stdout": log, "stderr": log}


@contextmanager
def shared_kernel(data_root: Path) -> Iterator[KernelManager]:
    """One kernel for several notebooks, shut down at the end."""
    log_path = data_root / "notebooks" / "kernel.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kernel = KernelManager(kernel_name="python3")
    with log_path.open("w") as log:
        run_sync(kernel.start_kernel)(**_kernel_args(data_root, log))
        try:
            yield kernel
        finally:
            run_sync(kernel.shutdown_kernel)(now=True)


def reset(kernel: KernelManager) -> None:
    """Clear the kernel's namespace (`%reset -f`): the next notebook starts from nothing it
    did not import or build itself."""
    blank = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%reset -f")])
    _client(blank, kernel).execute()


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
    parser.add_argument("--kernel-per-notebook", action="store_true",
                        help="a new kernel (and Spark session) for each notebook")
    args = parser.parse_args(argv)
    paths = notebooks(args.names)
    if args.strip:
        for path in paths:
            strip(path)
        return 0
    data_root = args.data_root.resolve()
    with ExitStack() as stack:
        kernel = None if args.kernel_per_notebook else stack.enter_context(
            shared_kernel(data_root))
        for path in paths:
            started = time.monotonic()
            try:
                if kernel is not None:
                    reset(kernel)
                executed = execute(path, data_root, kernel)
            except CellExecutionError as exc:
                last = [line for line in str(exc).splitlines() if line.strip()][-1]
                out = args.data_root / "notebooks" / path.name
                log = out.with_suffix(".kernel.log") if kernel is None else (
                    out.parent / "kernel.log")
                print(f"{path.name}: a cell failed: {last} (executed copy: {out}; kernel log: "
                      f"{log})", file=sys.stderr)
                return 1
            print(f"{path.name}: {images(executed)} plots in "
                  f"{time.monotonic() - started:.1f}s -> "
                  f"{args.data_root / 'notebooks' / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
