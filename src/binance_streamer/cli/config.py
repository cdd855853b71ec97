"""Settings for ``record`` from a TOML file and the environment; ``init`` writes an example file.

Every ``record`` parameter (the SYMBOLS argument too) has a key, its long option name with
underscores (``--streams-per-connection`` -> ``streams_per_connection``, ``--all`` -> ``all``),
read from two more places. Precedence, highest first:

1. the command line;
2. the environment variable ``BINANCE_STREAMER_<KEY>`` (e.g. ``BINANCE_STREAMER_DB``); a flag
   reads 1/0, true/false, yes/no or on/off, a list (SYMBOLS, ``--exclude``) is separated by
   spaces or commas; an empty variable counts as unset;
3. the TOML file: ``--config FILE`` (or ``BINANCE_STREAMER_CONFIG``), else
   ``binance-streamer.toml`` in the working directory when there is one. Top-level keys only;
   a flag is a boolean, a list a TOML array of strings, ``streams`` a string or an array;
4. the option's default.

An unknown key or a value of the wrong type is a usage error naming the key (exit code 2), as is
an explicit ``--config`` file that does not exist. The file and environment values become the
command's ``default_map``, so click converts and checks them exactly like command-line values;
environment variables are read here rather than through click's ``envvar`` so that every click
version reads a flag's ``0`` as false and splits lists the same way.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal

import click
from click.core import ParameterSource

__all__ = ["CONFIG_ENV", "DEFAULT_FILE", "ENV_PREFIX", "configure", "example", "init",
           "setting_keys"]

ENV_PREFIX = "BINANCE_STREAMER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
DEFAULT_FILE = "binance-streamer.toml"
log = logging.getLogger("binance_streamer")

Kind = Literal["flag", "list", "int", "float", "text"]
_META = "binance_streamer.config.origins"  # ctx.meta: parameter name -> where its value came from
_COMMA_SEPARATED = frozenset({"streams"})  # text options whose file value may be an array
_ARGUMENT_HELP = {"symbols": "Symbols to record, e.g. [\"BTCUSDT\", \"ETHUSDT\"]; leave out "
                             "with all = true."}
# Settings that exclude each other. When both sides are set, the side from the more explicit
# source (command line > environment > file) wins; the losing side's settings from less explicit
# sources fall back to their neutral value, so `record --all` overrides a file's symbols.
_RIVALS = ((("symbols",), ("all_symbols", "quote", "exclude")), (("shard",), ("processes",)))
_NEUTRAL: dict[str, Any] = {"symbols": (), "all_symbols": False, "quote": None, "exclude": (),
                            "shard": None, "processes": "auto"}
_configured: list[click.Command] = []  # the command configure() extended, for init


@dataclass(frozen=True)
class Setting:
    """One parameter of the configured command as the file and the environment name it."""

    key: str
    param: click.Parameter

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``BINANCE_STREAMER_STREAMS_PER_CONNECTION``."""
        return ENV_PREFIX + self.key.upper()

    @property
    def name(self) -> str:
        """The parameter's name in the command's function, e.g. ``all_symbols``."""
        assert self.param.name is not None
        return self.param.name

    @property
    def kind(self) -> Kind:
        """The TOML type a value must have."""
        param, kind = self.param, self.param.type
        if isinstance(param, click.Option) and param.is_flag:
            return "flag"
        if param.multiple or param.nargs == -1:
            return "list"
        if isinstance(kind, click.types.BoolParamType):
            return "flag"
        if isinstance(kind, click.types.IntParamType):
            return "int"
        if isinstance(kind, click.types.FloatParamType):
            return "float"
        return "text"


def settings(command: click.Command) -> dict[str, Setting]:
    """The command's configurable parameters by key (everything but ``--config``)."""
    found: dict[str, Setting] = {}
    for param in command.params:
        if param.name in (None, "config") or not param.expose_value:
            continue
        longs = [o for o in param.opts if o.startswith("--")]
        key = (max(longs, key=len)[2:] if longs else param.name or "").replace("-", "_")
        found[key] = Setting(key, param)
    return found


def setting_keys(command: click.Command) -> list[str]:
    """The keys a configuration file for ``command`` may hold, in the command's order."""
    return list(settings(command))


