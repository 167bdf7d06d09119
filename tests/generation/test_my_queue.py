from django.urls import reverse

from generation.models import JobStatus
from studio.accounts.models import Membership, Project, Role
from tests.base import StudioTestCase, make_job


class MyQueueTestCase(StudioTestCase):
    def test_shows_the_users_jobs_across_projects_with_their_place_in_line(self):
        Membership.objects.create(team=self.other_team, user=self.editor, role=Role.EDITOR)
        make_job(self.other_project, self.outsider, self.model, prompt="hers, first in line")
        make_job(self.project, self.editor, self.model, prompt="posters job")
        make_job(self.other_project, self.editor, self.model, prompt="elsewhere job")
        make_job(self.project, self.editor, self.model, prompt="done job",
                 status=JobStatus.FINISHED)
        self.client.force_login(self.editor)

        response = self.client.get(reverse("my_queue"))

        self.assertEqual(
            [job.prompt for job in response.context["active"]], ["elsewhere job", "posters job"]
        )
        self.assertEqual([job.position for job in response.context["active"]], [3, 2])
        self.assertEqual([job.prompt for job in response.context["ended"]], ["done job"])
        self.assertNotContains(response, "hers, first in line")
        self.assertContains(response, "Elsewhere / Hers")

    def test_jobs_in_teams_the_user_left_are_not_shown(self):
        make_job(self.project, self.editor, self.model, prompt="old team job")
        Membership.objects.filter(team=self.team, user=self.editor).delete()
        self.client.force_login(self.editor)
        self.assertNotContains(self.client.get(reverse("my_queue")), "old team job")

    def test_anonymous_users_are_sent_to_log_in(self):
        response = self.client.get(reverse("my_queue"))
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])

    def test_query_count_does_not_grow_with_jobs(self):
        self.client.force_login(self.editor)

        def queries_for(count):
            projects = [Project.objects.create(team=self.team, name=f"P{n}") for n in range(3)]
            for n in range(count):
                make_job(projects[n % 3], self.editor, self.model)
                make_job(projects[n % 3], self.editor, self.model, status=JobStatus.FAILED)
            # 5: one of them the top bar's unread-notifications count (the session comes
            # from the cache).
            with self.assertNumQueries(5) as context:
                self.client.get(reverse("my_queue"))
            return len(context.captured_queries)

        self.assertEqual(queries_for(2), queries_for(20))
