from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from core.ops import register_invariant_check, register_metrics

        from .invariants import payment_violations
        from .metrics import payment_metrics

        register_invariant_check("payments", payment_violations)
        register_metrics("payments", payment_metrics)
