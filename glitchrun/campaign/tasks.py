"""Which task of a Zooniverse workflow asks for the glitch class, and how its annotations become classes.

A classification holds one annotation per task the volunteer saw. glitchrun reads the class from one task:
- a **single-answer question** (``type: single``): the annotation's value is the answer's index in the
  raw API (``{"task": "T0", "value": 3}``) and the answer's label in an export (``"value": "Blip"``;
  panoptes ``lib/formatter/csv/annotation_for_csv.rb``); each answer label is a class;
- a **survey task** (``type: survey``, what Gravity Spy's workflows use): the value is a list of choice
  objects, the same in the API and in exports (``[{"choice": "BLIP", "answers": {}, "filters": {}}]``);
  a choice → class table (config ``campaign.workflow.choices``) gives each choice's class.
Other task types (drawing, text, multiple-answer questions, …) cannot give one class and are refused in
one short line naming the task and its type, never echoing the annotation.

A workflow edited after launch gets new versions (``major.minor``: a new major version when its tasks'
structure changed, e.g. ``T0`` asked another question; a new minor version for wording only). Only the
versions that count are read: by default the workflow's current major version, all its minor versions;
a configured version ``"3"`` means every ``3.x`` and ``"3.2"`` that version only, as panoptes_aggregation
reads ``workflow_version``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from glitchrun.zooniverse.resources import version_texts, workflow_options

SINGLE, SURVEY = "single", "survey"
TASK_TYPES = (SINGLE, SURVEY)
#: keys of a drawing mark (point, line, rectangle, freehand … tools), in the API and in exports
DRAWING_KEYS = frozenset({"tool", "toolIndex", "toolType", "x", "y", "pathX", "points", "frame"})
OTHER_WORKFLOWS, OTHER_VERSIONS = "other workflows", "other versions"
#: one annotation reduced by ``answers_of``: (task key, shape of its value, what was chosen)
Answer = tuple[Any, str, Any]
Answers = tuple[Answer, ...] | None


class IngestError(ValueError):
    """Classifications that cannot be turned into labels (a whole-task problem); nothing was written."""


class AnswerError(ValueError):
    """One classification's annotation that is not an option of the task (listed per classification)."""


