"""Finding and making the campaign's resources under the real server's rules (issue 25): names with a comma,
subjects deleted (deactivated) while still in a set, and a workflow made on a live project."""

from __future__ import annotations

from panoptes_client import Project, Subject, SubjectSet, Workflow

from glitchrun.zooniverse.resources import (
    ProjectSpec,
    WorkflowSpec,
    ensure_project,
    ensure_subject_set,
    ensure_workflow,
    find_project,
    set_subject_count,
    subject_set_members,
)

from ..embedded_panoptes.helpers import make_project, make_subjects

COMMA = ProjectSpec("O3, pilot", "A campaign whose name holds a comma", private=False)


def test_a_name_with_a_comma_is_found_again_not_made_twice(connection) -> None:
    """restpack splits filter values on commas (``display_name=O3, pilot`` looks for "O3" and " pilot"), so
    the lookups read the owner's projects, and the project's sets, and compare names themselves."""
    assert not list(Project.where(display_name=COMMA.display_name))  # what a display_name filter finds
    made, created = ensure_project(COMMA, connection.login)
    again, created_again = ensure_project(COMMA, connection.login)
    assert (created, created_again, again.id) == (True, False, made.id)
    assert find_project(COMMA, None).id == made.id  # the logged-in account's (current_user_roles=owner)
    make_project("O3")  # a project named like a part of the name is not it
    assert find_project(COMMA, connection.login).id == made.id

    subject_set, created = ensure_subject_set(made, "round 1, H1")
    same, created_again = ensure_subject_set(made, "round 1, H1")
    assert (created, created_again, same.id) == (True, False, subject_set.id)
    assert [s.id for s in SubjectSet.where(project_id=made.id)] == [subject_set.id]


def test_a_subject_deleted_on_zooniverse_stays_a_member_but_is_not_counted(connection) -> None:
    """Zooniverse deactivates a deleted subject (deactivatable_resource.rb): it stays in the set-member list,
    so the room a round still needs is counted from the subjects the API shows."""
    project, _ = ensure_project(COMMA, connection.login)
    subject_set, _ = ensure_subject_set(project, "batch")
    subjects = make_subjects(project, 3)
    subject_set.add(subjects)
    Subject.find(subjects[0].id).delete()
    assert sorted(subject_set_members(subject_set.id)) == sorted(s.id for s in subjects)
    assert set_subject_count(subject_set.id) == 2


def test_a_workflow_made_on_a_live_project_is_made_active(connection) -> None:
    """workflows_controller.rb makes a live project's new workflows inactive: volunteers would never see it."""
    project, _ = ensure_project(ProjectSpec("Live campaign", "d", private=False, live=True), connection.login)
    workflow, created = ensure_workflow(project, WorkflowSpec("Glitch classification", ["Blip", "Whistle"]))
    assert created and Workflow.find(workflow.id).active
    assert Project.find(project.id).raw["links"]["active_workflows"] == [str(workflow.id)]
