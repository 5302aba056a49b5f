"""The `sql` command's typed config: analysts' and scripts' door to the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickscore.core.commands import Command, option


@dataclass(frozen=True)
class SqlConfig:
    """A Spark SQL query against the catalog, printed for a person or a script."""

    query: str = field(metadata=option("Spark SQL, e.g. \"SELECT * FROM silver.sessions\"",
                                       positional=True))
    format: str = field(default="table", metadata=option(
        "output format", choices=lambda: ("table", "csv", "json")))
    limit: int = field(default=1_000, metadata=option("rows printed at most"))


COMMANDS = (Command("sql", "run Spark SQL against the catalog and print the result", SqlConfig,
                    "clickscore.core.display:run_sql"),)
