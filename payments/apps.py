from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from core.crypto import register_encrypted_field
        from core.metrics import register_gauges
        from core.ops import register_invariant_check

        from .invariants import payment_violations
        from .metrics import payment_gauges

        register_invariant_check("payments", payment_violations)
        register_gauges("payments", payment_gauges)
        for field in ("consumer_key_encrypted", "consumer_secret_encrypted", "passkey_encrypted"):
            register_encrypted_field("payments.MpesaAccount", field)