class _Origins(dict[str, str]):
    """Parameter name -> "environment variable X" or "FILE key K" (what set it below the CLI)."""

    def rank(self, ctx: click.Context, name: str, filled: set[str]) -> int:
        """0 command line, 1 environment, 2 file, 3 default: lower is more explicit."""
        source = ctx.get_parameter_source(name)
        if source is ParameterSource.COMMANDLINE and name not in filled:
            return 0
        if name in self:
            return 1 if self[name].startswith("environment") else 2
        return 3


# -- reading -----------------------------------------------------------------------------------

def _bad(ctx: click.Context, message: str) -> click.UsageError:
    return click.UsageError(message, ctx=ctx)


def _from_file(setting: Setting, value: Any, where: str, ctx: click.Context) -> Any:
    """``value`` as read from TOML, checked against the setting's kind."""
    kind, ok = setting.kind, False
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "flag":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok, value = number, float(value) if number else value
    elif isinstance(value, list) and setting.name in _COMMA_SEPARATED:
        ok = all(isinstance(v, str) for v in value)
        value = ",".join(value) if ok else value
    elif isinstance(value, str) or number:
        ok, value = True, str(value)
    if not ok:
        wanted = {"flag": "true or false", "list": "an array of strings, e.g. [\"BTCUSDT\"]",
                  "int": "an integer", "float": "a number",
                  "text": "a string" + (" or an array of strings"
                                        if setting.name in _COMMA_SEPARATED else "")}[kind]
        raise _bad(ctx, f"{where} key {setting.key!r}: expected {wanted}, got "
                        f"{_toml_value(value) if _representable(value) else type(value).__name__}")
    return value


