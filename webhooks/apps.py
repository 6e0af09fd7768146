from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from core.crypto import register_encrypted_field
        from core.metrics import register_gauges
        from events.services import register_listener

        from .metrics import webhook_gauges
        from .services.wakeup import webhooks_wake

        register_listener("webhooks", webhooks_wake)
        register_gauges("webhooks", webhook_gauges)
        register_encrypted_field("webhooks.EndpointSecret", "encrypted")
