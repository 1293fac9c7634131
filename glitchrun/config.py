"""The composed config checked before anything runs: every key's name and every value's type.

The components are their own schema: each ``_target_`` node is checked against the signature and type hints
of what it names, so a component's new parameter needs no second list here. A key the target does not take
is refused with the nearest name it does take; a value of the wrong type names the full key and the type
wanted. The plain top-level nodes, which no ``_target_`` describes, have the small dataclasses below
(``campaign.project`` and ``campaign.workflow`` are the components' own ``ProjectSpec`` and ``WorkflowSpec``).
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal, Union

from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from glitchrun.zooniverse.resources import ProjectSpec, WorkflowSpec

#: Hydra's own keys of a ``_target_`` node
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
#: an interpolation that is a whole other key, e.g. ``${al.batch_size}``
REFERENCE = re.compile(r"^\$\{([\w.]+)\}$")
#: problems listed before "and N more"
MAX_LISTED = 3


#: full key of the value at fault -> the message; a value used in several places is reported once
Problems = dict[str, str]


class ConfigError(ValueError):
    """Settings glitchrun cannot run with; the message names each key and what it accepts."""


@dataclass
class AlSettings:
    """``al``: the active-learning round's settings, shared by al_round and simulate."""

    batch_size: int
    subject_set_name: str | None = None
    seed_per_class: int | None = None
    seed_fraction: float | None = None


@dataclass
class RetirementSettings:
    """``campaign.retirement``: glitchrun's consensus retirement (the workflow's own count is a safety cap)."""

    max_votes: int
    offer_disputed: bool = False
    min_next_vote_chance: float = 0.0
    strong_disagreement: float = 0.0
    skill_tolerance: float = 0.05


@dataclass
class GoldSettings:
    """``campaign.gold``: known-answer subjects in every batch (glitchrun/campaign/gold.py)."""

    share: float = 0.0


@dataclass
class CampaignSettings:
    """``campaign``: the Zooniverse project and workflow, how subjects retire, and where the state lives."""

    name: str
    state_dir: str
    project: ProjectSpec
    workflow: WorkflowSpec
    retirement: RetirementSettings
    gold: GoldSettings = field(default_factory=GoldSettings)


@dataclass
class PathSettings:
    """``paths``: where runs and campaigns are written."""

    outputs: str
    campaigns: str
    run_dir: str


@dataclass
class Settings:
    """The top level besides the config groups (whose nodes are ``_target_`` nodes)."""

    seed: int
    al: AlSettings
    campaign: CampaignSettings
    paths: PathSettings


