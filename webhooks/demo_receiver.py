"""`python -m webhooks.demo_receiver --port 8002`: the small webhook receiver `make run` starts.

It does what a merchant's receiver should: reads the raw body, verifies the Standard Webhooks
signature with the official `standardwebhooks` package and the endpoint's secret (the file
`bootstrap_demo_webhooks` writes, read again on every request so a rotation is picked up),
answers 204 to a good delivery and 400 to a bad one, and keeps a line per delivery (its id,
type, object, whether it verified) in `<VAR_DIR>/demo-webhooks.jsonl`, which the demo page
shows. Standalone: it needs neither Django nor a database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_FILE = "demo-webhook-secret"
LOG_FILE = "demo-webhooks.jsonl"
MAX_BODY = 1024 * 1024


def var_dir() -> Path:
    return Path(os.environ.get("VAR_DIR") or Path(__file__).resolve().parent.parent / "var")


def verify(body: bytes, headers: dict[str, str], secret_path: Path) -> tuple[bool, str, Any]:
    try:
        secret = secret_path.read_text().strip()
    except OSError:
        return False, "no secret yet (bootstrap_demo_webhooks writes it)", None
    try:
        return True, "", Webhook(secret).verify(body, headers)
    except WebhookVerificationError as exc:
        return False, str(exc), None


def make_handler(secret_path: Path, log_path: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            ok, problem, event = verify(body, headers, secret_path)
            record = {
                "webhook_id": headers.get("webhook-id", ""),
                "received_at": time.time(),
                "verified": ok,
                "problem": problem,
                "type": event.get("type") if ok else None,
                "object_id": (event.get("data") or {}).get("id") if ok else None,
            }
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            print(
                f"webhook {record['webhook_id']} {record['type'] or '-'} "
                f"{'verified' if ok else 'REFUSED: ' + problem}",
                flush=True,
            )
            self.send_response(204 if ok else 400)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The demo webhook receiver.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args(argv)
    folder = var_dir()
    folder.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(folder / SECRET_FILE, folder / LOG_FILE)
    )
    server.daemon_threads = True
    print(f"demo webhook receiver on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
