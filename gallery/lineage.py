"""An image's lineage, as a small graph for its detail page: the images it was made from
(its job's source, ControlNet image, image prompt, or the image it remixes), theirs, up to
ANCESTOR_LEVELS; and the images made from it, and from those (DESCENDANT_LEVELS).

Only what the viewer may see is shown: an image they may not see is a "hidden" box (it
says there is one, nothing about it) and the walk stops there; descendants they may not
see are only counted. A deleted source is a "deleted" box. Queries: one per ancestor level
that has parents, two per descendant level and one for the viewer's teams, however many
images there are.
"""

from dataclasses import dataclass, field

from django.db.models import Count, Q

from gallery.models import Image, ModerationStatus, Visibility
from generation.models import JobMode
from studio.accounts.models import Team

ANCESTOR_LEVELS = 5
DESCENDANT_LEVELS = 2
NODES_PER_LEVEL = 6  # per column of the graph; the rest is counted

# The job fields naming a gallery image a job's images were made from, and the edge label.
PARENT_FIELDS = (
    ("source_image", "source"),
    ("remix_of", "remix"),
    ("control_image", "control"),
    ("ip_adapter_image", "image prompt"),
)

# Drawing: square nodes in columns, oldest on the left; edges carry their label between.
NODE = 88
GAP_X = 104
GAP_Y = 18
NOTE_SPACE = 26


@dataclass(eq=False)
class Node:
    state: str  # "current", "image" (one the viewer may see), "hidden", "deleted", "upload"
    image: Image | None = None  # only for "current" and "image"
    kind: str = ""  # the label of its edge
    link: "Node | None" = None  # the node its edge goes to (ancestors) or comes from
    x: int = 0
    y: int = 0

    def title(self):
        return {
            "hidden": "An image not shared with you.",
            "deleted": "A deleted image.",
            "upload": "An uploaded image.",
        }.get(self.state) or (self.image.alt_text() if self.image else "")


@dataclass
class Column:
    nodes: list
    more: int = 0  # shown to the viewer, but past the column's cap
    hidden: int = 0  # not shown to the viewer: counted only
    x: int = 0


@dataclass
class Edge:
    path: str
    kind: str
    label_x: float
    label_y: float


@dataclass
class Lineage:
    columns: list = field(default_factory=list)
    edges: list = field(default_factory=list)
    width: int = 0
    height: int = 0
    parents: list = field(default_factory=list)  # the first ancestor column
    children_count: int = 0  # images made from this one that the viewer may see
    children_hidden: int = 0
    remix_count: int = 0  # images made from it as a source or remix, seen or not
    descendant_columns: list = field(default_factory=list)
    note_y: int = 0  # where the columns' "more" and "hidden" notes go

    def children(self):
        """The images made from this one that the graph shows (the newest first)."""
        first = self.descendant_columns[:1]
        return [node.image for column in first for node in column.nodes]


def image_lineage(*, user, image):
    teams = (
        list(Team.objects.filter(memberships__user=user).values_list("pk", flat=True))
        if user.is_authenticated
        else []
    )
    root = Node("current", image=image)
    ancestors = ancestor_columns(root, teams)
    descendants, counts = descendant_columns(root, teams)
    lineage = Lineage(
        parents=ancestors[0].nodes if ancestors else [],
        children_count=counts["visible"],
        children_hidden=counts["total"] - counts["visible"],
        remix_count=counts["remixes"],
        descendant_columns=descendants,
    )
    lineage.columns = [*reversed(ancestors), Column([root]), *descendants]
    lay_out(lineage, root_column=len(ancestors))
    return lineage


def visible(image, teams):
    """Image.may_view for an image whose project is loaded, without a query per image."""
    return image.deleted_at is None and (image.is_public() or image.project.team_id in teams)


