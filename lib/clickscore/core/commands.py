"""Commands declared by the stages, and the argument parser derived from their configs.

A stage declares a `Command` in its `config.py`: a name (`"dq run"` nests under `dq`), a
one-line help, its typed config dataclass and its entry point as `"module:function"`. The
arguments come from the config's fields, so a default is written once, in the dataclass:

    input_path: str = field(metadata=option("file, folder or glob", flag="--input"))

A field becomes `--field-name` (required when it has no default); its annotation picks the
parser (`int`, `float`, `str`, `date`, `datetime`, `timedelta`, `RunDate`, `bool` as
`--x/--no-x`) unless `option(parse=...)` gives one. A field whose type is a dataclass made
by its `default_factory` is a group: its fields become options of the command (flat, as if
they were the config's own), and the group is built from them; a class that cannot import
this module (the model's hyper-parameters) gives its help and choices as plain field
metadata (`{"help": ...}`).
`data_root` comes from the common `--data-root`. Entry points are imported only when their
command runs, so `--help` stays fast and a stage's heavy imports (Spark, GX, torch) load only
where needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from clickscore.core.config import RunDate, format_duration, parse_duration, parse_timestamp

_PARSERS: dict[Any, Callable[[str], Any]] = {
    int: int, float: float, str: str, date: date.fromisoformat, datetime: parse_timestamp,
    timedelta: parse_duration, RunDate: RunDate.parse,
}
_CLI = "clickscore_cli"


def option(help: str = "", *, flag: str | None = None, parse: Callable[[str], Any] | None = None,
           choices: Callable[[], Sequence[str]] | None = None, positional: bool = False,
           show: Callable[[Any], str] | None = None, hidden: bool = False) -> dict[str, Any]:
    """Field metadata for the command line: help text, flag name, parser, choices (a
    function, called only when the parser is built), shown default, or hidden."""
    return {_CLI: {"help": help, "flag": flag, "parse": parse, "choices": choices,
                   "positional": positional, "show": show, "hidden": hidden}}


@dataclass(frozen=True)
class Command:
    """A sub-command: `entry` is called with (spark, config), or (config) without Spark."""

    name: str
    help: str
    config: type
    entry: str
    needs_spark: bool = True

    def load(self) -> Callable[..., Any]:
        module, _, function = self.entry.partition(":")
        imported = __import__(module, fromlist=[function])
        return typing.cast(Callable[..., Any], getattr(imported, function))


def _meta(f: dataclasses.Field) -> dict[str, Any]:
    """The field's command-line metadata: `option(...)`, or plain `help`/`choices`."""
    plain = {k: f.metadata[k] for k in ("help", "hidden") if k in f.metadata}
    if "choices" in f.metadata:
        values = tuple(f.metadata["choices"])
        plain["choices"] = lambda: values
    return {**plain, **f.metadata.get(_CLI, {})}


def _is_group(f: dataclasses.Field, annotation: Any) -> bool:
    """A group of options: a field of a dataclass type made by its `default_factory` (a
    value type such as RunDate is one option)."""
    return (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)
            and f.default_factory is not dataclasses.MISSING)


def _user_fields(config: type) -> list[tuple[dataclasses.Field, Any]]:
    """The options of a config, a group's fields in place of the group."""
    hints = typing.get_type_hints(config)
    out: list[tuple[dataclasses.Field, Any]] = []
    for f in dataclasses.fields(config):
        if not f.init or f.name == "data_root" or _meta(f).get("hidden"):
            continue
        if _is_group(f, hints[f.name]):
            out += _user_fields(hints[f.name])
        else:
            out.append((f, hints[f.name]))
    return out


def _base_type(annotation: Any) -> Any:
    """`X | None` -> X; other annotations as they are."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _as_argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows a ValueError's own message (what was expected, what was found)."""
    def converted(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    converted.__name__ = getattr(parse, "__name__", "value")
    return converted


def _shown(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime | date | RunDate):
        return str(value)
    return repr(value) if isinstance(value, str) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser, config: type) -> None:
    """One argument per user-facing field of the `config` dataclass."""
    for f, annotation in _user_fields(config):
        meta = {"help": "", "flag": None, "parse": None, "choices": None,
                "positional": False, "show": None, **_meta(f)}
        base = _base_type(annotation)
        has_default = f.default is not dataclasses.MISSING
        default = f.default if has_default else None
        kwargs: dict[str, Any] = {"help": meta["help"] or None}
        if base is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=bool(default))
        else:
            parse = meta["parse"] or _PARSERS.get(base)
            if parse is None:
                raise TypeError(f"{config.__name__}.{f.name}: no parser for {annotation!r}; "
                                "give option(parse=...)")
            kwargs["type"] = _as_argument_type(parse)
            if meta["choices"]:
                kwargs["choices"] = list(meta["choices"]())
            if has_default and default is not None:
                shown = (meta["show"] or _shown)(default)
                kwargs["help"] = f"{kwargs['help'] or ''} (default {shown})".strip()
        if meta["positional"]:
            parser.add_argument(f.name, **kwargs)
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        if base is not bool:
            kwargs["required"] = not has_default
            kwargs["default"] = default
        parser.add_argument(flag, dest=f.name, **kwargs)


def config_from_arguments(config: type, args: argparse.Namespace, data_root: str) -> Any:
    """The typed config from parsed arguments, its groups built from theirs (each
    __post_init__ validates its part)."""
    hints = typing.get_type_hints(config)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if not f.init or (_meta(f).get("hidden") and f.name != "data_root"):
            continue
        if f.name == "data_root":
            values["data_root"] = data_root
        elif _is_group(f, hints[f.name]):
            values[f.name] = config_from_arguments(hints[f.name], args, data_root)
        else:
            values[f.name] = getattr(args, f.name)
    return config(**values)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None,
                        help="warehouse + catalog root (default $CLICKSCORE_DATA_ROOT "
                             "or ./.clickscore)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, third-party logs included")


class OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line (what was expected, what was found) and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str, description: str, commands: Iterable[Command],
                 group_help: Mapping[str, str] | None = None,
                 ) -> tuple[argparse.ArgumentParser, Mapping[str, argparse.ArgumentParser]]:
    """The parser with one sub-command per Command (nested for names with a space, each
    group described by `group_help`); returns it and each command's own parser (for
    `parser.error`)."""
    parser = OneLineErrors(prog=prog, description=description)
    groups: dict[tuple[str, ...], Any] = {
        (): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}
    parsers: dict[str, argparse.ArgumentParser] = {}
    for command in commands:
        *path, leaf = command.name.split()
        for depth in range(1, len(path) + 1):
            prefix = tuple(path[:depth])
            if prefix not in groups:
                text = (group_help or {}).get(" ".join(prefix), "")
                group = groups[prefix[:-1]].add_parser(prefix[-1], help=text, description=text)
                groups[prefix] = group.add_subparsers(
                    dest="command_" + "_".join(prefix), required=True, metavar="COMMAND")
        sub = groups[tuple(path)].add_parser(leaf, help=command.help, description=command.help)
        sub.set_defaults(command_name=command.name)
        add_config_arguments(sub, command.config)
        common_arguments(sub)
        parsers[command.name] = sub
    return parser, parsers
