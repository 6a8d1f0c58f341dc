"""Dashboards: pages written for any source, and rendered by a real headless browser."""

import shutil
import subprocess

import pytest

from tests.conftest import random_sentences
from tl_glp.interpret import top_activations
from tl_glp.probing import MetaNeurons

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "No Chromium binary on PATH: install the distribution's package (Debian/Ubuntu: apt-get install -y chromium) to run the browser test."
    )


def render(path, tmp_path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message / failed load Chromium reported."""
    done = subprocess.run(
        [
            _browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    problems = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]
    return done.stdout, problems


@pytest.fixture(scope="module")
def meta_results(tiny_model, tiny_prior_and_acts):
    prior, _ = tiny_prior_and_acts
    res = top_activations(tiny_model, MetaNeurons(prior), random_sentences(30, seed=9, length=8), k=5, progress=False)
    res.explanations[int(res.max_activation().argmax())] = "fires on <b>dogs</b> & cats"  # escaped, not markup
    return res


def test_pages_are_self_contained(meta_results, tmp_path):
    index = meta_results.to_html(tmp_path / "dash", max_features=4)
    pages = sorted(p.name for p in index.parent.glob("feature_*.html"))
    assert len(pages) == 4
    best = int(meta_results.max_activation().argmax())
    text = (index.parent / f"feature_{best}.html").read_text()
    assert "&lt;b&gt;dogs&lt;/b&gt; &amp; cats" in text and "<b>dogs" not in text
    for page in [index, *index.parent.glob("feature_*.html")]:
        content = page.read_text()
        assert "http://" not in content.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in content
    assert 'class="tok' in text and "Bottom activations" in text  # meta-neurons are signed


def test_browser_renders_index_and_feature_page(meta_results, tmp_path):
    index = meta_results.to_html(tmp_path / "dash", max_features=3)
    dom, problems = render(index, tmp_path)
    assert problems == [] and 'data-js="ok"' in dom
    assert dom.count('class="feature"') == 3 and 'class="tok' in dom
    page = next(index.parent.glob("feature_*.html"))
    dom, problems = render(page, tmp_path)
    assert problems == [] and 'data-js="ok"' in dom
    assert dom.count('class="tok') >= 5 and "<svg" in dom
    # the check itself catches a broken page
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert render(bad, tmp_path)[1]
