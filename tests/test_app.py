"""`occrecon app`: the web page driven in a real browser (Debian's chromium through Playwright), and its pieces.

The browser test skips cleanly where gradio (the ``[app]`` extra), playwright or ``/usr/bin/chromium``
is absent; Playwright never downloads a browser here. ``OCCRECON_APP_SCREENSHOT=docs/app.png`` keeps
the page's screenshot (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from occrecon.app import AppUnavailableError, input_kind, one_line
from occrecon.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHROMIUM = "/usr/bin/chromium"


def test_importing_occrecon_does_not_import_gradio():
    code = "import sys, occrecon, occrecon.app, occrecon.cli.main; print('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_input_kind_and_one_line_errors(tmp_path):
    assert input_kind(EXAMPLES / "chair.png") == "image"
    assert input_kind(EXAMPLES / "chair_points.ply") == "points"
    assert input_kind(EXAMPLES / "chair.binvox") == "voxels"
    assert input_kind(EXAMPLES / "chair.png", "points") == "points"
    line = one_line(InputError("bad\nname.ply", "malformed PLY header"))
    assert line.startswith("Error: ") and "\n" not in line and "malformed PLY header" in line


def test_without_gradio_the_command_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    from occrecon.app import build_app

    with pytest.raises(AppUnavailableError, match=r'pip install "occrecon\[app\]"'):
        build_app()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    pytest.importorskip("gradio")
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "occrecon", "app", "--port", str(port), "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"occrecon app exited: {server.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        server.terminate()
        pytest.fail("occrecon app did not answer within 180 s")
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def browser_page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served)
        page.locator("#run").wait_for(timeout=60_000)
        yield page
        browser.close()


def _choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _run(page, upload: Path, timeout_s: float = 300) -> str:
    from playwright.sync_api import expect

    chosen = page.locator("#upload").get_by_role("button", name=re.compile(r"^(Clear|Remove( this)? file)$"))
    if chosen.count():  # the previous upload is still in the box: its file input comes back once it is cleared
        chosen.first.click()
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    page.locator("#run").click()
    status = page.locator("#status input, #status textarea").first
    # The line names the upload, so the previous run's line is never taken for this one's.
    expect(status).to_have_value(re.compile(rf"^(Done|Error).*{re.escape(upload.name)}"), timeout=timeout_s * 1000)
    return status.input_value()


@pytest.mark.browser
def test_the_page_reconstructs_a_photo_and_a_cloud(browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    _choose(page, "steps", "0")  # a 32³ lattice: the page's result in seconds on a CPU
    for example in (EXAMPLES / "chair.png", EXAMPLES / "chair_points.ply"):
        status = _run(page, example)
        assert status.startswith("Done"), status
        expect(page.locator("#viewer canvas")).to_be_visible(timeout=30_000)
        link = page.locator("#download a").first
        expect(link).to_be_visible(timeout=30_000)
        assert f"{example.stem}.glb" in (link.get_attribute("href") or "")
    page.wait_for_timeout(1500)  # the viewer draws its first frame
    shot = page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    assert len(shot) > 10_000
    keep = os.environ.get("OCCRECON_APP_SCREENSHOT")
    if keep:
        shutil.copyfile(tmp_path / "app.png", keep)


@pytest.mark.browser
def test_a_bad_upload_shows_the_error_line(browser_page, tmp_path):
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"this is not a point cloud\n")
    status = _run(browser_page, junk, timeout_s=120)
    assert status.startswith("Error: ") and "junk.ply" in status and "\n" not in status, status
