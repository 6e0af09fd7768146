"""A local simulator of Safaricom's Daraja (M-Pesa) API: OAuth, STK Push, STK Query, callbacks.

It behaves like the real platform as captured in public payloads (field names, types, codes,
messages, quirks such as ``1.00`` amounts, string vs number ResultCodes, duplicate and empty
callbacks) so the Django project can be developed and tested without the sandbox. Run it with
``python -m simulator``; in tests use :func:`simulator.server.start_in_thread`. See
``docs/simulator.md``. Standard library plus httpx only: no Django in here.
"""

from .config import SimulatorConfig
from .server import SimulatorServer, start_in_thread
from .statement import export_csv

__all__ = ["SimulatorConfig", "SimulatorServer", "export_csv", "start_in_thread"]
