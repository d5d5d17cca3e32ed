"""What a role cannot do is greyed out in the views, and stays so when a view's own state logic
enables the widget; the role comes from the registry (SQLite: the owner, admin)."""

from __future__ import annotations

from pathomics_desktop.registry.permissions import can
from pathomics_desktop.ui.permissions import apply_permissions
from pathomics_desktop.ui.views import VIEWS, view_class
from pathomics_desktop.ui.views.jobs import JobsView
from pathomics_desktop.ui.views.patient_form import PatientFormView
from tests.ui.helpers import shown_view


def test_every_permission_names_real_widgets_and_real_actions(qtbot):
    from pathomics_desktop.registry.permissions import ACTIONS

    for _vid, _title, target in VIEWS:
        cls = view_class(target)
        if not cls.PERMISSIONS:
            continue
        view = cls()
        qtbot.addWidget(view)
        for action, names in cls.PERMISSIONS.items():
            assert action in ACTIONS, (cls.__name__, action)
            for name in names:
                assert hasattr(view, name), (cls.__name__, name)


def test_a_clinician_cannot_save_or_lock_even_when_the_form_would_allow_it(qtbot, demo_context):
    form = shown_view(qtbot, PatientFormView(), demo_context, (1300, 800))
    form.show_patient("SYN-A-0005")
    qtbot.waitUntil(lambda: form.study_id == "SYN-A-0005" and not form.busy(), timeout=30000)
    apply_permissions(form, "clinician")
    assert not can("clinician", "edit_patients")
    form.save_button.setEnabled(True)  # what the form's state logic does after an edit
    form.lock_button.setEnabled(True)
    assert not form.save_button.isEnabled() and not form.lock_button.isEnabled()
    assert "clinician" in form.save_button.toolTip() and not form.show_identifiers.isEnabled()
    apply_permissions(form, "coordinator")  # the role changes: the form's own wish counts again
    assert form.save_button.isEnabled() and form.lock_button.isEnabled() and form.show_identifiers.isEnabled()
    form.save_button.setEnabled(False)
    assert not form.save_button.isEnabled()


def test_an_analyst_runs_jobs_and_the_sqlite_owner_is_admin(qtbot, demo_context):
    from pathomics_desktop.ui.main_window import MainWindow

    jobs = shown_view(qtbot, JobsView(), demo_context, (900, 600))
    apply_permissions(jobs, "analyst")
    assert jobs.new_button.isEnabled()
    apply_permissions(jobs, "clinician")
    assert not jobs.new_button.isEnabled()
    window = MainWindow()
    qtbot.addWidget(window)
    window.open_project(demo_context.project.root)
    qtbot.waitUntil(lambda: window.ctx is not None and window.ctx.role == "admin" and not window.busy(),
                    timeout=60000)
    form = window.view("patient")
    assert form.save_button.__dict__["_pathomics_allowed"] is True
