"""Open an HTML file (a ``selfsup report``) in headless Chromium, as a test sees a page a person opens.

:func:`render_in_chromium` loads the file twice: once as it is, for a screenshot and the messages
Chromium logs (``--enable-logging=stderr``: console messages, uncaught errors, requests the page's
Content-Security-Policy refused); once as an instrumented copy whose inline script records, on the
``<html>`` element, every error event, every CSP violation and each image's ``naturalWidth`` after
``load``, read back from ``--dump-dom``. The copy's policy only adds ``script-src 'unsafe-inline'``
for that script: images and everything else are held to the file's own policy.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ARTEFACTS_ENV = "SELFSUP_TEST_ARTEFACTS"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]
PROBE = """<script>(function(){var d=document.documentElement,errors=[];
function add(m){errors.push(m);d.setAttribute('data-errors',JSON.stringify(errors));}
window.addEventListener('error',function(e){var t=e.target||{};
add('error: '+(e.message||t.src||t.href||'?'));},true);
document.addEventListener('securitypolicyviolation',function(e){
add('blocked: '+e.blockedURI+' ('+e.violatedDirective+')');});
window.addEventListener('load',function(){var w=[];for(var i=0;i<document.images.length;i++){
var m=document.images[i];w.push(m.complete?m.naturalWidth:0);}
d.setAttribute('data-image-widths',w.join(','));d.setAttribute('data-loaded','1');});})();</script>"""


@dataclass
class RenderedPage:
    """What Chromium made of a page: the DOM after ``load`` (of the instrumented copy), each image's
    ``naturalWidth`` (0: not rendered), the errors and refused requests the page's script saw, the
    console / error / CSP lines Chromium logged for the file as it is, and the screenshot."""

    dom: str
    image_widths: list[int]
    errors: list[str]
    console: list[str]
    screenshot: Path


def chromium() -> str:
    """The Chromium executable; skips the test where there is none (fails under ``CI``, where it must be)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI: install it (apt-get install chromium)")
        pytest.skip("needs Chromium (apt-get install chromium)")
    return found


def render_in_chromium(page: str | Path, workdir: str | Path, *, screenshot: str = "report.png",
                       size: tuple[int, int] = (1300, 2400), timeout: float = 120) -> RenderedPage:
    """Render ``page`` (an HTML file) in headless Chromium with scratch files in ``workdir``. The
    screenshot is ``workdir/<screenshot>``, also copied to ``$SELFSUP_TEST_ARTEFACTS`` when set."""
    exe, page, workdir = chromium(), Path(page).resolve(), Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shot = workdir / screenshot
    logged = subprocess.run([exe, *FLAGS, f"--user-data-dir={workdir / 'profile-1'}", "--enable-logging=stderr",
                             "--v=0", f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}", page.as_uri()],
                            capture_output=True, text=True, timeout=timeout)
    console = [line for line in logged.stderr.splitlines()
               if re.search(r"CONSOLE|Uncaught|Refused to|Content.Security.Policy", line)]
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'(<meta http-equiv="Content-Security-Policy" content=")([^"]*)"',
                  lambda m: f"{m.group(1)}{m.group(2)}; script-src 'unsafe-inline'\"", text, count=1)
    probe = workdir / f"probe-{page.name}"
    probe.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    dumped = subprocess.run([exe, *FLAGS, f"--user-data-dir={workdir / 'profile-2'}", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=timeout)
    root = re.search(r"<html[^>]*>", dumped.stdout)
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', root.group(0))) if root else {}
    if attributes.get("data-loaded") != "1":
        raise AssertionError(f"the page did not finish loading in Chromium: {dumped.stderr[-2000:]}")
    widths = [int(w) for w in attributes.get("data-image-widths", "").split(",") if w]
    errors = json.loads(html.unescape(attributes.get("data-errors", "[]")))
    if os.environ.get(ARTEFACTS_ENV) and shot.is_file():
        target = Path(os.environ[ARTEFACTS_ENV])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / screenshot)
    return RenderedPage(dumped.stdout, widths, errors, console, shot)
