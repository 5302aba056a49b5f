"""Reading landing files: list them, check each file's header against the source layout,
and read every line as raw text columns plus the line itself."""

from __future__ import annotations

import csv
import logging
from collections import defaultdict

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.errors import InputNotFoundError, SchemaDriftError, UnreadableInputError
from clickscore.schemas import SourceLayout
from clickscore.sources.base import RAW_PREFIX

log = logging.getLogger(__name__)

CORRUPT = "_corrupt"


def list_files(spark: SparkSession, path: str) -> list[str]:
    """Files under a path, glob or folder (recursively; hidden `_`/`.` files skipped).

    Uses Hadoop's FileSystem, so local paths, s3a:// and abfss:// behave alike.
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a classic (JVM) SparkSession is required to list files"
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    statuses = fs.globStatus(hadoop_path) or []
    files: list[str] = []
    for status in statuses:
        if status.isDirectory():
            found = fs.listFiles(status.getPath(), True)
            while found.hasNext():
                files.append(found.next().getPath().toString())
        else:
            files.append(status.getPath().toString())
    files = sorted(f for f in files if not f.rsplit("/", 1)[-1].startswith(("_", ".")))
    if not files:
        raise InputNotFoundError(path)
    return files


def first_line(spark: SparkSession, path: str) -> str | None:
    """The file's first line, None for an empty file; UnreadableInputError when unreadable."""
    try:
        rows = spark.read.text(path).head(1)
    except (Py4JJavaError, PySparkException) as exc:
        cause = str(exc).strip().splitlines()[0][:300]
        raise UnreadableInputError(path, cause) from exc
    return rows[0].value if rows else None


def _fields(line: str) -> list[str]:
    return [f.strip() for f in next(csv.reader([line]))]


def file_columns(layout: SourceLayout, path: str, head: str) -> list[str]:
    """The file's column order, checked against the layout's required columns."""
    if layout.has_header:
        columns = _fields(head)
        missing = [c for c in layout.required if c not in columns]
        if missing:
            raise SchemaDriftError(path, missing=missing)
        extra = [c for c in columns if c not in layout.names]
        if extra:
            log.warning("%s has columns the %s layout does not know: %s", path,
                        layout.source, extra)
        return columns
    n_fields = len(_fields(head))
    if n_fields < len(layout.names):
        raise SchemaDriftError(path, missing=layout.names[n_fields:])
    return layout.names


def read_raw(spark: SparkSession, layout: SourceLayout, files: list[str]) -> DataFrame:
    """Every data line of `files` as `value`, `_source_file`, `raw_<column>`..., `_corrupt`.

    Header lines are dropped; a line whose field count differs from its file's header keeps
    its text in `_corrupt`. Files are grouped by header so column order may differ per file.
    """
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

    frames = []
    for (columns, header_line), paths in groups.items():
        names = [RAW_PREFIX + c if c in layout.names else f"_extra_{i}"
                 for i, c in enumerate(columns)]
        ddl = ", ".join(f"`{n}` STRING" for n in names) + f", `{CORRUPT}` STRING"
        lines_df = spark.read.text(paths).select(
            "value", F.col("_metadata.file_path").alias("_source_file")
        )
        if header_line is not None:
            lines_df = lines_df.where(F.col("value") != F.lit(header_line))
        parsed = F.from_csv(
            "value", F.lit(ddl),
            {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT},
        )
        # inline(array(struct)) parses each line once: with a plain struct column the
        # optimizer copies from_csv into every field reference and pushed-down filter.
        fields_df = lines_df.select("value", "_source_file", F.inline(F.array(parsed)))
        frame = fields_df.select(
            "value", "_source_file",
            *[(F.col(RAW_PREFIX + c) if c in columns
               else F.lit(None).cast("string")).alias(RAW_PREFIX + c) for c in layout.names],
            CORRUPT,
        )
        frames.append(frame)
    if not frames:
        schema = ", ".join(["value STRING", "_source_file STRING"]
                           + [f"`{RAW_PREFIX}{c}` STRING" for c in layout.names]
                           + [f"{CORRUPT} STRING"])
        return spark.createDataFrame([], schema)
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out
