"""Command line: ``python -m simulator`` runs the server; sub-commands drive a running one.

Examples: ``python -m simulator --port 8001 --seed 42 --chaos-rate 0.2`` (serve);
``python -m simulator script --phone 254711000123 --result-code 1032 --count 2``;
``python -m simulator reset`` / ``expire-tokens`` / ``chaos --rate 0.3 --seed 7`` /
``transactions`` / ``clear-scripts``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from .config import SimulatorConfig
from .server import serve

DEFAULT_URL = "http://127.0.0.1:8001"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Local Daraja (M-Pesa) simulator. Without a sub-command: run the server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    parser.add_argument("--seed", type=int, help="seed for ids, body forms and chaos")
    parser.add_argument("--chaos-rate", type=float, help="share of pushes perturbed (0-1)")

    commands = parser.add_subparsers(dest="command", metavar="command")
    url_help = f"simulator base URL (default $SIMULATOR_URL or {DEFAULT_URL})"

    script = commands.add_parser("script", help="script the next push(es) to a phone")
    script.add_argument("--url", help=url_help)
    script.add_argument("--phone", required=True)
    script.add_argument("--result-code", default="0")
    script.add_argument("--result-desc")
    script.add_argument("--delay", type=float, help="seconds until the callback")
    script.add_argument("--customer-delay", type=float, help="seconds until the answer")
    script.add_argument("--deliveries", type=int, help="number of callback POSTs")
    script.add_argument("--no-deliver", action="store_true", help="never send the callback")
    script.add_argument("--late", action="store_true", help="callback after query is final")
    script.add_argument(
        "--body", action="append", choices=("normal", "empty", "malformed"), help="repeatable"
    )
    script.add_argument("--concurrent", action="store_true", help="POST duplicates at once")
    script.add_argument("--count", type=int, default=1, help="how many pushes this applies to")
    script.add_argument("--amount-form", choices=("int", "decimal"))
    script.add_argument("--balance-form", choices=("no_value", "absent", "zero"))
    script.add_argument("--pending", choices=("legacy", "modern"))

    for name, text in (
        ("reset", "forget transactions and scripts"),
        ("expire-tokens", "expire every issued access token"),
        ("transactions", "print the transaction records"),
        ("clear-scripts", "drop queued scripts"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--url", help=url_help)

    chaos = commands.add_parser("chaos", help="set the chaos rate and seed")
    chaos.add_argument("--url", help=url_help)
    chaos.add_argument("--rate", type=float, required=True)
    chaos.add_argument("--seed", type=int, dest="chaos_seed")
    return parser


def script_payload(args: argparse.Namespace) -> dict[str, Any]:
    payload: dict[str, Any] = {"phone": args.phone, "result_code": args.result_code}
    optional = {
        "result_desc": args.result_desc,
        "delay": args.delay,
        "customer_delay": args.customer_delay,
        "deliveries": args.deliveries,
        "amount_form": args.amount_form,
        "balance_form": args.balance_form,
        "pending": args.pending,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    if args.no_deliver:
        payload["deliver"] = False
    if args.late:
        payload["late"] = True
    if args.concurrent:
        payload["concurrent"] = True
    if args.body:
        payload["body"] = args.body[0] if len(args.body) == 1 else args.body
    payload["count"] = args.count
    return payload


def _call(url: str | None, method: str, path: str, payload: Any = None) -> int:
    base = (url or os.environ.get("SIMULATOR_URL") or DEFAULT_URL).rstrip("/")
    try:
        with httpx.Client(timeout=10, trust_env=False) as client:
            if payload is None and method == "POST":
                payload = {}  # the control API takes JSON POSTs only
            response = client.request(method, base + path, json=payload)
    except httpx.HTTPError as exc:
        print(f"cannot reach the simulator at {base}: {exc}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)
    return 0 if response.is_success else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        try:
            config = SimulatorConfig.from_env(seed=args.seed, chaos_rate=args.chaos_rate)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        serve(config, host=args.host, port=args.port)
        return 0
    if args.command == "script":
        return _call(args.url, "POST", "/simulator/scripts", script_payload(args))
    if args.command == "chaos":
        payload: dict[str, Any] = {"rate": args.rate}
        if args.chaos_seed is not None:
            payload["seed"] = args.chaos_seed
        return _call(args.url, "POST", "/simulator/chaos", payload)
    simple = {
        "reset": ("POST", "/simulator/reset"),
        "expire-tokens": ("POST", "/simulator/tokens/expire"),
        "transactions": ("GET", "/simulator/transactions"),
        "clear-scripts": ("DELETE", "/simulator/scripts"),
    }
    method, path = simple[args.command]
    return _call(args.url, method, path)


if __name__ == "__main__":
    raise SystemExit(main())
