"""The real `customer-bot web` in a subprocess on a free port, with its log in a file the test can read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 30  # seconds; it listens within one or two, the margin is for a loaded CI machine


@dataclass
class WebProcess:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_env(env: dict[str, str]) -> dict[str, str]:
    """This environment without any Slack, Stripe or database settings of the developer's, plus `env`."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL", "WEB_"))
    }
    return {**base, **env}


def start_web(env: dict[str, str], cwd: Path) -> WebProcess:
    """Start `customer-bot web` and return once it accepts connections."""
    port = free_port()
    log_path = cwd / f"web-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "web"],
            env=web_env({**env, "PORT": str(port)}),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    web = WebProcess(process, port, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"customer-bot web exited:\n{web.log()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return web
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet; the connect itself is the synchronisation
    web.stop()
    raise AssertionError(f"customer-bot web did not listen within {START_TIMEOUT} s:\n{web.log()}")
