"""Reading landing files (IO at the edge of ingest): list them, check each file's columns
against the source layout, and read every record as raw text columns plus the record itself.

The layout declares the file format: delimited text (any delimiter and quote character, with
or without a header line), JSON Lines, or Parquet. Whatever the format, the reader yields the
same frame, so adapters and row rules never see the difference."""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clickscore.core.contracts import SourceLayout
from clickscore.core.errors import (
    BadInputFileError,
    InputNotFoundError,
    SchemaDriftError,
    UnreadableInputError,
)
from clickscore.core.frames import union_all
from clickscore.ingest.sources.base import RAW_PREFIX, open_quotes

log = logging.getLogger(__name__)

CORRUPT = "_corrupt"


def list_files(spark: SparkSession, path: str) -> list[str]:
    """Files under a path, glob or folder (recursively; hidden `_`/`.` files skipped).

    Uses Hadoop's FileSystem, so local paths, s3a:// and abfss:// behave alike.
    """
    return list(listed_files(spark, path))


Signature = tuple[int, int]  # a file's size and modification time (ms); (-1, -1): gone


def listed_files(spark: SparkSession, path: str) -> dict[str, Signature]:
    """`list_files` with each file's signature as the listing reported it (no second stat),
    for `changed_files` to compare with before publishing."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a classic (JVM) SparkSession is required to list files"
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    statuses = []
    for status in fs.globStatus(hadoop_path) or []:
        if status.isDirectory():
            found = fs.listFiles(status.getPath(), True)
            while found.hasNext():
                statuses.append(found.next())
        else:
            statuses.append(status)
    files = {s.getPath().toString(): _signature(s) for s in statuses}
    files = {f: files[f] for f in sorted(files)
             if not f.rsplit("/", 1)[-1].startswith(("_", "."))}
    if not files:
        raise InputNotFoundError(path)
    return files


def _signature(status: Any) -> Signature:
    return int(status.getLen()), int(status.getModificationTime())


def changed_files(spark: SparkSession, listed: dict[str, Signature]) -> dict[str, str]:
    """The files whose size or modification time differs from `listed` (`listed_files`),
    each with its sizes then and now (one stat per file)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a classic (JVM) SparkSession is required to stat files"
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    changed: dict[str, str] = {}
    for path, then in listed.items():
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        try:
            now = _signature(hadoop_path.getFileSystem(conf).getFileStatus(hadoop_path))
        except Py4JJavaError as exc:
            if "FileNotFoundException" not in str(exc):
                raise
            now = (-1, -1)
        if now != then:
            changed[path] = (f"{then[0]:,} bytes when listed, "
                             + ("gone now" if now[0] < 0 else f"{now[0]:,} bytes now"))
    return changed


def first_line(spark: SparkSession, path: str) -> str | None:
    """The file's first line, None for an empty file; UnreadableInputError when unreadable."""
    try:
        rows = spark.read.text(path).head(1)
    except (Py4JJavaError, PySparkException) as exc:
        cause = str(exc).strip().splitlines()[0][:300]
        raise UnreadableInputError(path, cause) from exc
    return rows[0].value if rows else None


def _fields(layout: SourceLayout, line: str) -> list[str]:
    fmt = layout.format
    reader = csv.reader([line], delimiter=fmt.delimiter, quotechar=fmt.quote or None,
                        quoting=csv.QUOTE_MINIMAL if fmt.quote else csv.QUOTE_NONE)
    return [f.strip() for f in next(reader)]


def _normal(name: str) -> str:
    return name.replace("_", "").replace(" ", "").replace("-", "").lower()


def _layout_name(layout: SourceLayout, column: str) -> str:
    """A header's column as the layout names it, matched leniently: public copies of a
    dataset spell headers differently (Diginetica's `sessionId` and the widely copied
    `session_id`), so case, `_`, `-` and spaces do not count."""
    matches = [n for n in layout.names if _normal(n) == _normal(column)]
    return matches[0] if len(matches) == 1 else column


def file_columns(layout: SourceLayout, path: str, head: str) -> list[str]:
    """The file's column order, checked against the layout's required columns."""
    if "\x00" in head or "\ufffd" in head:
        raise BadInputFileError(path, "its first line is not UTF-8 text (NUL characters or "
                                      "bytes UTF-8 cannot decode: a UTF-16 or Latin-1 "
                                      "export?); the layouts read UTF-8")
    if layout.has_header:
        columns = [_layout_name(layout, c) for c in _fields(layout, head)]
        missing = [c for c in layout.required if c not in columns]
        if missing:
            raise SchemaDriftError(path, missing=missing)
        extra = [c for c in columns if c not in layout.names]
        if extra:
            log.warning("%s has columns the %s layout does not know: %s", path,
                        layout.source, extra)
        return columns
    n_fields = len(_fields(layout, head))
    if n_fields < len(layout.names):
        raise SchemaDriftError(path, missing=layout.names[n_fields:])
    return layout.names


