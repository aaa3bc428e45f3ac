"""A tiny Chrome DevTools Protocol client for tests: headless Chromium on 127.0.0.1 only.

``Browser`` starts Chromium with ``--remote-debugging-port=0`` bound to the loopback address, reads the
port Chromium chose from ``DevToolsActivePort`` in its profile folder, and talks to the page target over
one websocket (the ``websocket-client`` package, a test-only dependency).  It sends real input events
(``Input.dispatchKeyEvent``, ``Input.dispatchMouseEvent``), evaluates JavaScript and records every
console message, uncaught exception and log entry of the page.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"
KEYCODES = {"ArrowDown": 40, "ArrowUp": 38, "ArrowLeft": 37, "ArrowRight": 39, "Enter": 13, "Escape": 27,
            "Tab": 9, " ": 32}
NOISE = ("Input.", "Page.frame", "Page.lifecycle", "Page.domContent", "Page.navigatedWithinDocument")


class Browser:
    def __init__(self, chromium: str, profile: Path, timeout: float = 60.0):
        import websocket     # test-only dependency (pyproject's "test" extra)

        self.profile, self.timeout, self.events, self._id = Path(profile), timeout, [], 0
        self.profile.mkdir(parents=True, exist_ok=True)
        self._log = open(self.profile / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", f"--remote-debugging-address={LOOPBACK}", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1200,1400", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            port = self._port()
            url = self._page_url(port)
            assert url.startswith(f"ws://{LOOPBACK}:"), url
            self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setFocusEmulationEnabled", enabled=True)
        except BaseException:
            self.close()
            raise

    def _port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            text = marker.read_text() if marker.is_file() else ""
            if text.strip():
                return int(text.split()[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def _page_url(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/json/list", timeout=10) as reply:
                pages = [t for t in json.load(reply) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise TimeoutError("chromium opened no page")

    # --- the protocol ---------------------------------------------------------------------------------------

    def _receive(self) -> dict:
        message = json.loads(self.ws.recv())
        if "method" in message and not message["method"].startswith(NOISE):
            self.events.append(message)
        return message

    def send(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event["method"] == method:
                    self.events.remove(event)
                    return event
            self._receive()
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[dict]:
        """Console messages, uncaught exceptions and log entries (failed loads, CSP) seen so far."""
        return [e for e in self.events
                if e["method"] in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")]

    # --- what a person does -----------------------------------------------------------------------------------

    def open(self, url: str, reload: bool = False) -> None:
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        if reload:
            self.send("Page.reload", ignoreCache=True)
        else:
            self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def key(self, key: str) -> None:
        """One key press (keyDown with its text, then keyUp), as typed on a keyboard."""
        if len(key) == 1 and key != " ":
            code = f"Key{key.upper()}" if key.isalpha() else (f"Digit{key}" if key.isdigit() else "")
            vk = ord(key.upper()) if key.isalnum() else 0
        else:
            code, vk = ("Space" if key == " " else key), KEYCODES[key]
        text = {"Enter": "\r", " ": " "}.get(key, key if len(key) == 1 else "")
        down = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        if text:
            down.update(text=text, unmodifiedText=text)
        self.send("Input.dispatchKeyEvent", **down)
        self.send("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=vk,
                  nativeVirtualKeyCode=vk)

    def type(self, text: str) -> None:
        for char in text:
            self.key(char)

    def click(self, selector: str) -> None:
        """A left click at the centre of the element (scrolled into view first)."""
        box = self.evaluate(f"(function () {{ var e = document.querySelector({json.dumps(selector)}); "
                            "e.scrollIntoView({block: 'center'}); var r = e.getBoundingClientRect(); "
                            "return [r.left + r.width / 2, r.top + r.height / 2]; }())")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                try:
                    self.send("Browser.close")
                except Exception:   # noqa: BLE001 -- the connection closes as the browser exits
                    pass
                self.ws.close()
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        finally:
            self._log.close()
