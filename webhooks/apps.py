from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from core.crypto import register_encrypted_field
        from events.services import register_listener

        from .services.wakeup import webhooks_wake

        register_listener("webhooks", webhooks_wake)
        register_encrypted_field("webhooks.EndpointSecret", "encrypted")
