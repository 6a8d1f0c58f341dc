"""Read a ``config.yaml`` written by OmegaConf, without OmegaConf: safe loading and ``${...}`` interpolations.

The authors of the published priors save their training config with ``OmegaConf.save``. Depending on
the version of their training script, the file holds either

- the config as written, with interpolations left in place (``rep_statistic: ${train_dataset}/rep_statistics.pt``,
  ``run_name: glp-llama1b-d${glp_kwargs.denoiser_config.n_layers}_static-1M``), or
- the resolved config, where OmegaConf writes a ``pathlib.Path`` field with a Python tag
  (``output_path: !!python/object/apply:pathlib.PosixPath [runs/glp-llama1b-d3]``), which
  ``yaml.safe_load`` refuses.

:func:`load_config` reads both without executing anything: path tags become strings, any other
unknown tag becomes the plain data under it. :func:`resolve` resolves the interpolations of one key
on demand, the way OmegaConf does for the forms a plain YAML file can hold:

- ``${a.b.c}`` (absolute), ``${.sibling}`` / ``${..uncle}`` (relative to the key's own container),
  list items as ``${a.0}`` or ``${a[0]}``, nested ``${a.${b}}``, and ``\\${`` for a literal ``${``;
- a value that is exactly one interpolation takes the type of its target (an int stays an int);
  interpolations inside a longer string are joined as text.

Resolvers such as ``${oc.env:HOME}`` (which read the environment of the authors' machine) and missing
or circular references raise :class:`InterpolationError`, which names the key and says how to fix it.
Only the keys a caller asks for are resolved, so an unresolvable key nobody reads does no harm.

>>> cfg = load_config("a: 3\\nname: run-${a}\\nsame: ${a}\\nnested:\\n  x: ${..a}\\n")
>>> resolve(cfg, "name"), resolve(cfg, "same"), resolve(cfg, "nested.x")
('run-3', 3, 3)
>>> resolve(cfg, "missing", default=None) is None
True
>>> resolve(load_config("home: ${oc.env:HOME}"), "home")
Traceback (most recent call last):
...
tl_glp.core._yaml_config.InterpolationError: home is '${oc.env:HOME}': '${oc.env:HOME}' calls the resolver 'oc.env', which only OmegaConf on the machine that wrote the file can evaluate. Replace it in config.yaml with its value.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_MISSING = object()
_PATH_TAG = "tag:yaml.org,2002:python/object/apply:pathlib."
_INDEX = re.compile(r"\[(\d+)\]")


class InterpolationError(ValueError):
    """A ``${...}`` interpolation that cannot be resolved from the file itself."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads OmegaConf's ``pathlib`` tags as strings and other tags as plain data."""


def _construct_path(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    parts = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else [loader.construct_scalar(node)]
    return "/".join(str(p).rstrip("/") for p in parts) if parts else "."


def _construct_plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_ConfigLoader.add_multi_constructor(_PATH_TAG, _construct_path)
_ConfigLoader.add_multi_constructor("", _construct_plain)  # any other tag: its data, never an object


def load_config(text: str) -> Any:
    """The data of an OmegaConf-written YAML text, loaded safely (see the module docstring)."""
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: builds no objects


def _split(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in _INDEX.sub(r".\1", key).split("."):
        if piece == "":
            raise KeyError(key)
        parts.append(int(piece) if piece.isdigit() else piece)
    return parts


def _get(root: Any, path: list[str | int]) -> Any:
    node = root
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return _MISSING
    return node


def resolve(root: Any, key: str, *, default: Any = _MISSING) -> Any:
    """The value of dotted ``key`` in ``root`` with its interpolations resolved (recursively for containers).

    ``default`` is returned when ``key`` is absent; without it an absent key raises :class:`KeyError`.
    """
    path = _split(key)
    value = _get(root, path)
    if value is _MISSING:
        if default is _MISSING:
            raise KeyError(key)
        return default
    return _Resolver(root, key).value(path, value)


class _Resolver:
    def __init__(self, root: Any, asked: str) -> None:
        self.root = root
        self.asked = asked
        self.active: list[str] = []  # keys being resolved, to catch cycles

    def where(self, name: str) -> str:
        """The key asked for, and the key whose value is at fault if it is another one."""
        return self.asked if name == self.asked else f"{self.asked} (through {name})"

    def value(self, path: list[str | int], value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.value([*path, k], v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value([*path, i], v) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        name = ".".join(str(p) for p in path)
        if name in self.active:
            chain = " -> ".join([*self.active[self.active.index(name) :], name])
            raise InterpolationError(
                f"{self.asked} refers to itself: {chain}. Replace one of them in config.yaml with its value."
            )
        self.active.append(name)
        try:
            return self.text(path, value, name)
        finally:
            self.active.pop()

    def text(self, path: list[str | int], text: str, name: str) -> Any:
        pieces: list[Any] = []
        i = 0
        while i < len(text):
            if text.startswith("\\${", i):
                pieces.append("${")
                i += 3
            elif text.startswith("${", i):
                end = self.closing(text, i, name)
                pieces.append(self.lookup(path, text[i + 2 : end], name, text[i : end + 1]))
                i = end + 1
            else:
                j = i + 1
                while j < len(text) and not text.startswith("${", j) and not text.startswith("\\${", j):
                    j += 1
                pieces.append(text[i:j])
                i = j
        if len(pieces) == 1 and text.startswith("${") and text.endswith("}"):
            return pieces[0]  # a whole-value interpolation keeps its target's type
        return "".join(str(p) for p in pieces)

    def closing(self, text: str, start: int, name: str) -> int:
        depth = 0
        for j in range(start, len(text)):
            if text.startswith("${", j):
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return j
        raise InterpolationError(
            f"{self.where(name)} is {text!r}: its '${{' has no closing '}}'. Fix the value in config.yaml."
        )

    def lookup(self, path: list[str | int], inner: str, name: str, whole: str) -> Any:
        if "${" in inner:
            inner = str(self.text(path, inner, name))
        inner = inner.strip()
        if ":" in inner:
            resolver = inner.split(":", 1)[0]
            raise InterpolationError(
                f"{self.where(name)} is {_get(self.root, path)!r}: {whole!r} calls the resolver {resolver!r}, which only OmegaConf "
                "on the machine that wrote the file can evaluate. Replace it in config.yaml with its value."
            )
        dots = len(inner) - len(inner.lstrip("."))
        try:
            rest = _split(inner[dots:]) if inner[dots:] else []
        except KeyError:
            rest = None
        base = path[: len(path) - dots] if dots else []
        target = [*base, *rest] if rest is not None and dots <= len(path) else None
        value = _MISSING if target is None else _get(self.root, target)
        if value is _MISSING:
            raise InterpolationError(
                f"{self.where(name)} is {_get(self.root, path)!r}: {whole!r} refers to a key the file does not hold. Replace it "
                "in config.yaml with its value."
            )
        return self.value(target, value)
