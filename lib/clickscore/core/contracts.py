"""Load the declarative contracts in `schemas/`: source layouts and table schemas.

The same `TableSchema` object gives the Spark schema used on read, the Delta DDL, and the
check at the write boundary, so the three cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import yaml
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clickscore.core.errors import SchemaDriftError
from clickscore.core.paths import schemas_dir

_SIMPLE_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "bigint": T.LongType(),
    "int": T.IntegerType(),
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "boolean": T.BooleanType(),
    "timestamp": T.TimestampType(),
    "date": T.DateType(),
}
_ARRAY = re.compile(r"^array<(\w+)>$")
_ARRAY_OF_STRUCT = re.compile(r"^array<struct<(\w+:\w+(?:,\w+:\w+)*)>>$")


def spark_type(name: str) -> T.DataType:
    """The Spark type for a contract type name: `bigint`, `array<int>`, or an array of flat
    structs, `array<struct<item_id:bigint,score:float>>`."""
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    match = _ARRAY.match(name)
    if match and match.group(1) in _SIMPLE_TYPES:
        return T.ArrayType(_SIMPLE_TYPES[match.group(1)], containsNull=True)
    match = _ARRAY_OF_STRUCT.match(name)
    if match:
        fields = [part.split(":") for part in match.group(1).split(",")]
        if all(kind in _SIMPLE_TYPES for _, kind in fields):
            return T.ArrayType(T.StructType([T.StructField(field, _SIMPLE_TYPES[kind], True)
                                             for field, kind in fields]), containsNull=True)
    raise ValueError(f"unknown column type {name!r} in a schema contract")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    comment: str = ""


@dataclass(frozen=True)
class TableSchema:
    """A published table's contract."""

    table: str
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    stats_columns: tuple[str, ...] = ()
    comment: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def struct(self) -> T.StructType:
        return T.StructType(
            [T.StructField(c.name, spark_type(c.type), c.nullable) for c in self.columns]
        )

    def ddl(self, location: str | None = None) -> str:
        """`CREATE TABLE IF NOT EXISTS` for this contract, as a Delta table."""
        cols = ",\n  ".join(
            # struct field names keep their case; the rest reads as SQL usually does
            f"`{c.name}` {c.type if 'struct<' in c.type else c.type.upper()}"
            + ("" if c.nullable else " NOT NULL")
            + (f" COMMENT {_sql_string(c.comment)}" if c.comment else "")
            for c in self.columns
        )
        parts = [f"CREATE TABLE IF NOT EXISTS {self.table} (\n  {cols}\n) USING DELTA"]
        if self.partition_by:
            parts.append(f"PARTITIONED BY ({', '.join(self.partition_by)})")
        if location:
            parts.append(f"LOCATION {_sql_string(location)}")
        if self.comment:
            parts.append(f"COMMENT {_sql_string(self.comment)}")
        if self.stats_columns:
            parts.append("TBLPROPERTIES ('delta.dataSkippingStatsColumns' = "
                         f"{_sql_string(','.join(self.stats_columns))})")
        return "\n".join(parts)

    def check(self, df: DataFrame, run_date: str | None = None) -> None:
        """Raise SchemaDriftError unless `df` has exactly this contract's columns and types."""
        expected = {f.name: f.dataType for f in self.struct.fields}
        found = {f.name: f.dataType for f in df.schema.fields}
        missing = expected.keys() - found.keys()
        unexpected = found.keys() - expected.keys()
        mismatched = [
            f"{name}: expected {expected[name].simpleString()}, found {found[name].simpleString()}"
            for name in expected.keys() & found.keys()
            if expected[name] != found[name]
        ]
        if missing or unexpected or mismatched:
            raise SchemaDriftError(
                self.table,
                missing=missing,
                unexpected=unexpected,
                mismatched=mismatched,
                run_date=run_date,
            )

    def conform(self, df: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
        """Select the contract's columns in order, cast to the contract's types; `keep`
        names extra columns to carry along (a MERGE's operation column)."""
        missing = set(self.names) - set(df.columns)
        if missing:
            raise SchemaDriftError(self.table, missing=missing)
        return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in self.struct]
                         + [F.col(c) for c in keep])


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class SourceColumn:
    """A raw column; `number` says it holds an `integer` or a `decimal`, which the event id
    hashes in one canonical form (`ingest.sources.base.event_id`)."""

    name: str
    required: bool = True
    number: str | None = None

    def __post_init__(self) -> None:
        if self.number not in (None, *NUMBER_KINDS):
            raise ValueError(f"column {self.name}: number must be one of {NUMBER_KINDS}, "
                             f"got {self.number!r}")


NUMBER_KINDS = ("integer", "decimal")


FILE_FORMATS = ("delimited", "jsonl", "parquet")


@dataclass(frozen=True)
class FileFormat:
    """How a source's files are encoded: delimited text (its delimiter, quote character and
    whether the first line is a header), JSON Lines (one object per line, fields by name) or
    Parquet (columns by name)."""

    kind: str = "delimited"
    delimiter: str = ","
    quote: str = '"'
    header: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FILE_FORMATS:
            raise ValueError(f"file format must be one of {FILE_FORMATS}, got {self.kind!r}")
        if len(self.delimiter) != 1 or len(self.quote) > 1:
            raise ValueError(f"a delimiter is one character and a quote at most one, got "
                             f"{self.delimiter!r} and {self.quote!r}")


@dataclass(frozen=True)
class SourceLayout:
    """How a source's raw files are laid out: file format, column order, required columns."""

    source: str
    format: FileFormat
    columns: tuple[SourceColumn, ...]

    @property
    def has_header(self) -> bool:
        """Delimited text with a header line (JSON and Parquet name their fields)."""
        return self.format.kind == "delimited" and self.format.header

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


def _contract(kind: str, name: str) -> dict:
    path = schemas_dir() / kind / f"{name}.yaml"
    if not path.exists():
        raise KeyError(f"no {kind} contract {name!r} (looked for {path})")
    return yaml.safe_load(path.read_text())


@cache
def table_schema(table: str) -> TableSchema:
    """The contract of a published table, by name (`bronze.events`)."""
    spec = _contract("tables", table)
    base = table_schema(spec["extends"]).columns if "extends" in spec else ()
    return TableSchema(
        table=spec["table"],
        columns=base + tuple(Column(**c) for c in spec["columns"]),
        partition_by=tuple(spec.get("partition_by") or ()),
        keys=tuple(spec.get("keys") or ()),
        stats_columns=tuple(spec.get("stats_columns") or ()),
        comment=spec.get("comment", ""),
    )


@cache
def source_layout(source: str) -> SourceLayout:
    """The raw file layout of a source, by name (`rees46`)."""
    spec = _contract("sources", source)
    return SourceLayout(
        source=spec["source"],
        format=FileFormat(**spec["format"]),
        columns=tuple(SourceColumn(**c) for c in spec["columns"]),
    )