@dataclass(frozen=True)
class TaskSpec:
    """The task holding the class: its key, its type, its options (answer labels or survey choice ids, in
    the workflow's order) and each option's class; which workflow and versions count.

    ``workflow_id``, ``versions`` and ``key`` may be None until ``for_export`` reads them from an export.
    """

    key: str | None
    type: str
    options: tuple[str, ...]
    table: Mapping[str, str]  # option -> class
    workflow_id: str | None = None
    versions: tuple[str, ...] | None = None

    @property
    def classes(self) -> list[str]:
        """The classes the task can give, in option order."""
        return list(dict.fromkeys(self.table[o] for o in self.options))

    # -- building -----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, workflow: Mapping[str, Any], workflow_id: Any = None) -> TaskSpec:
        """From config ``campaign.workflow`` alone (an export read offline): ``task_type``, the classes or the
        choice table, and ``task``/``versions`` if set (else read from the export by ``for_export``)."""
        table = option_table(workflow)
        return cls(workflow.get("task"), str(workflow.get("task_type") or SINGLE), tuple(table), table,
                   None if workflow_id is None else str(workflow_id), version_texts(workflow.get("versions")))

    @classmethod
    def from_workflow(cls, workflow: Any, config: Mapping[str, Any]) -> TaskSpec:
        """From a ``panoptes_client.Workflow`` (``tasks``, ``first_task``, ``version``) and config
        ``campaign.workflow``: the configured ``task``, else the first single/survey task whose options all
        have a class (the workflow's first task tried first); versions default to the current major version.
        """
        tasks: dict[str, Any] = workflow.raw.get("tasks") or {}
        table = option_table(config)
        kind_wanted = str(config.get("task_type") or SINGLE)
        wanted = config.get("task")
        keys = [wanted] if wanted else sorted(tasks, key=lambda k: (k != workflow.raw.get("first_task"), k))
        for key in keys:
            task = tasks.get(key) if isinstance(tasks.get(key), dict) else {}
            kind, options = task.get("type"), workflow_options(task)
            unknown = [o for o in options if o not in table]
            if wanted and kind not in TASK_TYPES:
                raise IngestError(f"workflow {workflow.id} task {key} is {describe(kind)}; glitchrun reads the class "
                                  "from a single-answer question or a survey task (campaign.workflow.task)")
            if wanted and kind != kind_wanted:
                raise IngestError(f"workflow {workflow.id} task {key} is {describe(kind)}, not "
                                  f"{describe(kind_wanted)} (campaign.workflow.task_type)")
            if wanted and unknown:
                raise IngestError(f"workflow {workflow.id} task {key} has options {unknown[:5]} without a class "
                                  "(campaign.workflow.classes, or .choices for a survey task)")
            if kind == kind_wanted and options and not unknown:
                versions = version_texts(config.get("versions")) or (major(workflow.raw["version"]),)
                return cls(key, kind, tuple(options), {o: table[o] for o in options}, str(workflow.id), versions)
        found = ", ".join(f"{k} ({describe(t.get('type') if isinstance(t, dict) else None)})" for k, t in tasks.items())
        raise IngestError(f"workflow {workflow.id}: none of its tasks is {describe(kind_wanted)} whose options all "
                          f"have a class (tasks: {found or 'none'}); set campaign.workflow.task and .task_type")

    def for_workflow(self, workflow_id: Any, versions: Iterable[Any]) -> TaskSpec:
        """This spec for one workflow of an export: its id and, unless configured, the versions that count (the
        latest major version among ``versions``, its classifications' versions)."""
        spec = replace(self, workflow_id=str(workflow_id))
        if spec.versions is None:
            latest = max((int(major(v)) for v in versions), default=None)
            spec = replace(spec, versions=() if latest is None else (str(latest),))
        return spec

    def with_key(self, answers: Iterable[tuple[Answers, int]]) -> TaskSpec:
        """This spec with its task key, unless configured: the task whose annotations are most often options of
        this task (``answers``: each distinct ``answers_of`` of the classifications that count, and how many)."""
        return self if self.key is not None else replace(self, key=self.answering_task(answers))

    def answering_task(self, answers: Iterable[tuple[Answers, int]]) -> str:
        """The task key whose annotation values are most often options of this task."""
        hits: Counter[str] = Counter()
        seen: dict[str, str] = {}
        for found, count in answers:
            for answer in found or ():
                key, kind, _ = answer
                seen.setdefault(key, kind)
                try:
                    if replace(self, key=key).value_of((answer,)) is not None:
                        hits[key] += count
                except ValueError:  # another task's annotation
                    continue
        if not hits:
            found_tasks = ", ".join(f"{k} ({describe(t)})" for k, t in seen.items())
            raise IngestError(f"no task of the export is {describe(self.type)} answered with the campaign's options "
                              f"(tasks: {found_tasks or 'none'}); set campaign.workflow.task and .task_type")
        return hits.most_common(1)[0][0]

    # -- reading ------------------------------------------------------------------------------------------
    def skip_reason(self, workflow_id: Any, version: Any) -> str | None:
        """Why a classification does not count (``OTHER_WORKFLOWS``, ``OTHER_VERSIONS``), None if it counts."""
        if self.workflow_id is not None and str(workflow_id) != self.workflow_id:
            return OTHER_WORKFLOWS
        if self.versions is not None and not any(str(version) == v or ("." not in v and major(version) == v)
                                                  for v in self.versions):
            return OTHER_VERSIONS
        return None

    def value(self, annotations: Any) -> str | None:
        """The chosen option as an export names it (answer label or choice id); None if nothing was chosen
        or survey choices of different classes were marked.

        Raises ``AnswerError`` for an option that is not the task's and ``IngestError`` for an annotation
        that has the shape of another task type.
        """
        if not isinstance(annotations, list):
            raise AnswerError(f"annotations are not a parsed JSON array ({type(annotations).__name__})")
        return self.value_of(answers_of(annotations))

    def value_of(self, answers: Answers) -> str | None:
        """``value`` of an annotations list reduced by ``answers_of``."""
        if answers is None:
            raise AnswerError("annotations are not a JSON array")
        found = next((a for a in answers if a[0] == self.key), None)
        if found is None:
            return None
        _, kind, chosen = found
        if kind != self.type:
            raise IngestError(f"task {self.key} is answered as {describe(kind)}, not as {describe(self.type)}; "
                              "glitchrun reads a single-answer question or a survey task "
                              "(campaign.workflow.task, .task_type)")
        if self.type == SINGLE:
            return None if chosen is None else self.option(chosen)
        options = [self.option(c) for c in chosen]
        return options[0] if len({self.table[o] for o in options}) == 1 else None

    def answer(self, annotations: Any) -> str | None:
        """The class a classification chose (export or raw API annotations); None if it chose none."""
        chosen = self.value(annotations)
        return None if chosen is None else self.table[chosen]

    def option(self, value: Any) -> str:
        """An annotation's answer index or label, or a survey choice id, as the option it names."""
        if isinstance(value, int) and not isinstance(value, bool) and self.type == SINGLE:
            if 0 <= value < len(self.options):
                return self.options[value]
        elif isinstance(value, str) and value in self.table:
            return value
        what = "choice" if self.type == SURVEY else "answer"
        where = " (campaign.workflow.choices)" if self.type == SURVEY else ""
        raise AnswerError(f"{what} {short(value)} is not one of task {self.key}'s {len(self.options)} {what}s{where}")

    def annotation_for(self, label: str) -> dict[str, Any]:
        """The raw-API annotation a volunteer posts to choose class ``label`` (its first option)."""
        option = next((o for o in self.options if self.table[o] == label), None)
        if option is None:
            raise ValueError(f"class {label!r} is not an option of task {self.key}")
        if self.type == SINGLE:
            return {"task": self.key, "value": self.options.index(option)}
        return {"task": self.key, "value": [{"choice": option, "answers": {}, "filters": {}}]}


