"""Name → constructor registry, so configs, the CLI and checkpoints can refer to a model by a string.

``create()`` records the name and the full keyword arguments on the module it builds (attribute
``tenfold_spec``); ``model_spec()`` reads it back, so a compressed model can later be rebuilt from a
small JSON-friendly dict instead of a pickled class.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from tenfold.errors import ModelError

__all__ = ["SPEC_ATTR", "create", "list_models", "model_spec", "register"]

SPEC_ATTR = "tenfold_spec"
"""Name of the attribute ``create()`` sets on every module it returns."""

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[..., nn.Module]
    aliases: tuple[str, ...]
    description: str


_ENTRIES: dict[str, _Entry] = {}  # canonical name -> entry
_LOOKUP: dict[str, str] = {}  # lower-cased name or alias -> canonical name


def _key(name: str) -> str:
    return name.strip().lower()


def register(
    name: str, *, aliases: Iterable[str] = (), description: str = "", overwrite: bool = False
) -> Callable[[F], F]:
    """Decorator that makes a model class or factory function reachable through ``create(name)``.

    Users register their own architectures the same way the built-ins are registered, so every
    tenfold tool (pruning, decomposition, export, the CLI) can rebuild them from a spec. Names and
    aliases are matched case-insensitively; re-registering a taken name raises ``ModelError`` unless
    ``overwrite=True``. The decorated object is returned unchanged.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"register(): model name must be a non-empty string, got {name!r}")
    if isinstance(aliases, str):
        aliases = (aliases,)
    alias_tuple = tuple(aliases)
    for alias in alias_tuple:
        if not isinstance(alias, str) or not alias.strip():
            raise ModelError(f"register({name!r}): aliases must be non-empty strings, got {alias!r}")

    def decorator(factory: F) -> F:
        if not callable(factory):
            raise ModelError(f"register({name!r}) must decorate a class or function, got {factory!r}")
        keys = [_key(name), *(_key(a) for a in alias_tuple)]
        if len(set(keys)) != len(keys):
            raise ModelError(f"register({name!r}): name and aliases {alias_tuple} repeat each other")
        if overwrite:
            _unregister_names(keys)
        taken = [k for k in keys if k in _LOOKUP]
        if taken:
            raise ModelError(
                f"register({name!r}): {taken} already registered (for {_LOOKUP[taken[0]]!r}); "
                "pick another name or pass overwrite=True"
            )
        entry = _Entry(name.strip(), factory, tuple(a.strip() for a in alias_tuple), description)
        _ENTRIES[entry.name] = entry
        for k in keys:
            _LOOKUP[k] = entry.name
        return factory

    return decorator


def _unregister_names(keys: Iterable[str]) -> None:
    """Drop every entry that owns one of ``keys`` (with all of its aliases)."""
    for k in keys:
        canonical = _LOOKUP.get(k)
        if canonical is None:
            continue
        entry = _ENTRIES.pop(canonical)
        for other in (entry.name, *entry.aliases):
            _LOOKUP.pop(_key(other), None)


def unregister(name: str) -> None:
    """Remove a registered model and its aliases (mainly for tests and interactive sessions)."""
    if _key(name) not in _LOOKUP:
        raise ModelError(f"unregister(): no model named {name!r}")
    _unregister_names([_key(name)])


def list_models(*, include_aliases: bool = False) -> list[str]:
    """Sorted canonical model names (plus aliases when asked), for help texts and error messages."""
    names = set(_ENTRIES)
    if include_aliases:
        for entry in _ENTRIES.values():
            names.update(entry.aliases)
    return sorted(names)


def describe_models() -> dict[str, str]:
    """Canonical name → one-line description, e.g. for ``tenfold models`` on the command line."""
    return {name: _ENTRIES[name].description for name in sorted(_ENTRIES)}


def resolve(name: str) -> str:
    """Canonical name for ``name`` or an alias of it; ``ModelError`` listing the known names otherwise."""
    if not isinstance(name, str):
        raise ModelError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    canonical = _LOOKUP.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(_key(name), list(_LOOKUP), n=3)
        hint = f" Did you mean {', '.join(repr(_LOOKUP[c]) for c in close)}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())} "
            f"(aliases: {', '.join(sorted(a for e in _ENTRIES.values() for a in e.aliases)) or 'none'}). "
            "Register your own with tenfold.models.register()."
        )
    return canonical


def _bind_kwargs(entry: _Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check ``kwargs`` against the factory signature; return them with defaults filled in."""
    try:
        sig = inspect.signature(entry.factory)
    except (TypeError, ValueError):  # builtins without a signature: pass through unchecked
        return dict(kwargs)
    params = sig.parameters
    keywordable = {
        n: p
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in keywordable]
    if unknown and not takes_var_kw:
        close = difflib.get_close_matches(unknown[0], list(keywordable), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(
            f"model {entry.name!r} got unknown argument {unknown[0]!r}{hint}; "
            f"it accepts: {', '.join(keywordable) or 'no arguments'}"
        )
    missing = [n for n, p in keywordable.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise ModelError(f"model {entry.name!r} needs argument {missing[0]!r} (required: {', '.join(missing)})")
    full = {n: kwargs.get(n, p.default) for n, p in keywordable.items()}
    full.update({k: v for k, v in kwargs.items() if k not in keywordable})
    return full


def create(name: str, *, pretrained: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name, optionally loading weights from a checkpoint file.

    The returned module carries ``tenfold_spec = {"name": canonical_name, "kwargs": {...}}`` with
    every constructor argument (defaults filled in), so ``create(**model_spec(model))`` rebuilds
    the same architecture even if a default changes later. For that round trip, a single keyword
    ``kwargs=<dict>`` is unpacked into the constructor arguments.

    Raises ``ModelError`` for an unknown name (listing the known ones), an unknown or invalid
    argument (naming it) and for a checkpoint that does not fit (see ``load_pretrained``).
    """
    entry = _ENTRIES[resolve(name)]
    nested = kwargs.get("kwargs")
    if isinstance(nested, Mapping) and "kwargs" not in _param_names(entry.factory):
        kwargs = {**{k: v for k, v in kwargs.items() if k != "kwargs"}, **nested}
    full = _bind_kwargs(entry, kwargs)
    try:
        model = entry.factory(**copy.deepcopy(full))
    except ModelError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelError(f"could not build model {entry.name!r} with {kwargs!r}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"factory registered as {entry.name!r} returned {type(model).__name__}, not a torch.nn.Module")
    setattr(model, SPEC_ATTR, {"name": entry.name, "kwargs": _plain(full)})
    if pretrained is not None:
        from tenfold.models.pretrained import load_pretrained

        load_pretrained(model, pretrained)
    return model


def _plain(value: Any) -> Any:
    """Deep copy with tuples turned into lists, so a spec equals its own JSON round trip."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def _param_names(factory: Callable[..., Any]) -> set[str]:
    """Names the factory accepts as keywords (not its ``*args``/``**kwargs`` catch-alls)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "kwargs": {...}}`` that ``create(**spec)`` rebuilds ``model``'s architecture from.

    Only the architecture is described, not the weights. Tuples are stored as lists, so the spec
    survives a JSON round trip unchanged. Returns a copy, so editing it (e.g. to change
    ``num_classes``) does not touch the model.
    """
    spec = getattr(model, SPEC_ATTR, None)
    if not isinstance(spec, dict) or "name" not in spec:
        raise ModelError(
            f"{type(model).__name__} has no model spec: it was not built by tenfold.models.create(). "
            "Build it with create(name, ...) (register custom classes with tenfold.models.register())"
        )
    return copy.deepcopy(spec)
