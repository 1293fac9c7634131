"""Headless Chromium (Debian's ``chromium``) driven over its DevTools protocol: load a page, make every image load
(lazy ones too), and report each image's outcome and every script error or console error the page logged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import websocket

#: Chromium's flags for a machine with no display and a closed network (nothing but loopback): no sandbox as
#: root, no GPU, none of its own connections to Google's hosts
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900", "--remote-debugging-port=0"]
#: every image of the page made to load now (``loading=lazy`` ones included), then each one's outcome
IMAGES = """(async () => {
  const images = Array.from(document.images);
  for (const image of images) { image.loading = "eager"; }
  await Promise.all(images.map(image => image.complete ? null : new Promise(done => {
    image.addEventListener("load", done); image.addEventListener("error", done); })));
  return images.map(image => ({src: image.currentSrc || image.src, loaded: image.complete && image.naturalWidth > 0}));
})()"""


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Loaded:
    """What a page did in the browser."""

    images: list[dict[str, Any]]  # {src, loaded}
    errors: list[str] = field(default_factory=list)  # script exceptions, console errors, failed loads


class Chromium:
    """One headless Chromium with a fresh profile in ``profile``; ``load(url)`` opens pages in its tab."""

    def __init__(self, profile: Path, timeout: float = 60) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen([executable(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.calls = 0
        self.events: list[dict[str, Any]] = []
        try:
            self.socket = websocket.create_connection(self.tab(profile), timeout=timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.stop()
            raise

    def tab(self, profile: Path) -> str:
        """The DevTools websocket of the browser's first tab."""
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        tabs = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout).json()
        return next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, keeping the events that arrive meanwhile."""
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(json.loads(self.socket.recv()))

    def load(self, url: str) -> Loaded:
        """Open ``url``, wait for its load event and for every image, and collect what went wrong."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        result = self.call("Runtime.evaluate", expression=IMAGES, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"the image check failed on {url}: {result['exceptionDetails']}")
        return Loaded(result["result"]["value"], errors(self.events))

    def close(self) -> None:
        self.socket.close()
        self.stop()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, 9)
            self.process.wait()


def errors(events: list[dict[str, Any]]) -> list[str]:
    """Script exceptions, console.error calls and the browser's own error entries (a resource that failed to load)."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
    return found
