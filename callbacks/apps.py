from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Callbacks"

    def ready(self) -> None:
        from core.ops import register_invariant_check, register_metrics

        from .invariants import callbacks_left_behind
        from .metrics import callback_metrics

        register_invariant_check("callbacks", callbacks_left_behind)
        register_metrics("callbacks", callback_metrics)
