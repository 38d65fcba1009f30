"""A learner's path, in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright.

Opens notebook 01, runs every cell, and asserts that the temperature explorer rendered (a slider), that dragging
the slider redraws its figure, and that the regression figure with the alignment heatmap is shown. Then notebook 08's
head explorer (layer and head sliders over a sentence), built on a small untrained model so that it opens in seconds:
dragging its head slider redraws the heatmap. A screenshot is
saved under the test's tmp dir. `make test` installs Debian's chromium first (`make system-deps`, as root with apt); the test is skipped,
with the reason, only when no browser could be installed.
"""

from __future__ import annotations

import contextlib
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
HEAD_EXPLORER_NOTEBOOK = "08_head_explorer.ipynb"
HEAD_EXPLORER_CELLS = (
    "from IPython.display import display\n"
    "from course_utils import seq2seq\n"
    "from course_utils.transformer import Seq2SeqTransformer\n"
    "from course_utils.display.widgets import HeadExplorer",
    "data = seq2seq.make_data(num_pairs=200, held_out=20, seed=0)\n"
    "model = Seq2SeqTransformer(len(data.source_vocab), len(data.target_vocab), d_model=16, num_heads=4).eval()\n"
    "batch = seq2seq.make_batch(data.held_out[:3], data.source_vocab, data.target_vocab)\n"
    "_, weights = model(batch.source, batch.target_input, batch.source_mask)\n"
    "sentences = [(en, fr, weights[i, :, :, : len(fr), : len(en)].detach())\n"
    "             for i, (en, fr) in enumerate(data.held_out[:3])]\n"
    "explorer = HeadExplorer(sentences, gold=[data.dictionary_alignment(en) > 0 for en, _ in data.held_out[:3]])\n"
    "display(explorer.widget)",
)
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
    import nbformat

    explorer_notebook = nbformat.v4.new_notebook()
    explorer_notebook.cells = [nbformat.v4.new_code_cell(source) for source in HEAD_EXPLORER_CELLS]
    explorer_notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(explorer_notebook, workdir / HEAD_EXPLORER_NOTEBOOK)
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


def drag(page, handle, track_locator, to_right: bool) -> None:
    """Drag a slider's handle to one end of its track with the mouse, as a learner would."""
    box = handle.bounding_box()
    track = track_locator.bounding_box()
    end = track["x"] + track["width"] - 2 if to_right else track["x"] + 2
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(end, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()


def wait_for_redraw(page, figure, before_src: str, tmp_path, slider: str) -> None:
    """The Output area redraws with a new <img>: re-resolve the locator until its picture changes."""
    deadline = time.monotonic() + 30
    while figure.get_attribute("src") == before_src:
        if time.monotonic() > deadline:
            page.screenshot(path=str(tmp_path / "slider_did_not_redraw.png"))
            pytest.fail(f"moving {slider} did not redraw the explorer's figure")
        page.wait_for_timeout(250)


def open_and_run(page, base_url: str, notebook: str) -> None:
    """Open ``notebook`` in JupyterLab, run every cell, and fail if one wrote an error."""
    page.goto(f"{base_url}/lab/tree/{notebook}?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(ALL_CELLS_RAN, timeout=180_000, polling=500)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    error_text = " | ".join(errors.all_inner_texts())
    assert "Error" not in error_text, f"a cell failed in the browser: {error_text[:500]}"


@contextlib.contextmanager
def explorer_after_running(base_url: str, notebook: str):
    """Chromium with ``notebook`` run in JupyterLab: yields (page, the first output with a slider)."""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            open_and_run(page, base_url, notebook)
            # The explorer: a slider rendered by the ipywidgets front end, with its own figure.
            explorer = page.locator(
                ".jp-OutputArea-output", has=page.locator(".widget-slider")
            ).first
            explorer.scroll_into_view_if_needed()
            yield page, explorer
        finally:
            browser.close()


def test_notebook_01_runs_and_its_widget_redraws_in_jupyterlab(jupyterlab, tmp_path):
    with explorer_after_running(jupyterlab, NOTEBOOK) as (page, explorer):
        handle = explorer.locator(".noUi-handle").first
        handle.wait_for(timeout=30_000)
        figure = explorer.locator("img").first
        figure.wait_for(timeout=30_000)
        before_src = figure.get_attribute("src")
        before_readout = explorer.locator(".widget-readout").first.inner_text()

        drag(page, handle, explorer.locator(".noUi-target").first, to_right=False)

        wait_for_redraw(page, figure, before_src, tmp_path, "the temperature slider")
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


def test_notebook_08s_head_explorer_redraws_when_the_head_slider_moves(jupyterlab, tmp_path):
    with explorer_after_running(jupyterlab, HEAD_EXPLORER_NOTEBOOK) as (page, explorer):
        sliders = explorer.locator(".widget-slider")
        assert sliders.count() == 3, "expected the sentence, layer and head sliders"
        head_slider = sliders.nth(2)
        assert "head" in head_slider.inner_text()
        handle = head_slider.locator(".noUi-handle").first
        handle.wait_for(timeout=30_000)
        figure = explorer.locator("img").first
        figure.wait_for(timeout=30_000)
        before_src = figure.get_attribute("src")
        readout = head_slider.locator(".widget-readout").first
        assert readout.inner_text().strip() == "0"

        drag(page, handle, head_slider.locator(".noUi-target").first, to_right=True)

        wait_for_redraw(page, figure, before_src, tmp_path, "the head slider")
        assert readout.inner_text().strip() == "3", "dragging right should pick the last head"
        page.screenshot(path=str(tmp_path / "jupyterlab_head_explorer.png"))