def option_table(workflow: Mapping[str, Any]) -> dict[str, str]:
    """Option -> class from config ``campaign.workflow``: each class is its own answer label for a question;
    ``choices`` (choice id -> {class, label, description}) for a survey task."""
    kind = str(workflow.get("task_type") or SINGLE)
    if kind not in TASK_TYPES:
        raise IngestError(f"campaign.workflow.task_type is {kind!r}; use one of {list(TASK_TYPES)}")
    if kind == SINGLE:
        return {str(c): str(c) for c in workflow["classes"]}
    choices = workflow.get("choices") or {}
    if not choices:
        raise IngestError("campaign.workflow.choices is empty: a survey task needs its choice -> class table")
    return {str(cid): str(entry["class"]) for cid, entry in choices.items()}


def annotation_type(value: Any) -> str:
    """The task type an annotation value has the shape of: single, survey, multiple, drawing, combo or other."""
    if isinstance(value, list):
        objects = [v for v in value if isinstance(v, dict)]
        if any("choice" in v for v in objects):
            return SURVEY
        if any(DRAWING_KEYS & v.keys() for v in objects):
            return "drawing"
        if any("task" in v for v in objects):
            return "combo"
        if objects:
            return "other"
        return "multiple" if value else SURVEY  # an empty list: a survey with nothing marked
    return "other" if isinstance(value, dict) else SINGLE  # a label, an index or null


def answers_of(annotations: Any) -> Answers:
    """An annotations list reduced to what any task reads of it: per annotation, its task key, the shape of its
    value (``annotation_type``) and what was chosen (a question's label or index, a survey's choice ids, nothing
    for other shapes). Hashable and small, so the millions of classifications of an export reduce to the few
    distinct answers they give; None for annotations that are not a list."""
    if not isinstance(annotations, list):
        return None
    found = []
    for annotation in annotations:
        if not isinstance(annotation, dict):
            continue
        value = annotation.get("value")
        kind = annotation_type(value)
        if kind == SURVEY:
            chosen: Any = tuple(hashable(v.get("choice") if isinstance(v, dict) else v) for v in value)
        else:
            chosen = hashable(value) if kind == SINGLE else None
        found.append((hashable(annotation.get("task")), kind, chosen))
    return tuple(found)


def hashable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


def major(version: Any) -> str:
    return str(version).split(".")[0]


def describe(kind: Any) -> str:
    return {SINGLE: "a single-answer question", SURVEY: "a survey task", "multiple": "a multiple-answer question",
            None: "a missing task"}.get(kind, f"a {kind} task")


def short(value: Any, limit: int = 40) -> str:
    """A value for a one-line message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
