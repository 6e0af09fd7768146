"""``manage.py webhook_endpoint``: add, list, rotate, test, enable or disable a merchant's
webhook endpoints (the API's operations, for an operator)."""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.models import ApiClient
from webhooks.models import Endpoint
from webhooks.services import (
    EVENT_TYPES,
    InvalidEndpoint,
    endpoint_create,
    endpoint_secret_rotate,
    endpoint_send_test,
    endpoint_update,
)


class Command(BaseCommand):
    help = "Manage webhook endpoints: add, list, rotate-secret, send-test, enable, disable."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Register an endpoint; prints its signing secret once.")
        add.add_argument("client", help="The API client's key prefix.")
        add.add_argument("url")
        add.add_argument("--description", default="")
        add.add_argument(
            "--event", action="append", default=[], choices=EVENT_TYPES, help="Repeatable."
        )
        listing = sub.add_parser("list", help="Endpoints, optionally one client's.")
        listing.add_argument("client", nargs="?")
        for name in ("rotate-secret", "send-test", "enable", "disable"):
            one = sub.add_parser(name)
            one.add_argument("endpoint", help="The endpoint's id.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "add":
            client = self._client(options["client"])
            try:
                endpoint, secret = endpoint_create(
                    client=client,
                    url=options["url"],
                    description=options["description"],
                    event_types=options["event"],
                )
            except InvalidEndpoint as exc:
                raise CommandError(f"{exc.field}: {exc}") from None
            self.stdout.write(f"Endpoint {endpoint.id} for {client}")
            self.stdout.write("Signing secret (shown once, keep it to verify deliveries):")
            self.stdout.write(secret)
        elif action == "list":
            endpoints = Endpoint.objects.select_related("client").order_by("created_at")
            if options["client"]:
                endpoints = endpoints.filter(client=self._client(options["client"]))
            for endpoint in endpoints:
                state = "enabled" if endpoint.enabled else f"DISABLED ({endpoint.disabled_reason})"
                types = ",".join(endpoint.event_types) or "all events"
                self.stdout.write(f"{endpoint.id}  {endpoint.url}  {state}  {types}")
        else:
            endpoint = self._endpoint(options["endpoint"])
            if action == "rotate-secret":
                self.stdout.write("New signing secret (the old one keeps signing for the overlap):")
                self.stdout.write(endpoint_secret_rotate(endpoint))
            elif action == "send-test":
                delivery = endpoint_send_test(endpoint)
                self.stdout.write(
                    f"Test event {delivery.event_id} queued (delivery {delivery.pk})."
                )
            else:
                endpoint_update(endpoint, enabled=action == "enable")
                self.stdout.write(f"Endpoint {endpoint.id} {action}d.")

    def _client(self, prefix: str) -> ApiClient:
        client = ApiClient.objects.filter(key_prefix=prefix).first()
        if client is None:
            raise CommandError(f"No API key with prefix {prefix!r} (see the admin's API clients).")
        return client.owner

    def _endpoint(self, endpoint_id: str) -> Endpoint:
        try:
            return Endpoint.objects.get(pk=uuid.UUID(endpoint_id))
        except (Endpoint.DoesNotExist, ValueError):
            raise CommandError(f"No endpoint with id {endpoint_id!r}.") from None
