"""Cancelling many queued jobs at once (My queue's "Cancel all", a team admin for a
member) and cancelling at any queue length: one update, one event per project."""

from unittest import mock

from django.urls import reverse

from generation.models import GenerationJob, JobStatus
from studio.accounts.models import Membership, Project, Role
from tests.base import StudioTestCase, make_job


class CancelTestCase(StudioTestCase):
    def setUp(self):
        patcher = mock.patch("generation.services.publish")
        self.publish = patcher.start()
        self.addCleanup(patcher.stop)

    def events(self, type_):
        payloads = [call.args[1] for call in self.publish.call_args_list]
        return [payload for payload in payloads if payload["type"] == type_]

    def statuses(self, *jobs):
        return [GenerationJob.objects.get(pk=job.pk).status for job in jobs]


class CancelAllMineTests(CancelTestCase):
    def test_cancels_every_queued_job_of_mine_and_nothing_else(self):
        Membership.objects.create(team=self.other_team, user=self.editor, role=Role.EDITOR)
        mine = [make_job(self.project, self.editor, self.model) for _ in range(3)]
        elsewhere = make_job(self.other_project, self.editor, self.model)
        running = make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING)
        theirs = make_job(self.project, self.admin, self.model)
        self.client.force_login(self.editor)

        response = self.client.post(reverse("my_queue_cancel_all"), follow=True)

        self.assertRedirects(response, reverse("my_queue"))
        self.assertContains(response, "Canceled 4 queued jobs.")
        self.assertEqual(self.statuses(*mine, elsewhere), [JobStatus.CANCELED] * 4)
        self.assertEqual(self.statuses(running, theirs), [JobStatus.RUNNING, JobStatus.QUEUED])
        self.assertIn("Canceled by carol before it started.",
                      GenerationJob.objects.get(pk=mine[0].pk).error)
        canceled = {event["project_id"]: sorted(event["job_ids"])
                    for event in self.events("jobs.canceled")}
        self.assertEqual(canceled, {self.project.pk: sorted(job.pk for job in mine),
                                    self.other_project.pk: [elsewhere.pk]})
        # The job left waiting moves up, told in one event for its project.
        self.assertEqual(self.events("queue.positions"), [
            {"type": "queue.positions", "project_id": self.project.pk,
             "positions": [[theirs.pk, 1]]}
        ])

    def test_my_queue_offers_it(self):
        make_job(self.project, self.editor, self.model)
        self.client.force_login(self.editor)
        self.assertContains(self.client.get(reverse("my_queue")),
                            reverse("my_queue_cancel_all"))

    def test_nothing_queued_says_so(self):
        self.client.force_login(self.viewer)
        response = self.client.post(reverse("my_queue_cancel_all"), follow=True)
        self.assertContains(response, "You had no queued jobs to cancel.")

    def test_get_is_not_allowed_and_anonymous_users_log_in(self):
        self.client.force_login(self.editor)
        self.assertEqual(self.client.get(reverse("my_queue_cancel_all")).status_code, 405)
        self.client.logout()
        self.assertEqual(self.client.post(reverse("my_queue_cancel_all")).status_code, 302)

    def test_the_work_does_not_grow_with_the_queue(self):
        self.client.force_login(self.editor)

        def queries_for(count):
            make_job(self.project, self.admin, self.model)  # someone else's waits on
            for _ in range(count):
                make_job(self.project, self.editor, self.model)
            self.publish.reset_mock()
            with self.assertNumQueries(8) as context:  # the session comes from the cache
                self.client.post(reverse("my_queue_cancel_all"))
            return len(context.captured_queries), self.publish.call_count

        self.assertEqual(queries_for(2), queries_for(40))


class CancelMembersJobsTests(CancelTestCase):
    def url(self, membership):
        return reverse("member_jobs_cancel", args=[self.team.pk, membership.pk])

    def test_a_team_admin_cancels_a_members_queued_jobs_in_this_team_only(self):
        Membership.objects.create(team=self.other_team, user=self.editor, role=Role.EDITOR)
        here = [make_job(self.project, self.editor, self.model) for _ in range(2)]
        elsewhere = make_job(self.other_project, self.editor, self.model)
        mine = make_job(self.project, self.admin, self.model)
        membership = Membership.objects.get(team=self.team, user=self.editor)
        self.client.force_login(self.admin)

        response = self.client.post(self.url(membership), follow=True)

        self.assertRedirects(response, self.team.get_absolute_url())
        self.assertContains(response, "Canceled 2 of carol&#x27;s queued jobs in Alpha.")
        self.assertEqual(self.statuses(*here), [JobStatus.CANCELED] * 2)
        self.assertEqual(self.statuses(elsewhere, mine), [JobStatus.QUEUED] * 2)
        self.assertIn("Canceled by bob", GenerationJob.objects.get(pk=here[0].pk).error)

    def test_the_team_page_offers_it_to_admins_only(self):
        membership = Membership.objects.get(team=self.team, user=self.editor)
        self.client.force_login(self.admin)
        self.assertContains(self.client.get(self.team.get_absolute_url()), self.url(membership))
        self.client.force_login(self.editor)
        self.assertNotContains(self.client.get(self.team.get_absolute_url()),
                               self.url(membership))

    def test_editors_may_not_outsiders_and_other_teams_members_get_404(self):
        job = make_job(self.project, self.viewer, self.model)
        membership = Membership.objects.get(team=self.team, user=self.viewer)
        for user, status in [(self.editor, 403), (self.viewer, 403), (self.outsider, 404)]:
            self.client.force_login(user)
            self.assertEqual(self.client.post(self.url(membership)).status_code, status)
        theirs = Membership.objects.get(team=self.other_team, user=self.outsider)
        self.client.force_login(self.admin)
        self.assertEqual(self.client.post(self.url(theirs)).status_code, 404)
        self.assertEqual(self.statuses(job), [JobStatus.QUEUED])


class CancelOneTests(CancelTestCase):
    def test_cancelling_one_job_costs_the_same_at_any_queue_length(self):
        self.client.force_login(self.editor)

        def cost_for(waiting):
            project = Project.objects.create(team=self.team, name=f"P{waiting}")
            for _ in range(waiting):
                make_job(project, self.admin, self.model)
            job = make_job(self.project, self.editor, self.model)
            self.publish.reset_mock()
            with self.assertNumQueries(13) as context:  # the session comes from the cache
                self.client.post(reverse("job_cancel", args=[job.pk]),
                                 headers={"HX-Request": "true"})
            GenerationJob.objects.filter(status=JobStatus.QUEUED).delete()
            return len(context.captured_queries), self.publish.call_count

        self.assertEqual(cost_for(2), cost_for(60))