def ancestor_columns(root, teams):
    columns = []
    frontier = [root]
    for _ in range(ANCESTOR_LEVELS):
        wanted = []  # (node, image pk to fill it from, or None)
        for child in frontier:
            job = child.image.job
            if job is None:
                continue
            for name, kind in PARENT_FIELDS:
                if pk := getattr(job, f"{name}_id"):
                    wanted.append((Node("image", kind=kind, link=child), pk))
                elif name == "source_image" and job.mode != JobMode.TXT2IMG:
                    # An upload, or a source purged since (which left the job without one).
                    state = "upload" if job.source_upload else "deleted"
                    wanted.append((Node(state, kind=kind, link=child), None))
        if not wanted:
            break
        shown = wanted[:NODES_PER_LEVEL]
        pks = {pk for _, pk in shown if pk}
        found = (
            Image.all_objects.select_related("project", "job").in_bulk(pks) if pks else {}
        )
        for node, pk in shown:
            if pk is None:
                continue
            parent = found.get(pk)
            if parent is None or parent.deleted_at is not None:
                node.state = "deleted"
            elif visible(parent, teams):
                node.image = parent
            else:
                node.state = "hidden"
        nodes = [node for node, _ in shown]
        columns.append(Column(nodes, more=len(wanted) - len(shown)))
        frontier = [node for node in nodes if node.state == "image"]
        if not frontier:
            break
    return columns


def made_from(pks):
    """Images whose job names one of `pks` as its source, remix, control or image prompt."""
    condition = Q()
    for name, _ in PARENT_FIELDS:
        condition |= Q(**{f"job__{name}__in": pks})
    return condition


def descendant_columns(root, teams):
    seen = Q(visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED) | Q(
        project__team__in=teams
    )
    pk = root.image.pk
    columns, counts = [], {"total": 0, "visible": 0, "remixes": 0}
    frontier = [root]
    for depth in range(DESCENDANT_LEVELS):
        parents = {node.image.pk: node for node in frontier}
        made = Image.objects.filter(made_from(list(parents)))
        level = made.aggregate(
            total=Count("pk"),
            visible=Count("pk", filter=seen),
            remixes=Count("pk", filter=Q(job__source_image=pk) | Q(job__remix_of=pk)),
        )
        if depth == 0:
            counts = level
        if not level["total"]:
            break
        images = made.filter(seen).select_related("project", "job")
        nodes = []
        for image in images.order_by("-created_at", "-pk")[:NODES_PER_LEVEL]:
            link, kind = next(
                (parents[getattr(image.job, f"{name}_id")], kind)
                for name, kind in PARENT_FIELDS
                if getattr(image.job, f"{name}_id") in parents
            )
            nodes.append(Node("image", image=image, kind=kind, link=link))
        # Siblings together, in their parents' order: edges don't cross.
        order = {node: index for index, node in enumerate(frontier)}
        nodes.sort(key=lambda node: order[node.link])
        columns.append(
            Column(
                nodes,
                more=level["visible"] - len(nodes),
                hidden=level["total"] - level["visible"],
            )
        )
        frontier = nodes
        if not frontier:
            break
    return columns, counts


def lay_out(lineage, *, root_column):
    """Each column's nodes centred on the tallest column; an edge from each node's
    parent (left) to it (right), its label half-way. Columns left of `root_column` hold
    ancestors (their link is on their right), the others descendants."""
    tallest = max(len(column.nodes) for column in lineage.columns)
    nodes_height = tallest * (NODE + GAP_Y) - GAP_Y
    has_notes = any(column.more or column.hidden for column in lineage.columns)
    for index, column in enumerate(lineage.columns):
        column.x = index * (NODE + GAP_X)
        top = (nodes_height - (len(column.nodes) * (NODE + GAP_Y) - GAP_Y)) // 2
        for row, node in enumerate(column.nodes):
            node.x, node.y = column.x, top + row * (NODE + GAP_Y)
    for index, column in enumerate(lineage.columns):
        for node in column.nodes:
            if node.link is None:
                continue
            left, right = (node, node.link) if index < root_column else (node.link, node)
            x1, y1 = left.x + NODE, left.y + NODE / 2
            x2, y2 = right.x, right.y + NODE / 2
            middle = (x1 + x2) / 2
            lineage.edges.append(
                Edge(
                    path=f"M{x1} {y1} C{middle} {y1} {middle} {y2} {x2 - 4} {y2}",
                    kind=node.kind,
                    label_x=middle,
                    label_y=(y1 + y2) / 2 - 6,
                )
            )
    lineage.width = len(lineage.columns) * (NODE + GAP_X) - GAP_X
    lineage.height = nodes_height + (NOTE_SPACE if has_notes else 0)
    lineage.note_y = nodes_height + 18
