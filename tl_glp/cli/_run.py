"""Build one command's parser from its dataclass (tyro) and run it; pieces several commands share."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

Flat = tyro.conf.OmitArgPrefixes
"""Marks a nested dataclass whose fields become top-level flags (``--prior-steps``, not ``--settings.prior-steps``)."""

Quiet = Annotated[bool, tyro.conf.arg(aliases=("--no-progress",))]
"""``--quiet`` (alias ``--no-progress``): hide every progress bar."""


DEFAULT_SOURCES: list[tuple[str, str]] = []
"""Every ``(target, parameter)`` whose default a command reads by name (:func:`default_of`), in the
order the command modules were imported: the test suite checks each against the imported object."""


def default_of(target: str | Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of ``target``: a default the library declares is read, not copied.

    ``target`` is ``"module:qualname"``: a function (``"tl_glp.activations.collect:collect_activations"``),
    a method (``"tl_glp.core.prior:GenerativePrior.from_activations"``) or a class (its ``__init__``, or
    a dataclass field). The default is read from the module's source with :mod:`ast`, without
    importing the module, so that ``tl-glp <command> --help`` builds its parser without loading torch,
    TransformerLens or SAE-Lens. It must be a literal (numbers, strings, ``None``, tuples of them,
    arithmetic on numbers) or a module-level constant that is one, followed through
    ``from ... import``; anything else raises, naming the parameter. A callable ``target`` (already
    imported) is read with :func:`inspect.signature`.

    >>> default_of("tl_glp.activations.collect:collect_activations", "dtype")
    'float32'
    >>> def f(a, b=3): ...
    >>> default_of(f, "b")
    3
    """
    if callable(target):
        return inspect.signature(target).parameters[name].default
    module, sep, qualname = target.partition(":")
    if not sep or not module or not qualname:
        raise ValueError(f"default_of({target!r}, ...): name the target as 'module:qualname'.")
    node = _definition(module, qualname)
    default = _parameter_default(node, name, target)
    value = _evaluate(default, module, f"{target} parameter {name!r}")
    if (target, name) not in DEFAULT_SOURCES:
        DEFAULT_SOURCES.append((target, name))
    return value


