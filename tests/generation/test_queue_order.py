"""Which queued job runs next: priority first, then users take turns."""

from django.utils import timezone

from generation.models import GenerationJob, JobPriority, JobStatus
from generation.queue import service_order
from tests.base import StudioTestCase, make_job


class ServiceOrderTestCase(StudioTestCase):
    def jobs(self, user, count, **fields):
        return [make_job(self.project, user, self.model, **fields).pk for _ in range(count)]

    def test_one_users_many_jobs_do_not_hold_up_the_others(self):
        flood = self.jobs(self.editor, 5)
        [admins] = self.jobs(self.admin, 1)
        [owners] = self.jobs(self.owner, 1)

        order = service_order()

        self.assertEqual(order[:3], [flood[0], admins, owners])
        self.assertEqual(order[3:], flood[1:])

    def test_users_with_jobs_running_wait_for_those_without(self):
        make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING,
                 started_at=timezone.now())
        editors = self.jobs(self.editor, 2)
        [admins] = self.jobs(self.admin, 1)

        self.assertEqual(service_order(), [admins, *editors])

    def test_the_user_served_longest_ago_goes_first(self):
        earlier, later = timezone.now() - timezone.timedelta(hours=1), timezone.now()
        make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED,
                 started_at=later)
        make_job(self.project, self.admin, self.model, status=JobStatus.FINISHED,
                 started_at=earlier)
        [editors] = self.jobs(self.editor, 1)
        [admins] = self.jobs(self.admin, 1)

        self.assertEqual(service_order(), [admins, editors])

    def test_higher_priority_runs_first(self):
        normal = self.jobs(self.editor, 2)
        [urgent] = self.jobs(self.admin, 1, priority=JobPriority.URGENT)
        [high] = self.jobs(self.editor, 1, priority=JobPriority.HIGH)

        self.assertEqual(service_order(), [urgent, high, *normal])

    def test_only_queued_jobs_are_in_line_and_positions_follow_the_order(self):
        make_job(self.project, self.editor, self.model, status=JobStatus.CANCELED)
        flood = self.jobs(self.editor, 3)
        [admins] = self.jobs(self.admin, 1)

        with self.assertNumQueries(2):
            positions = GenerationJob.objects.positions()

        self.assertEqual(positions, {flood[0]: 1, admins: 2, flood[1]: 3, flood[2]: 4})
        self.assertEqual(GenerationJob.objects.get(pk=flood[2]).queue_position(), 4)

    def test_empty_queue_costs_one_query(self):
        with self.assertNumQueries(1):
            self.assertEqual(service_order(), [])
