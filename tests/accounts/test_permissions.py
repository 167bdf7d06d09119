from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from studio.permissions import can, require
from tests.base import StudioTestCase

# Who may do what: True where the role is enough.
PROJECT_MATRIX = {
    "view": {"owner": True, "admin": True, "editor": True, "viewer": True, "outsider": False},
    "generate": {"owner": True, "admin": True, "editor": True, "viewer": False, "outsider": False},
    "manage": {"owner": True, "admin": True, "editor": False, "viewer": False, "outsider": False},
}
TEAM_MATRIX = {
    "view": {"owner": True, "admin": True, "editor": True, "viewer": True, "outsider": False},
    "create_project": {
        "owner": True, "admin": True, "editor": True, "viewer": False, "outsider": False
    },
    "invite": {"owner": True, "admin": True, "editor": False, "viewer": False, "outsider": False},
    "delete": {"owner": True, "admin": False, "editor": False, "viewer": False, "outsider": False},
}


class PermissionsTestCase(StudioTestCase):
    def test_project_matrix(self):
        for action, expected in PROJECT_MATRIX.items():
            for role, user in self.users_by_role().items():
                with self.subTest(action=action, role=role):
                    self.assertIs(can(user, action, self.project), expected[role])

    def test_team_matrix(self):
        for action, expected in TEAM_MATRIX.items():
            for role, user in self.users_by_role().items():
                with self.subTest(action=action, role=role):
                    self.assertIs(can(user, action, self.team), expected[role])

    def test_anonymous_may_do_nothing(self):
        for action in PROJECT_MATRIX:
            self.assertFalse(can(AnonymousUser(), action, self.project))

    def test_require_hides_objects_from_outsiders(self):
        with self.assertRaises(Http404):
            require(self.outsider, "generate", self.project)

    def test_require_refuses_members_with_a_lower_role(self):
        with self.assertRaises(PermissionDenied):
            require(self.viewer, "generate", self.project)
        self.assertIs(require(self.editor, "generate", self.project), self.project)