def read_raw(spark: SparkSession, layout: SourceLayout, files: list[str], *,
             quoted_newlines: bool = False) -> DataFrame:
    """Every record of `files` as `value` (the raw record), `_source_file`, `raw_<column>`...
    and `_corrupt` (the record's text when it cannot be split into the layout's fields).

    A delimited record is a line. With `quoted_newlines`, lines that leave a quoted field open
    are joined with the lines that close it into one record (`_joined_lines`): slower, one
    task per file, so ingest asks for it only for files where such lines were found."""
    if layout.format.kind == "delimited":
        frames = _read_delimited(spark, layout, files, quoted_newlines=quoted_newlines)
    else:
        readers = {"jsonl": _read_json_lines, "parquet": _read_parquet}
        frames = readers[layout.format.kind](spark, layout, files)
    if not frames:
        schema = ", ".join(["value STRING", "_source_file STRING"]
                           + [f"`{RAW_PREFIX}{c}` STRING" for c in layout.names]
                           + [f"{CORRUPT} STRING"])
        return spark.createDataFrame([], schema)
    return union_all(frames)


def _lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    return spark.read.text(paths).select(
        "value", F.col("_metadata.file_path").alias("_source_file"))


MAX_RECORD_LINES = 20  # the most lines one record joined across quoted newlines may span
PARTS = "_parts"  # the lines a joined record was made of


