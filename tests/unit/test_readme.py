"""The README is for users, so it must stay true: its reference sections equal what the code
and schemas/ generate, every column is described, every environment variable the code reads
is documented, and every command it shows is one the tools accept and a test runs."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from clickscore.cli import GROUP_HELP, commands
from clickscore.core.commands import build_parser
from clickscore.core.contracts import table_schema
from clickscore.core.paths import schemas_dir
from clickscore.reference import ENVIRONMENT, rewrite

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
# the commands other than `clickscore` and `make` that the README shows, and the test that
# runs each (a new kind of command needs its test named here)
RUN_BY = {
    "spark-submit": "tests/cluster/test_cluster.py",
    "airflow dags test": "tests/cluster/test_cluster.py",
    "airflow dags reserialize": "tests/cluster/test_cluster.py",
    "airflow backfill create": "tests/cluster/test_cluster.py",
    "airflow db migrate": "tests/cluster/test_cluster.py",
}


def shell_commands(text: str) -> list[str]:
    """Each command line in the README's code blocks: continuations joined, comments and
    prompts dropped, shell loops' bodies included."""
    found = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        pending = ""
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if not pending:
                line = re.sub(r"\s+#\s.*$", "", line).strip()
                if not line or line.startswith(("#", "for ", "done", "export ")) or \
                        not re.match(r"^[\w./$=-]", line):
                    continue
            pending = f"{pending} {line.strip()}".strip()
            try:  # a quoted argument may span lines
                shlex.split(pending)
            except ValueError:
                continue
            found.append(pending)
            pending = ""
    return found


def without_env(line: str) -> list[str]:
    words = shlex.split(line.replace("$day", "2019-10-01"))
    if words and words[-1] == "&":
        words.pop()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def readme_commands(program: str) -> list[list[str]]:
    """The README's invocations of `program` (by its last path part), as argv lists."""
    out = []
    for line in shell_commands(README.read_text()):
        words = without_env(line)
        if words and Path(words[0]).name == program:
            out.append(words[1:])
    return out


def test_the_reference_sections_are_what_the_code_generates():
    text = README.read_text()
    assert rewrite(text) == text, \
        "README.md is stale: run `python -m clickscore.reference --write README.md`"


def test_every_column_of_every_table_is_described():
    undocumented = [f"{path.stem}.{column.name}"
                    for path in sorted((schemas_dir() / "tables").glob("*.yaml"))
                    for column in table_schema(path.stem).columns if not column.comment.strip()]
    assert undocumented == []


def test_every_environment_variable_the_code_reads_is_documented():
    used = set()
    for folder in ("lib", "airflow_dags", "jobs"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\bCLICKSCORE_[A-Z_]+\b", path.read_text()))
    documented = {name for name, _ in ENVIRONMENT}
    # CLICKSCORE_TEST_ARTIFACTS is the test suite's own
    assert used - {"CLICKSCORE_TEST_ARTIFACTS"} == documented


# the helpers that run a clickscore command line, in a process or in this one
CLI_CALLERS = {"run_cli", "invoke_cli", "invoke", "run", "cli", "_cli", "main"}


def invocations_in_tests() -> tuple[set[str], list[tuple[str, ...]]]:
    """What the tests call, read from their syntax trees (not their text): every function
    name called, and the leading words of every command line they run (`run_cli("dq",
    "run", ...)`, `invoke([...])`, `[*CLI, "sql", ...]`)."""
    called: set[str] = set()
    argvs: list[tuple[str, ...]] = []

    def words(nodes: list[ast.expr]) -> tuple[str, ...]:
        out = []
        for node in nodes:
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                break
            out.append(node.value)
        return tuple(out)

    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == "test_readme.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else (
                    func.attr if isinstance(func, ast.Attribute) else "")
                called.add(name)
                if name in CLI_CALLERS and node.args:
                    first = node.args[0]
                    argvs.append(words(first.elts) if isinstance(first, ast.List | ast.Tuple)
                                 else words(node.args))
            elif isinstance(node, ast.List) and node.elts and isinstance(
                    node.elts[0], ast.Starred) and getattr(node.elts[0].value, "id", "") == "CLI":
                argvs.append(words(node.elts[1:]))
    return called, argvs


def test_every_clickscore_command_in_the_readme_parses_and_a_test_runs_it():
    by_name = {c.name: c for c in commands()}
    parser, _ = build_parser("clickscore", "", by_name.values(), GROUP_HELP)
    invocations = readme_commands("clickscore")
    assert len(invocations) > 20
    called, argvs = invocations_in_tests()
    used = set()
    for argv in invocations:
        if argv in (["--help"], []):
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README: `clickscore {shlex.join(argv)}` does not parse ({exc})")
        used.add(args.command_name)
    for name in sorted(used):
        function = by_name[name].entry.partition(":")[2]
        words = tuple(name.split())
        tested = function in called or any(argv[:len(words)] == words for argv in argvs)
        assert tested, f"no test runs `clickscore {name}` (neither {function}() nor the CLI)"


def test_the_invocation_check_reads_calls_not_text():
    called, argvs = invocations_in_tests()
    assert ("dq", "run") in {a[:2] for a in argvs}  # invoke_cli("dq", "run", ...)
    assert ("sql",) in {a[:1] for a in argvs}  # [*CLI, "sql", ...]
    assert "run_ingest" in called
    # a mention in a string or comment is no call
    tree = ast.parse('x = "run_report(spark)"  # run_report(\n')
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_every_make_target_in_the_readme_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    named = {argv[0] for argv in readme_commands("make") if argv}
    assert named and named <= targets, named - targets
    # and the two commands are the first ones the README gives
    assert "make demo" in README.read_text().split("## Two commands")[1][:800]
    assert "make test" in README.read_text().split("## Two commands")[1][:800]


def test_every_other_command_in_the_readme_is_run_by_a_named_test():
    for argv in readme_commands("spark-submit"):
        assert "jobs/" in " ".join(argv)
    shown = {"spark-submit"} if readme_commands("spark-submit") else set()
    shown |= {f"airflow {' '.join(argv[:2])}" for argv in readme_commands("airflow")
              if argv and argv[0] not in {"connections", "variables", "standalone"}}
    assert shown <= set(RUN_BY), shown - set(RUN_BY)
    for command, test in RUN_BY.items():
        assert command.split()[-1] in (ROOT / test).read_text(), (command, test)


@pytest.mark.skipif(not AIRFLOW_PYTHON.exists(), reason="make airflow makes .venv-airflow")
def test_every_airflow_command_in_the_readme_is_one_airflow_accepts():
    """Airflow's own parser accepts each line (the cluster test configures the same
    connections and variables through AIRFLOW_CONN_* and AIRFLOW_VAR_*)."""
    lines = readme_commands("airflow")
    assert any(argv[:2] == ["backfill", "create"] for argv in lines)
    probe = ("import sys, json\nfrom airflow.cli.cli_parser import get_parser\n"
             "for argv in json.loads(sys.argv[1]):\n    get_parser().parse_args(argv)\n")
    done = subprocess.run([str(AIRFLOW_PYTHON), "-c", probe, json.dumps(lines)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
