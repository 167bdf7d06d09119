"""A LoRA page's publishing panel: `{% lora_publishing lora %}`."""

from django import template

from studio.moderation.public_loras.services import may_publish, pending_request, publish_refusal

register = template.Library()


@register.inclusion_tag("generation/includes/lora_publishing.html", takes_context=True)
def lora_publishing(context, lora):
    user = context["request"].user
    return {
        "lora": lora,
        "may_publish": may_publish(user, lora),
        "pending": pending_request(lora),
        "refusal": publish_refusal(lora),
        "csrf_token": context.get("csrf_token"),
    }
