"""A small web shop API for the tutorial (docs/tutorial.md): orders as JSON pages, on this machine only.

    .venv/bin/python examples/shop_api.py [--port 8099] [--orders 250]

GET /v1/orders?page=N&per_page=M answers {"data": [...]} with the orders of that page (an empty list after the
last one). Standard library only; it serves 127.0.0.1 and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CUSTOMERS = ["Anna de Vries", "Bram Jansen", "Chloé Martin", "Daan Bakker", "Emma Visser"]


def orders(count: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"SO-{1000 + number}",
            "status": "new",
            "customer": {"name": CUSTOMERS[number % len(CUSTOMERS)]},
            "total": round(10 + number * 1.25, 2),
        }
        for number in range(1, count + 1)
    ]


def handler_for(all_orders: list[dict[str, object]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/v1/orders":
                self._answer(404, {"error": "not found"})
                return
            query = parse_qs(url.query)
            try:
                page = max(1, int(query.get("page", ["1"])[0]))
                per_page = min(100, max(1, int(query.get("per_page", ["100"])[0])))
            except ValueError:
                self._answer(400, {"error": "page and per_page are whole numbers"})
                return
            start = (page - 1) * per_page
            self._answer(200, {"data": all_orders[start : start + per_page]})

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the tutorial's shell shows Airflow's output, not each request

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="The tutorial's web shop API, on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--orders", type=int, default=250)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(orders(args.orders)))
    print(f"shop API: http://127.0.0.1:{args.port}/v1/orders ({args.orders} orders)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