def _load_file(path: Path, table: Mapping[str, Setting], ctx: click.Context
               ) -> dict[str, tuple[Any, str]]:
    """Parameter name -> (value, origin) for every key of the TOML file at ``path``."""
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise _bad(ctx, f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise _bad(ctx, f"cannot read the configuration file {path}: "
                        f"{exc.strerror or exc}") from exc
    found: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        setting = table.get(key.replace("-", "_"))
        if setting is None:
            close = get_close_matches(key, list(table), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(table)}"
            raise _bad(ctx, f"{path}: unknown key {key!r}{hint}")
        if setting.name in found:
            raise _bad(ctx, f"{path}: key {setting.key!r} given twice (as {key!r})")
        found[setting.name] = (_from_file(setting, value, str(path), ctx), f"{path} key {key!r}")
    return found


_TRUE, _FALSE = {"1", "true", "yes", "on", "y", "t"}, {"0", "false", "no", "off", "n", "f"}


def _load_env(table: Mapping[str, Setting], environ: Mapping[str, str], ctx: click.Context
              ) -> dict[str, tuple[Any, str]]:
    """Parameter name -> (value, origin) for every non-empty BINANCE_STREAMER_<KEY> variable."""
    found: dict[str, tuple[Any, str]] = {}
    for setting in table.values():
        text = environ.get(setting.env, "").strip()
        if not text:
            continue
        value: Any = text
        if setting.kind == "flag":
            if text.lower() not in _TRUE | _FALSE:
                raise _bad(ctx, f"environment variable {setting.env}={text!r}: expected 1 or 0 "
                                "(true/false, yes/no, on/off)")
            value = text.lower() in _TRUE
        elif setting.kind == "list":
            value = [v for v in re.split(r"[\s,]+", text) if v]
        found[setting.name] = (value, f"environment variable {setting.env}")
    _warn_unknown_variables(table, environ)
    return found


def _warn_unknown_variables(table: Mapping[str, Setting], environ: Mapping[str, str]) -> None:
    """A misspelt variable would be ignored silently: name it, with the nearest known one."""
    known = {s.env for s in table.values()} | {CONFIG_ENV}
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = get_close_matches(name, sorted(known), n=1)
            log.warning("%s is not a setting of this command and is ignored%s", name,
                        f"; did you mean {close[0]}?" if close else "")


def _config_path(ctx: click.Context, value: str | None) -> Path | None:
    """The file to read: --config / BINANCE_STREAMER_CONFIG, else ./binance-streamer.toml."""
    if value:
        path = Path(value)
        if not path.is_file():
            raise _bad(ctx, f"configuration file not found: {value}")
        return path
    implicit = Path(DEFAULT_FILE)
    if implicit.is_file():
        log.info("settings from %s (working directory)", implicit.resolve())
        return implicit
    return None


def _load_settings(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """The eager ``--config`` callback: file, then environment, into ``ctx.default_map``."""
    if ctx.resilient_parsing:
        return
    table = settings(ctx.command)
    path = _config_path(ctx, value)
    layered = _load_file(path, table, ctx) if path is not None else {}
    layered.update(_load_env(table, os.environ, ctx))
    ctx.default_map = {**(ctx.default_map or {}), **{n: v for n, (v, _) in layered.items()}}
    ctx.meta[_META] = _Origins({n: origin for n, (_, origin) in layered.items()})


# -- wiring ------------------------------------------------------------------------------------

def _origins(ctx: click.Context) -> _Origins:
    found = ctx.meta.get(_META)
    return found if isinstance(found, _Origins) else _Origins()


def _name_the_origin(param: click.Parameter) -> None:
    """A bad value from the file or the environment is reported with where it came from."""
    original = param.handle_parse_result

    def handle_parse_result(ctx: click.Context, opts: Mapping[str, Any], args: list[str]
                            ) -> tuple[Any, list[str]]:
        try:
            return original(ctx, opts, args)
        except click.BadParameter as exc:
            origin = _origins(ctx).get(param.name or "")
            if origin and ctx.get_parameter_source(param.name or "") in (
                    ParameterSource.DEFAULT_MAP, ParameterSource.ENVIRONMENT):
                raise click.BadParameter(f"{exc.message} (from {origin})", ctx=exc.ctx,
                                         param=exc.param, param_hint=exc.param_hint) from exc
            raise

    param.handle_parse_result = handle_parse_result  # type: ignore[method-assign]


def _fill_arguments(ctx: click.Context, params: dict[str, Any]) -> set[str]:
    """Variadic arguments click left empty take their file/environment value.

    click before 8.3 never reads ``default_map`` for a ``nargs=-1`` argument; an empty one
    always means nothing was given on the command line. Returns the names filled.
    """
    filled: set[str] = set()
    defaults = ctx.default_map or {}
    for param in ctx.command.params:
        name = param.name or ""
        if (isinstance(param, click.Argument) and param.nargs == -1 and not params.get(name)
                and defaults.get(name)):
            params[name] = tuple(defaults[name])
            filled.add(name)
    return filled


def _settle_rivals(ctx: click.Context, params: dict[str, Any], filled: set[str]) -> None:
    """Of two settings that exclude each other, the more explicitly given one wins."""
    origins = _origins(ctx)
    for side_a, side_b in _RIVALS:
        head_a, head_b = side_a[0], side_b[0]
        if not (head_a in params and head_b in params):
            continue
        if params[head_a] == _NEUTRAL[head_a] or params[head_b] == _NEUTRAL[head_b]:
            continue
        rank_a, rank_b = origins.rank(ctx, head_a, filled), origins.rank(ctx, head_b, filled)
        if rank_a == rank_b:
            continue  # the command itself reports the conflict
        loser, winner_rank = (side_b, rank_a) if rank_a < rank_b else (side_a, rank_b)
        for name in loser:
            if name in params and origins.rank(ctx, name, filled) > winner_rank:
                params[name] = _NEUTRAL[name]


def _wrap_callback(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(**params: Any) -> Any:
        ctx = click.get_current_context()
        filled = _fill_arguments(ctx, params)
        _settle_rivals(ctx, params, filled)
        return callback(**params)
    return run


_EPILOG = ("Every option, and SYMBOLS, can also come from a TOML file (--config FILE, or "
           f"{DEFAULT_FILE} in the working directory; `binance-streamer init` writes one) or an "
           f"environment variable {ENV_PREFIX}<OPTION>, e.g. {ENV_PREFIX}STREAMS=ticker,aggTrade "
           f"or {ENV_PREFIX}SYMBOLS=\"BTCUSDT ETHUSDT\". The command line wins, then the "
           "environment, then the file.")


def configure(command: click.Command) -> None:
    """Let ``command`` take every parameter from a TOML file and the environment too.

    Adds an eager ``--config FILE`` option; call once, after the command is fully declared.
    """
    if any(p.name == "config" for p in command.params):
        return
    for param in command.params:
        _name_the_origin(param)
    command.params.insert(0, click.Option(
        ["--config"], metavar="FILE", is_eager=True, expose_value=False, envvar=CONFIG_ENV,
        show_envvar=True, callback=_load_settings,
        help=f"Read settings from this TOML file (default: ./{DEFAULT_FILE} when present). "
             "See `binance-streamer init`."))
    if command.callback is not None:
        command.callback = _wrap_callback(command.callback)
    command.epilog = f"{command.epilog}\n\n{_EPILOG}" if command.epilog else _EPILOG
    _configured.append(command)


# -- the example file --------------------------------------------------------------------------

def _representable(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_representable(v) for v in value)
    return isinstance(value, str | bool | int | float)


def _toml_value(value: Any) -> str:
    """``value`` (str, bool, int, float or a list of them) as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _default_of(setting: Setting, ctx: click.Context) -> Any:
    if setting.name == "symbols":  # record's own default, applied when SYMBOLS is empty
        from binance_streamer.cli import DEFAULT_SYMBOLS
        return list(DEFAULT_SYMBOLS)
    value = setting.param.get_default(ctx)
    if setting.kind == "list":  # click 8.5 keeps an unset default as its UNSET sentinel
        return list(value) if isinstance(value, list | tuple) else []
    return value if _representable(value) else None


def _entry(setting: Setting, ctx: click.Context) -> list[str]:
    """The comment lines and the ``key = default`` line (commented out when unset) of a key."""
    param = setting.param
    flag = "SYMBOLS" if isinstance(param, click.Argument) else max(param.opts, key=len)
    help_text = (getattr(param, "help", None) or _ARGUMENT_HELP.get(setting.name)
                 or "(no help text)")
    kind = {"flag": "true or false", "list": "array of strings", "int": "integer",
            "float": "number", "text": "string"}[setting.kind]
    if setting.name in _COMMA_SEPARATED:
        kind += " or array of strings"
    header = f"{flag} ({kind}; env {setting.env}): {' '.join(help_text.split())}"
    lines = textwrap.wrap(header, 98, initial_indent="# ", subsequent_indent="#   ")
    value = _default_of(setting, ctx)
    if value is None or setting.name == "symbols" or not _representable(value):
        shown = "..." if value is None or not _representable(value) else _toml_value(value)
        lines.append(f"# {setting.key} = {shown}")
    else:
        lines.append(f"{setting.key} = {_toml_value(value)}")
    return lines


def example(command: click.Command) -> str:
    """A commented TOML file holding every setting of ``command`` at its default."""
    ctx = click.Context(command, info_name=command.name)
    out = [f"# Settings for `binance-streamer {command.name}`, written by `binance-streamer init`.",
           "# Precedence: command-line flags, then BINANCE_STREAMER_<KEY> environment variables,",
           "# then this file, then the defaults. Each key below is set to its default; a line",
           "# starting with '#' is not set. Relative paths are relative to the working directory.",
           f"# Use: binance-streamer {command.name} --config FILE, or name this file "
           f"{DEFAULT_FILE}", "# in the working directory.", ""]
    for setting in settings(command).values():
        if getattr(setting.param, "hidden", False):
            continue
        out += [*_entry(setting, ctx), ""]
    return "\n".join(out).rstrip() + "\n"


@click.command()
@click.argument("path", default=DEFAULT_FILE, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: str, force: bool) -> None:
    """Write a commented example configuration file for `record` (default ./binance-streamer.toml).

    It lists every record option with its help text and is set to the defaults: edit what you
    need, then run `binance-streamer record` in that directory (or `record --config PATH`).
    PATH - prints it instead. An existing file is kept unless --force is given (exit code 1).
    """
    if not _configured:
        raise click.UsageError("no command is configurable")
    text = example(_configured[0])
    if path == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(path, "w" if force else "x", encoding="utf-8") as stream:
            stream.write(text)
    except FileExistsError:
        raise click.ClickException(f"{path} exists: keep it, or give --force to overwrite it"
                                   ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {path}: edit it, then run `binance-streamer record"
               + ("" if Path(path).name == DEFAULT_FILE and Path(path).parent == Path()
                  else f" --config {path}") + "`", err=True)
