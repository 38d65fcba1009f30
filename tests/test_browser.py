"""A learner's path, in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright.

Opens notebook 01, runs every cell, and asserts that the temperature explorer rendered (a slider), that dragging
the slider redraws its figure, and that the regression figure with the alignment heatmap is shown. A screenshot is
saved under the test's tmp dir. `make test` installs Debian's chromium first (`make system-deps`, as root with apt); the test is skipped,
with the reason, only when no browser could be installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
NOTEBOOK = "01_soft_weights.ipynb"
TOKEN = "course-browser-test"

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: `make system-deps` installs Debian's chromium (as root with apt)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def jupyterlab(repo_root, tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a copy of solutions/01; yields its base URL."""
    workdir = tmp_path / "lab"
    workdir.mkdir()
    shutil.copy(repo_root / "solutions" / NOTEBOOK, workdir / NOTEBOOK)
    port = free_port()
    # No "get notified about Jupyter news?" toast over the screenshot (and no attempt to fetch news).
    labconfig = tmp_path / "jupyter-config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}'
    )
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        COURSE_DEVICE="cpu",
    )
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={workdir}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}"
                    )
                time.sleep(0.5)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


ALL_CELLS_RAN = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext.session) return false;
  const kernel = panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
  return kernel && kernel.status === 'idle' && cells.length > 0 &&
         cells.every(cell => cell.model.executionCount !== null);
}"""

KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!(panel && panel.sessionContext && panel.sessionContext.session &&
            panel.sessionContext.session.kernel && panel.sessionContext.session.kernel.status === 'idle');
}"""


def test_notebook_01_runs_and_its_widget_redraws_in_jupyterlab(jupyterlab, tmp_path):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_CELLS_RAN, timeout=180_000, polling=500)

            errors = page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
            )
            error_text = " | ".join(errors.all_inner_texts())
            assert "Error" not in error_text, f"a cell failed in the browser: {error_text[:500]}"

            # The explorer: a slider rendered by the ipywidgets front end, with its own figure.
            explorer = page.locator(
                ".jp-OutputArea-output", has=page.locator(".widget-slider")
            ).first
            explorer.scroll_into_view_if_needed()
            handle = explorer.locator(".noUi-handle").first
            handle.wait_for(timeout=30_000)
            figure = explorer.locator("img").first
            figure.wait_for(timeout=30_000)
            before_src = figure.get_attribute("src")
            before_readout = explorer.locator(".widget-readout").first.inner_text()

            box = handle.bounding_box()
            track = explorer.locator(".noUi-target").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + 2, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()

            # The Output area redraws with a new <img>: re-resolve the locator until its picture changes.
            deadline = time.monotonic() + 30
            while figure.get_attribute("src") == before_src:
                if time.monotonic() > deadline:
                    page.screenshot(path=str(tmp_path / "slider_did_not_redraw.png"))
                    pytest.fail(
                        "moving the temperature slider did not redraw the explorer's figure"
                    )
                page.wait_for_timeout(250)
            after_readout = explorer.locator(".widget-readout").first.inner_text()
            assert after_readout != before_readout, "the slider's value did not change"
            assert float(after_readout) < float(before_readout), "dragging left should lower T"

            # The regression figure with the alignment-matrix heatmap (a PNG output of its own).
            images = page.locator(".jp-RenderedImage img")
            assert images.count() >= 2, "expected the explorer figure and the heatmap figure"
            heatmap = images.nth(images.count() - 1)
            heatmap.scroll_into_view_if_needed()
            assert heatmap.evaluate("img => img.naturalWidth") > 400
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "jupyterlab_notebook01.png"))
            assert (tmp_path / "jupyterlab_notebook01.png").stat().st_size > 10_000
        finally:
            browser.close()