def _module_path(module: str) -> Path:
    """The source file of ``module``, found without importing it (only its top-level package's spec)."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise ModuleNotFoundError(f"default_of: no module named {top!r}.")
    if not rest:
        return Path(spec.origin or "")
    base = Path(next(iter(spec.submodule_search_locations or [])))
    candidate = base.joinpath(*rest.split("."))
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if path.is_file():
            return path
    raise ModuleNotFoundError(f"default_of: no source file for module {module!r} under {base}.")


@functools.cache
def _module_tree(module: str) -> ast.Module:
    path = _module_path(module)
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _definition(module: str, qualname: str) -> ast.AST:
    body: list[ast.stmt] = _module_tree(module).body
    node: ast.AST | None = None
    for part in qualname.split("."):
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        node = next((n for n in body if isinstance(n, kinds) and n.name == part), None)
        if node is None:
            raise AttributeError(f"default_of: {module} defines no {qualname!r} (looking for {part!r}).")
        body = node.body  # type: ignore[attr-defined]
    assert node is not None
    return node


def _parameter_default(node: ast.AST, name: str, target: str) -> ast.expr:
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:  # a dataclass: the field's default
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                    value = stmt.value
                    if (
                        isinstance(value, ast.Call)
                        and getattr(value.func, "id", getattr(value.func, "attr", "")) == "field"
                    ):
                        value = next((k.value for k in value.keywords if k.arg == "default"), None)
                    if value is None:
                        raise ValueError(f"default_of: field {name!r} of {target} has no default.")
                    return value
            raise ValueError(f"default_of: {target} has no field {name!r}.")
        node = init
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    pairs = list(zip(positional, [None] * (len(positional) - len(args.defaults)) + list(args.defaults)))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults))
    for arg, default in pairs:
        if arg.arg == name:
            if default is None:
                raise ValueError(f"default_of: parameter {name!r} of {target} has no default.")
            return default
    raise ValueError(f"default_of: {target} has no parameter {name!r}.")


_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Pow: lambda a, b: a**b,
    ast.LShift: lambda a, b: a << b,
}


def _evaluate(node: ast.expr, module: str, what: str, depth: int = 0) -> Any:
    """The value of a literal default expression; module constants are looked up (``depth`` bounds the chain)."""
    if depth > 8:
        raise ValueError(f"default_of: {what} refers to constants more than 8 imports deep.")
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(e, module, what, depth) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, module, what, depth)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, module, what, depth), _evaluate(node.right, module, what, depth)
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Name):
        return _constant(module, node.id, what, depth + 1)
    raise ValueError(
        f"default_of: the default of {what} is {ast.unparse(node)!r}, not a literal; "
        "make it a literal or a module-level constant, or give the option its own default."
    )


def _constant(module: str, name: str, what: str, depth: int) -> Any:
    """The value of module-level ``name`` in ``module``: its last top-level assignment, or where it is imported from."""
    found: ast.expr | None = None
    origin: tuple[str, str] | None = None
    for stmt in _module_tree(module).body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            found, origin = stmt.value, None
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            found, origin = stmt.value, None
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    found, origin = None, (_absolute(module, stmt), alias.name)
    if origin is not None:
        if depth > 8:
            raise ValueError(f"default_of: {what} refers to constants more than 8 imports deep.")
        return _constant(origin[0], origin[1], what, depth + 1)
    if found is None:
        raise ValueError(f"default_of: the default of {what} names {name!r}, which {module} does not define.")
    return _evaluate(found, module, what, depth)


def _absolute(module: str, stmt: ast.ImportFrom) -> str:
    if not stmt.level:
        return stmt.module or ""
    is_package = _module_path(module).name == "__init__.py"
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (stmt.level - 1)]
    return ".".join(base + ([stmt.module] if stmt.module else []))


@dataclass
class ModelArgs:
    """Which model to load."""

    model: str = "testbed"
    """A registered real model (smollm2-135m, gemma3-270m: see `tl-glp models list`), a local .gguf file,
    a TransformerLens/Hugging Face model id (e.g. gpt2, meta-llama/Llama-3.2-1B), a local model folder
    (save_pretrained layout), or 'testbed' (the offline tiny model)."""
    processed: bool = False
    """Fold LayerNorm and centre weights (HookedTransformer.from_pretrained); default: unprocessed, the
    basis of the published priors."""
    bridge: bool = False
    """Load through TransformerBridge instead of HookedTransformer."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... (None: cuda if available)."""


def load_model(args: ModelArgs, progress: bool = True) -> Any:
    """The offline testbed model, or a model by name through :func:`tl_glp.models.load_model`, on ``args.device``.

    The device always carries an index (:func:`~tl_glp.core._dist.rank_device`): under torchrun
    ``cuda:LOCAL_RANK``, because TransformerLens puts a model asked for plain ``"cuda"`` on GPU 0.
    """
    from tl_glp.core._dist import rank_device

    device = str(rank_device(args.device))
    if args.model == "testbed":
        from tl_glp.studies.testbed import load

        return load(progress=progress).model.to(device)
    from tl_glp.models import load_model as load_by_name

    return load_by_name(args.model, processed=args.processed, device=device, bridge=args.bridge, progress=progress)


def fail(message: str) -> int:
    """Print ``message`` to stderr; the exit status of bad input (2)."""
    print(message, file=sys.stderr)
    return 2


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _tuple_flags(cls: type, prefix: str = "") -> dict[str, bool]:
    """Flags of tuple-typed fields, each mapped to whether its items are numbers (which accept ``1,2,3`` too)."""
    out: dict[str, bool] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint, flat = hints[f.name], False
        if typing.get_origin(hint) is Annotated:
            hint, *marks = typing.get_args(hint)
            flat = any(m is Flat for m in marks)
        inner = [a for a in typing.get_args(hint) if a is not type(None)]  # unwrap X | None
        if typing.get_origin(hint) not in (tuple, list) and len(inner) == 1:
            hint = inner[0]
        if dataclasses.is_dataclass(hint):
            out.update(_tuple_flags(hint, prefix if flat else f"{prefix}{f.name}."))
        elif typing.get_origin(hint) in (tuple, list):
            numeric = all(a in (int, float, Ellipsis) for a in typing.get_args(hint))
            out["--" + f"{prefix}{f.name}".replace("_", "-")] = numeric
    return out


