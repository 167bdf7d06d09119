from generation.styles.forms import StyleForm
from generation.styles.models import Style
from generation.team_libraries import TeamLibrary, library_urls

STYLES = TeamLibrary(
    model=Style, form=StyleForm, permission="manage_styles", singular="style", plural="styles",
    label=lambda style: f"The style {style.name}",
)

urlpatterns = library_urls(STYLES)
