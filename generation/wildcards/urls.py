from generation.team_libraries import TeamLibrary, library_urls
from generation.wildcards.forms import WildcardForm
from generation.wildcards.models import Wildcard

WILDCARDS = TeamLibrary(
    model=Wildcard, form=WildcardForm, permission="manage_wildcards", singular="wildcard",
    plural="wildcards", label=lambda wildcard: f"__{wildcard.name}__",
)

urlpatterns = library_urls(WILDCARDS)
