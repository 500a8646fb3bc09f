"""Open the built book in headless Chromium, offline, and check what a reader sees.

    python scripts/browser_check.py                       # _build/html: the intro and every chapter
    python scripts/browser_check.py _build/html --pages intro generated/03_adversarial_sensitivity

The site is served over HTTP on 127.0.0.1; Chromium resolves no other host. For each page it checks
that every formula is typeset (no raw TeX delimiters in the visible text), every <img> loads, no
JavaScript error occurs, no request leaves the machine, no stderr or progress output is shown, and
that a chapter's first screen shows its title and narrative, not code. It saves a screenshot of the
first screen (<name>.png) and of the whole page (<name>-full.jpg) under --screenshots
(default _build/screenshots) and exits 1 if any page fails.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so nothing but
the standard library and Debian's ``chromium`` package is needed.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"data", "blob", "about"}
WIDTH, HEIGHT = 1280, 800  # the first screen of a laptop
PARAMETERS_TITLE = "Run this chapter with other parameters"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--hide-scrollbars", "--no-default-browser-check", "--disable-features=Translate,MediaRouter",
    # no host but this machine resolves: a remote request fails at once (and is reported) instead
    # of waiting for a network that an offline reader does not have
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    f"--window-size={WIDTH},{HEIGHT}",
]


def find_chromium() -> str | None:
    """The Chromium executable: $PROBELIB_CHROMIUM, else Debian's /usr/bin/chromium; None if absent."""
    for name in (os.environ.get("PROBELIB_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    return None


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# Runs a program with the descriptors argv[1] and argv[2] as its fds 3 and 4 (what
# --remote-debugging-pipe reads commands from and writes replies to).
_ON_FDS_3_AND_4 = """
import fcntl, os, sys
fds = [int(sys.argv[1]), int(sys.argv[2])]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
for fd in set(fds) - {3, 4}:
    os.close(fd)
for target, fd in zip((3, 4), high):
    os.dup2(fd, target)
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class CDPError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3: commands, fd 4: replies)."""

    def __init__(self, executable: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.log = open(Path(self.profile) / "chromium.log", "w+b")  # noqa: SIM115
        cmd_r, self._cmd_w = os.pipe()
        self._msg_r, msg_w = os.pipe()
        args = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen([sys.executable, "-c", _ON_FDS_3_AND_4, str(cmd_r), str(msg_w), *args],
                                     pass_fds=(cmd_r, msg_w), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        os.close(cmd_r)
        os.close(msg_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.version = self.send("Browser.getVersion")["product"]

    # -- protocol ---------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict | None:
        """The next message, or None once ``deadline`` (time.monotonic) has passed."""
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._msg_r], [], [], left)
            if ready:
                chunk = os.read(self._msg_r, 1 << 20)
                if not chunk:
                    raise CDPError(f"Chromium exited (code {self.proc.poll()}):\n{self.output()}")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._cmd_w, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise CDPError(f"no reply to {method} within {timeout or self.timeout:.0f} s")
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str, since: int = 0, timeout: float | None = None) -> dict:
        """Wait for the event ``method`` of ``session``; events received since ``since`` count."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = since
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            msg = self._read(deadline)
            if msg is None:
                raise CDPError(f"no {method} within {timeout or self.timeout:.0f} s")
            if "method" in msg:
                self.events.append(msg)

    def settle(self, quiet: float = 0.5, timeout: float = 15.0) -> None:
        """Read events until none has arrived for ``quiet`` seconds (late requests, e.g. fonts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._read(min(deadline, time.monotonic() + quiet))
            if msg is None:
                return
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, session: str, expression: str, timeout: float | None = None):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session, timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"evaluation failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._msg_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Waits until MathJax has typeset the page, every image has loaded and the fonts are ready.
_SETTLE_JS = """
(async () => {
  const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), 30000));
  const ready = (async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
    await document.fonts.ready;
    return 'ready';
  })();
  return await Promise.race([ready, timeout]);
})()
"""

# What the page shows; all measures in CSS pixels of the first screen (scrolled to the top).
_INSPECT_JS = r"""
(() => {
  window.scrollTo(0, 0);
  const H = window.innerHeight;
  const main = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const skip = 'pre, code, script, style, noscript, mjx-container, .MathJax, .katex, svg, textarea';
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip) || !n.nodeValue.trim()) continue;
    if (!el.checkVisibility({visibilityProperty: true})) continue;
    texts.push(n.nodeValue);
  }
  const text = texts.join('\n');
  const rawTeX = [];
  const re = /\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\end\{|\$[^$\s][^$\n]*?\\[A-Za-z]+[^$\n]*?\$/g;
  for (const m of text.matchAll(re)) {
    rawTeX.push(text.slice(Math.max(0, m.index - 40), m.index + m[0].length + 40).replace(/\s+/g, ' '));
    if (rawTeX.length >= 10) break;
  }
  const maths = [...document.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container, .katex, math'))
                         .map(m => m.textContent.trim().slice(0, 80));
  const images = [...document.images].map(img => ({
    src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth}));
  const outputs = [...main.querySelectorAll('.cell_output')].map(o => o.innerText);
  const progress = outputs.filter(t => /\d+%\|.*\|/.test(t) || /\bit\/s\]/.test(t)).map(t => t.slice(0, 120));
  const warnings = outputs.filter(t => /\w+Warning: /.test(t)).map(t => t.slice(0, 160));
  const top = el => el.getBoundingClientRect().top;
  const h1 = main.querySelector('h1');
  const paragraph = [...main.querySelectorAll('section p')].find(p => p.checkVisibility() && !p.closest('.admonition, .cell'));
  // what of the notebook's cells shows on the first screen (the parameters cells may, after the narrative)
  const cells = [...main.querySelectorAll('div.cell')].filter(c => c.checkVisibility());
  const firstScreenCells = cells.filter(c => top(c) < H).map(c => ({
    classes: c.className, parameters: c.matches('.tag_parameters, .tag_injected-parameters'), top: Math.round(top(c))}));
  let box = null;
  for (const adm of main.querySelectorAll('.admonition')) {
    const title = adm.querySelector('.admonition-title');
    if (!title || title.textContent.trim() !== '""" + PARAMETERS_TITLE + r"""') continue;
    let next = adm.nextElementSibling;
    while (next && !next.matches('div.cell')) next = next.nextElementSibling;
    const input = next && next.querySelector('.cell_input');
    box = {command: [...adm.querySelectorAll('pre')].map(p => p.textContent.trim()).join('\n'),
           parametersCellFollows: !!(next && next.matches('.tag_parameters')),
           parametersVisible: !!(input && input.checkVisibility() && !input.closest('details'))};
  }
  return {
    title: document.title, url: location.href, height: document.documentElement.scrollHeight,
    rawTeX, formulas: maths.length, typeset: document.querySelectorAll('mjx-container').length, untypeset,
    images, progress, warnings, stderr: main.querySelectorAll('.output.stderr, .stderr').length,
    h1: h1 ? {text: h1.textContent.replace(/[#¶]$/, '').trim(), top: Math.round(top(h1))} : null,
    paragraph: paragraph ? {text: paragraph.textContent.trim().slice(0, 100), top: Math.round(top(paragraph)),
                            bottom: Math.round(paragraph.getBoundingClientRect().bottom)} : null,
    firstScreenCells, box, viewport: H,
  };
})()
"""


def check_page(browser: Chromium, url: str, screenshot: Path | None = None) -> dict:
    """Load ``url`` in a new tab, let it settle, and return what it shows plus every request and error."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    start = len(browser.events)
    try:
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT,
                     "deviceScaleFactor": 1, "mobile": False}, session)
        t, since = time.monotonic(), len(browser.events)
        browser.send("Page.navigate", {"url": url}, session)
        browser.wait_for("Page.loadEventFired", session, since)
        settled = browser.evaluate(session, _SETTLE_JS, timeout=45)
        browser.settle()
        report = browser.evaluate(session, _INSPECT_JS)
        report["settled"] = settled
        report["seconds"] = round(time.monotonic() - t, 2)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
            (screenshot.parent / f"{screenshot.name}.png").write_bytes(base64.b64decode(shot["data"]))
            # the whole page: a window as tall as the page (at most 16000 px)
            height = min(int(report["height"]), 16000)
            browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": height,
                         "deviceScaleFactor": 1, "mobile": False}, session)
            browser.evaluate(session, "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            shot = browser.send("Page.captureScreenshot", {"format": "jpeg", "quality": 80}, session)
            (screenshot.parent / f"{screenshot.name}-full.jpg").write_bytes(base64.b64decode(shot["data"]))
            report["screenshot"] = str(screenshot.parent / f"{screenshot.name}.png")
    finally:
        with contextlib.suppress(CDPError):
            browser.send("Target.closeTarget", {"targetId": target})
    events = [e for e in browser.events[start:] if e.get("sessionId") == session]
    report.update(_network_and_errors(events))
    return report


def _network_and_errors(events: list[dict]) -> dict:
    requests, remote, failed, errors = [], [], [], []
    urls = {}
    for e in events:
        method, p = e["method"], e.get("params", {})
        if method in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            url = p["request"]["url"] if "request" in p else p["url"]
            urls[p["requestId"]] = url
            requests.append(url)
            parts = urlsplit(url)
            if parts.scheme not in LOCAL_SCHEMES and parts.hostname not in LOCAL_HOSTS:
                remote.append(url)
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            if urlsplit(p["response"]["url"]).path != "/favicon.ico":  # asked for by Chromium, not the page
                failed.append(f"{p['response']['status']} {p['response']['url']}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            failed.append(f"{p.get('errorText')} {urls.get(p['requestId'], '?')}")
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description", "")))
                                                             for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error" and p["entry"]["source"] != "network":
            # (a failed load is logged with source "network"; the Network events above report it)
            errors.append(f"log ({p['entry']['source']}): {p['entry']['text']} {p['entry'].get('url', '')}")
    return {"requests": requests, "remote_requests": remote, "failed_requests": failed, "js_errors": errors}


def is_chapter(page: str) -> bool:
    """A chapter page (``generated/NN_topic``: it has a "Run this chapter" box), not another
    generated page such as the findings table."""
    return page.startswith("generated/") and Path(page).name[:2].isdigit()


def problems(report: dict, chapter: bool) -> list[str]:
    """Everything wrong with a page, in words (empty when the page passes)."""
    out = []
    if report["settled"] != "ready":
        out.append("the page did not settle (MathJax, images or fonts) within 30 s")
    if report["rawTeX"]:
        out.append(f"raw TeX in the visible text: {report['rawTeX']}")
    if report["untypeset"]:
        out.append(f"{len(report['untypeset'])} of {report['formulas']} formulas not typeset: {report['untypeset'][:5]}")
    broken = [i["src"] for i in report["images"] if not i["loaded"]]
    if broken:
        out.append(f"images that did not load: {broken}")
    if report["js_errors"]:
        out.append(f"JavaScript errors: {report['js_errors'][:10]}")
    if report["remote_requests"]:
        out.append(f"requests that leave the machine: {sorted(set(report['remote_requests']))}")
    if report["failed_requests"]:
        out.append(f"failed requests: {report['failed_requests'][:10]}")
    if report["stderr"] or report["progress"] or report["warnings"]:
        out.append(f"stderr/progress/warning output on the page: {report['stderr']} stderr blocks, "
                   f"{report['progress'][:3]}, {report['warnings'][:3]}")
    if report["h1"] is None or not 0 <= report["h1"]["top"] < report["viewport"]:
        out.append(f"the title is not on the first screen: {report['h1']}")
    if chapter:
        p = report["paragraph"]
        if p is None or p["top"] >= report["viewport"]:
            out.append(f"no narrative paragraph on the first screen: {p}")
        code = [c for c in report["firstScreenCells"] if not c["parameters"]]
        if code:
            out.append(f"code or output on the first screen: {code}")
        if p is not None and any(c["top"] < p["bottom"] for c in report["firstScreenCells"]):
            out.append("a code cell comes before the first narrative paragraph")
        box = report["box"]
        if box is None:
            out.append(f'no "{PARAMETERS_TITLE}" box')
        else:
            if "scripts/execute_notebooks.py" not in box["command"] or " -p " not in box["command"]:
                out.append(f"the parameters box gives no command: {box['command']!r}")
            if not (box["parametersCellFollows"] and box["parametersVisible"]):
                out.append("the parameters cell does not follow its box, visible")
    return out


def book_pages(html: Path) -> list[str]:
    """The intro and every chapter of a built book (paths relative to ``html``, without .html)."""
    return ["intro"] + sorted(p.relative_to(html).with_suffix("").as_posix()
                              for p in (html / "generated").glob("*.html"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--pages", nargs="*", help="pages relative to html, without .html (default: all)")
    ap.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    args = ap.parse_args(argv)
    exe = find_chromium()
    if exe is None:
        print("Chromium not found: install Debian's chromium package (apt-get install chromium)", file=sys.stderr)
        return 2
    pages = args.pages or book_pages(args.html)
    failed = 0
    with serve(args.html) as base, Chromium(exe) as browser:
        print(f"{browser.version}, {base}")
        for page in pages:
            report = check_page(browser, f"{base}/{page}.html", args.screenshots / Path(page).name)
            bad = problems(report, chapter=is_chapter(page))
            failed += bool(bad)
            print(f"{'FAIL' if bad else 'ok  '} {page}: {report['typeset']} formulas typeset, "
                  f"{len(report['images'])} images, {len(report['requests'])} requests, {report['seconds']} s")
            for line in bad:
                print(f"     {line}")
    print(f"screenshots in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