def expand(argv: list[str], cls: type) -> list[str]:
    """What argparse users type, in the form tyro parses: ``--set FIELD=VALUE`` becomes ``--field VALUE``;
    a repeated list option (``--prompt A --prompt B``) becomes one (``--prompt A B``); a comma list after a
    numeric list option (``--depths 1,2,3``) becomes several values.

    >>> @dataclass
    ... class A:
    ...     depths: tuple[int, ...] = (1,)
    ...     prompt: tuple[str, ...] = ()
    ...     seed: int = 0
    >>> expand(["--set", "depths=1,2", "--prompt", "a, b", "--seed", "3", "--prompt", "c", "--set", "seed=4"], A)
    ['--depths', '1', '2', '--prompt', 'a, b', 'c', '--seed', '3', '--seed', '4']
    """
    tuple_flags = _tuple_flags(cls)
    flat: list[str] = []
    items = iter(argv)
    for token in items:
        if token == "--set" or token.startswith("--set="):
            item = token[len("--set=") :] if token.startswith("--set=") else next(items, "")
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set prior_steps=300.")
            flat += ["--" + key.strip().replace("_", "-"), value]
        elif token.startswith("--") and token.partition("=")[0] in tuple_flags:
            flag, sep, value = token.partition("=")
            flat += [flag, value] if sep else [flag]
        else:
            flat.append(token)
    segments: list[list[str]] = []  # [flag, values...] or [positional]
    first: dict[str, list[str]] = {}
    current: list[str] = [""]
    for token in flat:
        if token.startswith("-") and not _is_number(token):
            segment = first.get(token) if token in tuple_flags else None
            if segment is None:
                segment = [token]
                segments.append(segment)
                if token in tuple_flags:
                    first[token] = segment
            current = segment
        elif tuple_flags.get(current[0]) and "," in token:
            current += [v for v in token.split(",") if v.strip()]
        elif segments:
            current.append(token)
        else:
            current = [token]
            segments.append(current)
    return [token for segment in segments for token in segment]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse(name: str, fn: Callable[[Any], int | None], argv: list[str], description: str = "") -> Any:
    """``argv`` parsed into the dataclass that ``fn``'s ``args`` parameter is typed with.

    ``--set FIELD=VALUE`` and comma lists are expanded first (:func:`expand`). ``--quick`` (or ``--full``)
    anywhere in ``argv`` makes the dataclass's ``quick_defaults()`` (``full_defaults()``) the defaults
    (``--help`` then shows them), so an explicit flag still wins over a preset size; otherwise a dataclass's
    ``argv_defaults(argv)``, if it has one and it returns defaults, sets them. Raises ``SystemExit`` after ``--help`` (0) or for bad
    input (2, after a message that says which option was wrong and why)."""
    cls = typing.get_type_hints(fn)["args"]
    try:
        argv = expand(argv, cls)
    except ValueError as err:
        raise SystemExit(fail(f"tl-glp {name}: {err}")) from None
    presets = [p for p in ("quick", "full") if f"--{p}" in argv and hasattr(cls, f"{p}_defaults")]
    if len(presets) > 1:
        raise SystemExit(fail(f"tl-glp {name}: --quick and --full exclude each other; pass one of them."))
    default = getattr(cls, f"{presets[0]}_defaults")() if presets else None
    if default is None and hasattr(cls, "argv_defaults"):  # defaults that depend on another option (demo --model)
        default = cls.argv_defaults(argv)
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(cls.__name__ + "("):  # the signature dataclasses write when a class has no docstring
        doc = ""
    args = tyro.cli(
        cls,
        args=argv,
        prog=f"tl-glp {name}",
        description=f"{description}\n\n{doc}".strip(),
        default=default,
        config=(tyro.conf.FlagCreatePairsOff,),
    )
    for f in dataclasses.fields(cls):  # a repeatable option without a default must be given at least once
        if (
            f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and getattr(args, f.name) == ()
        ):
            flag = "--" + f.name.replace("_", "-")
            raise SystemExit(
                fail(f"tl-glp {name}: {flag} is required (repeat it for several values); see tl-glp {name} --help.")
            )
    return args


def run_command(name: str, fn: Callable[[Any], int | None], description: str, argv: list[str]) -> int:
    """Parse ``argv`` (:func:`parse`) and call ``fn`` with the result. Returns the exit status: 0 after
    ``--help``, 2 for bad input, else what ``fn`` returns."""
    try:
        args = parse(name, fn, argv, description)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    return int(fn(args) or 0)
