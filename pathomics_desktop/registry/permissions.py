"""What each role may do, for the GUI to grey out actions (Qt-free).

The server enforces the same rules (migrations 0005 and 0006: GRANTs and row-level
security); this table only spares the user a refused action. Roles:

* ``admin`` — everything, including users and the codebook;
* ``coordinator`` — edits the curated data (patients, follow-up, slides, identifiers) of
  their centers, imports, and registers slides / runs jobs;
* ``analyst`` — reads all de-identified data, runs analyses and jobs (``run_jobs``: tiling
  records a slide's QC, ``signature apply`` writes the derived score variables; no other
  registry data);
* ``clinician`` — reads de-identified data and analyses;
* ``""`` — a login without a role in this registry: nothing.

On SQLite (one user, the file's owner) the role is ``admin``
(:func:`pathomics_desktop.registry.users.current_role_of`).
"""

from __future__ import annotations

#: action -> roles allowed
ACTIONS: dict[str, frozenset[str]] = {
    "view_data": frozenset({"admin", "coordinator", "analyst", "clinician"}),
    "view_analyses": frozenset({"admin", "coordinator", "analyst", "clinician"}),
    "view_identifiers": frozenset({"admin", "coordinator"}),
    "edit_patients": frozenset({"admin", "coordinator"}),
    "import": frozenset({"admin", "coordinator"}),
    "lock_patients": frozenset({"admin", "coordinator"}),
    "delete_patients": frozenset({"admin", "coordinator"}),
    "edit_slides": frozenset({"admin", "coordinator"}),
    "run_jobs": frozenset({"admin", "coordinator", "analyst"}),
    "run_analyses": frozenset({"admin", "coordinator", "analyst"}),
    "export_identifiers": frozenset({"admin", "coordinator"}),
    "edit_codebook": frozenset({"admin"}),
    "edit_centers": frozenset({"admin"}),
    "manage_users": frozenset({"admin"}),
}


def can(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (a key of :data:`ACTIONS`; an unknown action is a
    programming error and raises ``KeyError``)."""
    return role in ACTIONS[action]


def allowed_actions(role: str) -> list[str]:
    """The actions of ``role``, sorted."""
    return sorted(a for a, roles in ACTIONS.items() if role in roles)
