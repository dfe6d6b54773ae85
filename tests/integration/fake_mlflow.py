"""A fake MLflow tracking server on 127.0.0.1: the REST calls ganzoo's tracker makes, held in memory,
with run artifacts in a local folder (the runs' artifact_uri), and a switch that makes it stop
answering (requests are accepted and then never answered nor applied) until it comes back."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

API = "/api/2.0/mlflow/"


class FakeMlflow:
    def __init__(self, artifact_root: Path):
        self.artifact_root = Path(artifact_root)
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.metrics: dict[str, list[tuple[str, int, float]]] = {}  # run_id -> (key, step, value)
        self.unknown: list[str] = []  # endpoints ganzoo called that this fake does not know
        self.lock = threading.Lock()
        self.answering = threading.Event()
        self.answering.set()
        self.held = 0  # requests that arrived while it was not answering
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ control
    def stop_answering(self) -> None:
        self.answering.clear()

    def come_back(self) -> None:
        self.answering.set()

    def shutdown(self) -> None:
        self.answering.set()
        self.server.shutdown()
        self.server.server_close()

    def steps(self, run_id: str, key: str) -> list[int]:
        with self.lock:
            return sorted(s for k, s, _ in self.metrics.get(run_id, []) if k == key)

    # ------------------------------------------------------------------ requests
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if not self.answering.is_set():
            with self.lock:
                self.held += 1
            self.answering.wait(120)
            h.close_connection = True  # the request is never answered nor applied
            return
        parsed = urllib.parse.urlparse(h.path)
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = json.loads(h.rfile.read(length) or b"{}")
        else:
            body = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        if parsed.path == "/health":
            return self._reply(h, 200, "OK")
        name = parsed.path[len(API):] if parsed.path.startswith(API) else None
        handler = getattr(self, "_" + name.replace("-", "_").replace("/", "__"), None) if name else None
        if handler is None:
            self.unknown.append(f"{method} {parsed.path}")
            return self._reply(h, 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": parsed.path})
        with self.lock:
            status, reply = handler(body)
        self._reply(h, status, reply)

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, reply) -> None:
        data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # ------------------------------------------------------------------ endpoints
    def _experiments__get_by_name(self, body):
        for exp in self.experiments.values():
            if exp["name"] == body.get("experiment_name"):
                return 200, {"experiment": exp}
        return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}

    def _experiments__create(self, body):
        exp_id = str(len(self.experiments) + 1)
        location = (self.artifact_root / exp_id).as_uri()
        self.experiments[exp_id] = {"experiment_id": exp_id, "name": body["name"], "artifact_location": location,
                                    "lifecycle_stage": "active", "tags": list(body.get("tags", []))}
        return 200, {"experiment_id": exp_id}

    def _experiments__set_experiment_tag(self, body):
        tags = self.experiments[body["experiment_id"]].setdefault("tags", [])
        tags[:] = [t for t in tags if t["key"] != body["key"]] + [{"key": body["key"], "value": body["value"]}]
        return 200, {}

    def _runs__create(self, body):
        run_id = f"run{len(self.runs) + 1}"
        exp = self.experiments[body["experiment_id"]]
        info = {"run_id": run_id, "run_uuid": run_id, "experiment_id": exp["experiment_id"],
                "run_name": body.get("run_name", run_id), "user_id": "test", "status": "RUNNING",
                "start_time": body.get("start_time", int(time.time() * 1000)),
                "artifact_uri": f"{exp['artifact_location']}/{run_id}/artifacts", "lifecycle_stage": "active"}
        self.runs[run_id] = {"info": info, "data": {"metrics": [], "params": [], "tags": list(body.get("tags", []))}}
        self.metrics[run_id] = []
        return 200, {"run": self.runs[run_id]}

    def _runs__get(self, body):
        run = self.runs.get(body.get("run_id"))
        if run is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}
        return 200, {"run": run}

    def _runs__log_batch(self, body):
        run = self.runs[body["run_id"]]
        for m in body.get("metrics", []):
            self.metrics[body["run_id"]].append((m["key"], int(m.get("step", 0)), float(m["value"])))
        run["data"]["params"] += body.get("params", [])
        run["data"]["tags"] += body.get("tags", [])
        return 200, {}

    def _runs__log_inputs(self, body):
        self.runs[body["run_id"]].setdefault("inputs", {"dataset_inputs": []})["dataset_inputs"] += (
            body.get("datasets", []))
        return 200, {}

    def _runs__set_tag(self, body):
        self.runs[body["run_id"]]["data"]["tags"].append({"key": body["key"], "value": body["value"]})
        return 200, {}

    def _runs__update(self, body):
        info = self.runs[body["run_id"]]["info"]
        info["status"] = body.get("status", info["status"])
        if "end_time" in body:
            info["end_time"] = body["end_time"]
        return 200, {"run_info": info}
