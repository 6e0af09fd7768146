from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Callbacks"

    def ready(self) -> None:
        from core.metrics import register_gauges
        from core.ops import register_invariant_check

        from .invariants import callbacks_left_behind
        from .metrics import callback_gauges

        register_invariant_check("callbacks", callbacks_left_behind)
        register_gauges("callbacks", callback_gauges)
