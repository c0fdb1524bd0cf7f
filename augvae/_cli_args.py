"""Command-line options generated from config dataclasses (shared by ``augvae`` and ``augvae bench``).

Each field of a config dataclass becomes one option; its help text comes from the field's ``help``
metadata and its shown default from the dataclass, so every default lives in one place. A field
whose type is itself a config dataclass (``BenchConfig.vae: ModelConfig``) becomes a group of
options with a prefix (``--vae-latent-dim``). Unset options stay ``None``, so :func:`config_overrides`
returns only what the user typed.

Example:
    >>> import argparse
    >>> from augvae.config import GenerateConfig
    >>> p = argparse.ArgumentParser()
    >>> add_config_arguments(p, GenerateConfig, title="generation")
    >>> config_overrides(p.parse_args(["--n", "8", "--mode", "prior"]), GenerateConfig)
    {'mode': 'prior', 'n': 8}
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["HelpFormatter", "add_config_arguments", "config_overrides", "comma_list", "path_arg"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except where the help text states its own (config options) or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default is None or action.required:
            return text
        return super()._get_help_string(action)


def path_arg(text: str) -> Path:
    """A path option's value: ``Path("")`` would be the current folder, so an empty value is refused (e.g. an unset
    shell variable in ``augvae train "$DATA"``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path (an unset shell variable?); pass a file or folder name")
    return Path(text)


def comma_list(elem: type) -> Any:
    """An argparse ``type`` that parses ``5,10,20`` (or one value) into a list of ``elem``."""

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [elem(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {elem.__name__} values separated by commas, got {text!r}") from None

    parse.__name__ = f"{elem.__name__} list"
    return parse


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "auto"
    return str(value)


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}__{name}" if prefix else name


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (), title: str | None = None,
                         defaults: Any = None, lists: str = "spaces", prefix: str = "") -> None:
    """Add one option per field of config dataclass ``cls``.

    Args:
        parser: The parser (or subparser).
        cls: A config dataclass.
        skip: Field names that get no option (``nested.field`` skips a nested field).
        title: The option group's title.
        defaults: Shown defaults: a mapping or an instance of ``cls`` (e.g. a recipe's values); default
            the dataclass defaults.
        lists: ``spaces`` (``--widths 32 64``) or ``commas`` (``--per-class 5,10,20``) for tuple fields.
        prefix: Option-name prefix of a nested config (``vae`` gives ``--vae-latent-dim``).
    """
    group = parser.add_argument_group(title or f"{cls.__name__} options")
    hints = typing.get_type_hints(cls)
    shown = dataclasses.asdict(defaults) if dataclasses.is_dataclass(defaults) else dict(defaults or {})
    nested: list[tuple[str, type, Any]] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        default = shown.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        if dataclasses.is_dataclass(tp):
            nested.append((f.name, tp, default))
            continue
        flag = "--" + (prefix.replace("__", "-").replace("_", "-") + "-" if prefix else "") + f.name.replace("_", "-")
        # argparse %-formats help texts: a literal % in a field's help (e.g. "7.5%") must reach it as %%
        help_text = f"{f.metadata.get('help', '')} (default: {_shown(default)})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": _dest(prefix, f.name), "default": None, "help": help_text}
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(tp) is tuple:
            elem = typing.get_args(tp)[0]
            if lists == "commas":
                group.add_argument(flag, type=comma_list(elem), metavar="A,B,...", **kw)
            else:
                group.add_argument(flag, type=elem, nargs="+", metavar="N", **kw)
        else:
            group.add_argument(flag, type=tp, metavar=f.name.upper(), **kw)
    for name, sub, default in nested:
        inner_skip = [s.split(".", 1)[1] for s in skip if s.startswith(name + ".")]
        add_config_arguments(parser, sub, inner_skip, f"{title or cls.__name__}: {name}", default, lists, _dest(prefix, name))


def config_overrides(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line (nested configs as dicts)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            inner = config_overrides(args, hints[f.name], _dest(prefix, f.name))
            if inner:
                out[f.name] = inner
            continue
        value = getattr(args, _dest(prefix, f.name), None)
        if value is not None:
            out[f.name] = tuple(value) if isinstance(value, list) else value
    return out
