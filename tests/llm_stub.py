"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for client unit tests (the real server is tested in
tests/test_llm_server.py).  Each request pops the next action; with none left it repeats the last one."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


class StubServer:
    """actions: ("answer", text) | ("status", code) | ("sleep", seconds, text) | ("garbage",) | ("drop",)
    or a callable(request_body) -> text."""

    def __init__(self, actions=()) -> None:
        self.actions = list(actions)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                    action = stub.actions.pop(0) if len(stub.actions) > 1 else stub.actions[0]
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                finished = False

                def finish() -> None:  # before any byte of the answer goes out: the client may send its next
                    nonlocal finished  # request as soon as it has the answer, before this handler returns
                    if not finished:
                        finished = True
                        with stub._lock:
                            stub.in_flight -= 1

                try:
                    if callable(action):
                        action = ("answer", action(body))
                    kind = action[0]
                    if kind == "sleep":
                        time.sleep(action[1])
                        action = ("answer", action[2])
                        kind = "answer"
                    finish()
                    if kind == "status":
                        self.send_response(action[1])
                        self.end_headers()
                        return
                    if kind == "drop":
                        self.close_connection = True
                        self.connection.close()
                        return
                    raw = b"<html>not json" if kind == "garbage" else json.dumps(completion(action[1])).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                finally:
                    finish()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