def _joined_lines(spark: SparkSession, paths: list[str], quote: str) -> DataFrame:
    """Each file's lines in file order (block offset, then position in the block), a line
    that opens a quoted field joined by newlines with the lines up to the one that closes it:
    `value` the record, `_parts` its lines."""
    lines_df = spark.read.text(paths).select(
        "value", F.col("_metadata.file_path").alias("_source_file"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_n"))  # in read order within a block
    in_file = Window.partitionBy("_source_file").orderBy("_block", "_n")
    opened_before = F.coalesce(F.sum(open_quotes(F.col("value"), quote).cast("int")).over(
        in_file.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0)) % 2 == 1
    record = F.sum((~opened_before).cast("int")).over(
        in_file.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    parts = F.transform(F.array_sort(F.collect_list(F.struct("_block", "_n", "value"))),
                        lambda line: line["value"])
    return (lines_df.withColumn("_record", record)
            .groupBy("_source_file", "_record").agg(parts.alias(PARTS))
            .select(F.array_join(PARTS, "\n").alias("value"), "_source_file", PARTS))


def _raw_frame(fields_df: DataFrame, layout: SourceLayout, present: Sequence[str]) -> DataFrame:
    """The reader's frame: the layout's raw columns (null where a file lacks one)."""
    return fields_df.select(
        "value", "_source_file",
        *[(F.col(RAW_PREFIX + c) if c in present
           else F.lit(None).cast("string")).alias(RAW_PREFIX + c) for c in layout.names],
        CORRUPT,
    )


def _read_delimited(spark: SparkSession, layout: SourceLayout, files: list[str], *,
                    quoted_newlines: bool = False) -> list[DataFrame]:
    """Header lines are dropped; a line whose field count differs from its file's header
    keeps its text in `_corrupt`. Files are grouped by header so column order may differ.
    With `quoted_newlines` (and a quote character), lines joined by `_joined_lines` are one
    record where the join parses into the right fields with every newline inside a quoted
    field and spans at most MAX_RECORD_LINES; otherwise (a stray quote character) its lines
    stay records of their own, as without."""
    groups: dict[tuple[tuple[str, ...], str | None], list[str]] = defaultdict(list)
    empty_files = []
    for path in files:
        head = first_line(spark, path)
        if head is None:
            empty_files.append(path)
            continue
        columns = tuple(file_columns(layout, path, head))
        groups[(columns, head if layout.has_header else None)].append(path)
    if empty_files:
        log.warning("empty input files: %s", empty_files)

    # a quote inside a quoted field is doubled (RFC 4180, as Python's csv reads the header),
    # not escaped with a backslash (Spark's default)
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT,
               "sep": layout.format.delimiter, "quote": layout.format.quote or "\u0000",
               "escape": layout.format.quote or "\\"}
    frames = []
    for (columns, header_line), paths in groups.items():
        names = [RAW_PREFIX + c if c in layout.names else f"_extra_{i}"
                 for i, c in enumerate(columns)]
        ddl = ", ".join(f"`{n}` STRING" for n in names) + f", `{CORRUPT}` STRING"
        joined = quoted_newlines and bool(layout.format.quote)
        lines_df = (_joined_lines(spark, paths, layout.format.quote) if joined
                    else _lines(spark, paths))
        if header_line is not None:
            lines_df = lines_df.where(F.col("value") != F.lit(header_line))
        parsed = F.from_csv("value", F.lit(ddl), options)
        # inline(array(struct)) parses each line once: with a plain struct column the
        # optimizer copies from_csv into every field reference and pushed-down filter.
        fields_df = lines_df.select("value", "_source_file", *([PARTS] if joined else []),
                                    F.inline(F.array(parsed)))
        if joined:
            fields_df = _split_unless_whole(fields_df, names, ddl, options)
        frames.append(_raw_frame(fields_df, layout, columns))
    return frames


def _split_unless_whole(fields_df: DataFrame, names: list[str], ddl: str,
                        options: dict[str, str]) -> DataFrame:
    """Joined records that are whole, and the lines of the others parsed one by one."""
    text = F.concat_ws("", *[F.coalesce(F.col(n), F.lit("")) for n in names])
    newlines_inside = F.length(text) - F.length(F.replace(text, F.lit("\n"), F.lit("")))
    lines = F.size(PARTS)
    whole = (lines == 1) | (F.col(CORRUPT).isNull() & (lines <= MAX_RECORD_LINES)
                            & (newlines_inside == lines - 1))
    kept_df = fields_df.where(whole).drop(PARTS)
    split_df = (fields_df.where(~whole).select("_source_file", F.explode(PARTS).alias("value"))
                .select("value", "_source_file",
                        F.inline(F.array(F.from_csv("value", F.lit(ddl), options)))))
    return kept_df.unionByName(split_df)


def _read_json_lines(spark: SparkSession, layout: SourceLayout, files: list[str]
                     ) -> list[DataFrame]:
    """One JSON object per line, fields by name (any JSON value is kept as its text); a line
    that is not a JSON object keeps its text in `_corrupt`. A missing field is null, and the
    row rules quarantine the row when the field is required."""
    ddl = ", ".join(f"`{RAW_PREFIX}{c}` STRING" for c in layout.names) + f", `{CORRUPT}` STRING"
    renamed = {f"{RAW_PREFIX}{c}": c for c in layout.names}
    schema = T.StructType.fromDDL(ddl)
    assert isinstance(schema, T.StructType)
    json_schema = T.StructType([T.StructField(renamed.get(f.name, f.name), f.dataType)
                                for f in schema.fields])
    lines_df = _lines(spark, files).where(F.trim("value") != "")
    parsed = F.from_json("value", json_schema,
                         {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    fields_df = lines_df.select("value", "_source_file", F.inline(F.array(parsed)))
    fields_df = fields_df.select("value", "_source_file", CORRUPT,
                                 *[F.col(c).alias(RAW_PREFIX + c) for c in layout.names])
    return [_raw_frame(fields_df, layout, layout.names)]


def _read_parquet(spark: SparkSession, layout: SourceLayout, files: list[str]
                  ) -> list[DataFrame]:
    """Columns by name, every value as text; `value` is the row as JSON (the raw record the
    quarantine keeps). A file lacking a required column fails the run, naming it."""
    try:
        records_df = spark.read.parquet(*files)
    except (Py4JJavaError, PySparkException) as exc:
        raise UnreadableInputError(files[0], str(exc).strip().splitlines()[0][:300]) from exc
    present = [c for c in layout.names if c in records_df.columns]
    missing = [c for c in layout.required if c not in present]
    if missing:
        raise SchemaDriftError(files[0] if len(files) == 1 else f"{len(files)} files",
                               missing=missing)
    fields_df = records_df.select(
        F.to_json(F.struct(*present)).alias("value"),
        F.col("_metadata.file_path").alias("_source_file"),
        *[F.col(c).cast("string").alias(RAW_PREFIX + c) for c in present],
        F.lit(None).cast("string").alias(CORRUPT))
    return [_raw_frame(fields_df, layout, present)]
