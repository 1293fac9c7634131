"""What a workflow's definition means: retirement rules, versions, task strings and answer labels.

The real server keeps task text in a separate string table; this one stores tasks verbatim (§4) and
derives the split when it needs it: to tell a structural change (major version) from a text change
(minor version), and for the workflow export's ``tasks``/``strings`` columns, which on Zooniverse hold
the structure with string keys (``"question": "T0.question"``) and the key → text map.
"""

from __future__ import annotations

from typing import Any

from glitchrun.embedded_panoptes.errors import ApiError

DEFAULT_RETIREMENT: dict[str, Any] = {"criteria": "classification_count", "options": {"count": 15}}
RETIREMENT_CRITERIA = ("never_retire", "classification_count")
#: keys whose values are translatable strings rather than structure (``lib/tasks_visitors/extract_strings.rb``:
#: whatever the value, a survey choice's whole ``confusions`` object too)
TEXT_KEYS = frozenset({"instruction", "label", "question", "help", "description", "confusions"})
#: workflow attributes whose change makes a new major version, besides the task structure
STRUCTURAL_ATTRIBUTES = ("first_task", "grouped", "pairwise", "prioritized")
LABELLED_ANSWER_TYPES = frozenset({"single", "multiple", "shortcut"})
UNKNOWN_LABEL = "unknown answer label"


def normalize_retirement(retirement: dict[str, Any]) -> dict[str, Any]:
    """``{}`` becomes the default (``Workflow#retirement_with_defaults``); otherwise ``retirement_validator.rb``:
    criteria one of ``lib/retirement_schemes.rb``'s, an integer count if given (400 ``Validation failed``)."""
    if not retirement:
        return {"criteria": DEFAULT_RETIREMENT["criteria"], "options": dict(DEFAULT_RETIREMENT["options"])}
    problems = []
    if retirement.get("criteria") not in RETIREMENT_CRITERIA:
        problems.append("Retirement criteria Retirement criteria must be one of " + ", ".join(RETIREMENT_CRITERIA))
    count = retirement.get("options", {}).get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int):
        problems.append("Retirement options count Retirement count must be a number")
    if problems:
        raise ApiError(400, f"Validation failed: {', '.join(problems)}")
    return {"options": {}, **retirement}


def split_strings(tasks: Any, path: str = "") -> tuple[Any, dict[str, Any]]:
    """(structure with text replaced by its key, ``{key: text}``), e.g. ``T0.answers.0.label``."""
    strings: dict[str, Any] = {}
    if isinstance(tasks, dict):
        structure: Any = {}
        for key, value in tasks.items():
            child = f"{path}.{key}" if path else str(key)
            if key in TEXT_KEYS:
                structure[key] = child
                strings[child] = value
            else:
                structure[key], found = split_strings(value, child)
                strings.update(found)
        return structure, strings
    if isinstance(tasks, list):
        items = []
        for index, value in enumerate(tasks):
            item, found = split_strings(value, f"{path}.{index}")
            items.append(item)
            strings.update(found)
        return items, strings
    return tasks, strings


def version_bumps(old: dict[str, Any], new: dict[str, Any]) -> tuple[int, int]:
    """How much (major, minor) grow between two definitions (``tasks`` plus the structural attributes)."""
    old_structure, old_strings = split_strings(old["tasks"])
    new_structure, new_strings = split_strings(new["tasks"])
    structural = old_structure != new_structure or any(old.get(a) != new.get(a) for a in STRUCTURAL_ATTRIBUTES)
    return int(structural), int(old_strings != new_strings)


def label_annotations(annotations: list[Any], tasks: dict[str, Any]) -> list[Any]:
    """Annotations as the classification export writes them (§9.2): answer indexes become labels."""
    return [_label(a, tasks.get(a.get("task")) if isinstance(a, dict) else None) for a in annotations]


def _label(annotation: Any, task: Any) -> Any:
    if not isinstance(task, dict):
        return annotation  # unknown task: copied unchanged
    kind = task.get("type")
    value = annotation.get("value")
    if kind in LABELLED_ANSWER_TYPES:
        answers = task.get("answers") or []
        if isinstance(value, list):
            value = [_answer_label(answers, v) for v in value]
        elif value is not None:
            value = _answer_label(answers, value)
        return {"task": annotation["task"], "task_label": task.get("question"), "value": value}
    if kind == "text":
        return {"task": annotation["task"], "task_label": task.get("instruction"), "value": value}
    if kind == "drawing" and isinstance(value, list):
        tools = task.get("tools") or []
        marks = [
            {**mark, "tool_label": _answer_label(tools, mark.get("tool"))} if isinstance(mark, dict) else mark
            for mark in value
        ]
        return {"task": annotation["task"], "task_label": task.get("instruction"), "value": marks}
    return annotation  # survey and other types: unchanged, no task_label


def _answer_label(options: list[Any], index: Any) -> Any:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(options):
        return UNKNOWN_LABEL
    option = options[index]
    return option.get("label", UNKNOWN_LABEL) if isinstance(option, dict) else UNKNOWN_LABEL