def check(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming every unknown key and every value of the wrong type in ``cfg``.

    The plain settings are checked first, and a mistake there is reported before the components' modules
    are imported to read their signatures (seconds: scikit-learn, matplotlib, gwpy).
    """
    problems: Problems = {}
    components = {str(key) for key in cfg if is_target(cfg, str(key))}
    fields(cfg, Settings, "", problems, partial=True, ignore={"hydra", *components})
    if not problems:
        fields(cfg, Settings, "", problems, partial=True, ignore={"hydra"})
    if problems:
        found = list(problems.values())
        more = f" (and {len(found) - MAX_LISTED} more)" if len(found) > MAX_LISTED else ""
        raise ConfigError("; ".join(found[:MAX_LISTED]) + more)


def unknown_key(key: str, parent: str, names: collections.abc.Iterable[str]) -> str:
    """The message for a key its node does not take, with the nearest name it does take."""
    names = sorted(n for n in names if n not in HYDRA_KEYS)
    full = f"{parent}.{key}" if parent else key
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else f"it takes {', '.join(names)}"
    return f"{full} is not a setting of {parent or 'the config'}; {hint}"


def parameters(target: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """The named parameters of a callable, their type hints (empty when they cannot be resolved), and
    whether it takes any keyword (``**kwargs``)."""
    signature = inspect.signature(target)
    named = {n: p for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    anything = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    hints: dict[str, Any] = {}
    for source in ((target.__init__, target) if isinstance(target, type) else (target,)):
        try:
            hints = typing.get_type_hints(source)
            break
        except (NameError, TypeError, AttributeError):  # names only type checkers import: names still checked
            continue
    return named, hints, anything


def fields(node: DictConfig, target: Any, where: str, problems: Problems, *, partial: bool,
           ignore: collections.abc.Set[str] = frozenset()) -> None:
    """Check the keys of ``node`` against the parameters of ``target`` and each value against its hint."""
    named, hints, anything = parameters(target)
    groups = [str(k) for k in node if not where and is_target(node, str(k))]  # config groups' nodes, at the top
    # plain values first, so a value other keys refer to (``${seed}``) is reported under its own name
    for key in sorted((str(k) for k in node), key=lambda k: k in groups):
        if key in HYDRA_KEYS or key in ignore:
            continue
        full = f"{where}.{key}" if where else key
        if key in named or key in groups:
            value(node, key, hints.get(key, Any), full, problems)
        elif not anything:
            problems.setdefault(full, unknown_key(key, where, [*named, *groups]))
    if not partial:
        for name in [n for n, p in named.items() if p.default is p.empty and n not in node]:
            problems.setdefault(f"{where}.{name}", f"{where}.{name} is required")


def is_target(node: DictConfig, key: str) -> bool:
    child = node._get_node(key)
    return isinstance(child, DictConfig) and not child._is_missing() and not child._is_none() and "_target_" in child


def value(parent: DictConfig, key: str, hint: Any, where: str, problems: Problems) -> None:
    """Check one value: a ``_target_`` node by its target, a plain node by its dataclass, a leaf by its hint.

    A reference to another node (``${backend}``) is checked where that node lives; a reference to a value
    (``${seed}``) is checked here and named by the key it comes from.
    """
    child = parent._get_node(key)
    reference = REFERENCE.match(str(child._value())) if OmegaConf.is_interpolation(parent, key) else None
    try:
        resolved = parent[key]
    except OmegaConfBaseException as err:
        if "Missing mandatory value" in str(err):
            problems.setdefault(where, f"{where} is required")
        return  # an interpolation Hydra resolves only when the job runs, or one instantiate will report
    if isinstance(resolved, DictConfig):
        if reference is not None:
            return
        if "_target_" in resolved:
            try:
                target = get_method(str(resolved._target_))
            except (ImportError, AttributeError, ValueError):
                problems.setdefault(where, f"{where}._target_ {resolved._target_!r} cannot be imported")
                return
            fields(resolved, target, where, problems, partial=bool(resolved.get("_partial_", False)))
            return
        dataclass_hint = plain_class(hint)
        if dataclass_hint is not None:
            fields(resolved, dataclass_hint, where, problems, partial=False)
            return
    if isinstance(resolved, (DictConfig, ListConfig)):
        resolved = OmegaConf.to_container(resolved, resolve=True)
    if not accepts(hint, resolved):
        source = reference.group(1) if reference else where
        used = f" (used as {where})" if reference else ""
        problems.setdefault(source, f"{source}{used} must be {describe(hint)}, got {resolved!r}")


def plain_class(hint: Any) -> type | None:
    """The dataclass a plain node stands for (e.g. ``WorkflowSpec``), possibly inside ``Optional``."""
    candidates = [a for a in typing.get_args(hint) if a is not type(None)] if is_union(hint) else [hint]
    return next((c for c in candidates if isinstance(c, type) and hasattr(c, "__dataclass_fields__")), None)


def is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable,
             collections.abc.Collection, collections.abc.MutableSequence)
MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def accepts(hint: Any, value: Any) -> bool:
    """Whether a YAML value (scalar, list, dict) fits a type hint; hints it cannot judge accept anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_union(hint):
        return any(accepts(a, value) for a in args)
    if origin is Literal:
        return value in args
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (os.PathLike, PurePath) or (isinstance(hint, type) and issubclass(hint, PurePath)) \
            or origin is os.PathLike:
        return isinstance(value, str)
    if (origin or hint) in SEQUENCES and (origin or hint) is not str:
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(accepts(a, v) for a, v in zip(args, value))
        return not args or all(accepts(args[0], v) for v in value)
    if (origin or hint) in MAPPINGS:
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(accepts(args[0], k) and accepts(args[1], v) for k, v in value.items())
    return True


def describe(hint: Any) -> str:
    """A type hint in words, e.g. ``an integer or null``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_union(hint):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if (origin or hint) in MAPPINGS:
        return "a mapping" + (f" of {describe(args[1])}" if len(args) == 2 else "")
    if (origin or hint) in SEQUENCES:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return "a list" + (f" of {plural[args[0]]}" if args and args[0] in plural else "")
    if hint in (os.PathLike, PurePath) or origin is os.PathLike or (isinstance(hint, type) and issubclass(hint, PurePath)):
        return "a path"
    return getattr(hint, "__name__", str(hint))
