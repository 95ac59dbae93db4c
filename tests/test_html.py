"""The HTML report: written by a real run, self-contained, renders in headless Chromium."""

from __future__ import annotations

import struct
from html.parser import HTMLParser

import numpy as np

from bench import cases as matrix
from reports import load
from reports.run import plots
from reports.run.write import report_html
from tests.browser import is_blank, open_page
from tests.synthetic import entry, rounds, write_run


class Links(HTMLParser):
    """Every src and href of a page, and its <img> sources."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)
                if tag == "img":
                    self.images.append(value)


def links(text: str) -> Links:
    parser = Links()
    parser.feed(text)
    return parser


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_smoke_run_writes_a_self_contained_report(smoke_run):
    text = (smoke_run.run_dir / "report.html").read_text(encoding="utf-8")
    assert f"html: {smoke_run.run_dir / 'report.html'}" in smoke_run.proc.stdout
    for case in matrix.select("smoke"):
        assert plots.short_case(case.id) in text  # every case in the summary table
    for phase in matrix.PHASES:
        assert f'id="phase-{phase}"' in text
    found = links(text)
    # Images embedded, nothing fetched: the file opens the same without network or folder.
    assert found.images and all(src.startswith("data:image/png;base64,") for src in found.images)
    assert not [u for u in found.urls if u.startswith(("http:", "https:", "//"))]
    assert "<script" not in text and "<link" not in text
    # Per phase: the bar chart and the round-time distribution.
    assert len(found.images) >= 2 * len(matrix.PHASES)


def test_smoke_report_renders_in_chromium(smoke_run, tmp_path):
    page_path = smoke_run.run_dir / "report.html"
    images_in_file = len(links(page_path.read_text(encoding="utf-8")).images)
    shot = tmp_path / "report.png"  # kept with the test's tmp dir, for a person to look at
    with open_page(page_path.as_uri()) as (page, errors):
        images = page.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])))")
        page.screenshot(path=str(shot), full_page=True)
        heading = page.inner_text("h1")
    assert errors.all == []
    assert len(images) == images_in_file
    assert all(w > 0 and h > 0 for w, h in images), images
    assert "blitzbench report" in heading
    assert not is_blank(shot)


def full_matrix_frame(tmp_path, phases=("train_step",)):
    """Every model × optimizer on cpu/cuda × eager/compile: the shape of the full preset."""
    cases = [c for c in matrix.select("full") if c.phase in phases]
    rng = np.random.default_rng(0)
    entries = [entry(c, rounds(1e-3 * rng.uniform(0.2, 2), n=8, seed=i)) for i, c in enumerate(cases)]
    return load(write_run(tmp_path / "full", entries)), cases


def test_charts_stay_legible_with_the_full_matrix(tmp_path):
    df, cases = full_matrix_frame(tmp_path)
    assert len(cases) == 160
    bars = plots.phase_bars(df, "train_step")
    boxes = plots.round_time_boxes(df, "train_step")
    heatmaps = plots.speedup_heatmaps(df)
    for charts, limit in ((bars, plots.MAX_BARS), (boxes, plots.MAX_ROWS), (heatmaps, plots.MAX_ROWS)):
        assert len(charts) >= 1
        assert all(0 < len(c.cases) <= limit for c in charts), [len(c.cases) for c in charts]
        assert all(png_size(c.png)[1] < 2000 for c in charts)  # a page fits a screen or two
    for charts in (bars, boxes):
        shown = [case for c in charts for case in c.cases]
        assert sorted(shown) == sorted(c.id for c in cases)  # every case once, none lost
    # Bar pages are faceted by model: a page never splits a model it could hold whole.
    assert all(len(set(df.set_index("case_id").loc[c.cases, "model"])) == 1 for c in bars)
    assert [c.title for c in heatmaps] == ["eager → compile speedup", "CPU → CUDA speedup"]


def test_newer_figures_appear_when_a_run_has_them(tmp_path):
    smoke = matrix.select("smoke")
    plain_run = write_run(tmp_path / "plain", [entry(c, rounds(1e-3, seed=i)) for i, c in enumerate(smoke)])
    plain = report_html(load(plain_run), "plain", run_dir=plain_run)
    assert 'id="memory"' not in plain and 'id="flops"' not in plain and ">trace<" not in plain
    assert "This run has no environment.json" in plain

    run = tmp_path / "figures"
    (run / "traces" / "one").mkdir(parents=True)
    figures = dict(mem_peak_bytes=3 * 2**20, mem_held_bytes=2**20, flops_per_s=2e9, peak_share=0.25)
    # Noise is derived from the rounds: the first case's are spread wide.
    entries = [entry(c, rounds(1e-3, spread=0.3 if i == 0 else 0.02, seed=i), **figures,
                     trace_dir=str(run / "traces" / "one") if i == 0 else None)
               for i, c in enumerate(smoke)]
    write_run(run, entries, environment={"gpu_name": "Test GPU 80GB", "git_commit": "0123abc",
                                         "load_avg_1m": 9.0, "cpu_count": 2})
    text = report_html(load(run), "figures", run_dir=run)
    assert 'id="memory"' in text and 'id="flops"' in text
    assert ">peak mem (MiB)<" in text and ">GFLOP/s<" in text and ">of peak<" in text
    assert 'href="traces/one"' in text  # relative: the run folder can move
    # The noisy case is marked in its phase table and in the summary's ranking.
    assert text.count('class="badge noisy">noisy<') == 2
    assert "Test GPU 80GB" in text and "0123abc" in text
    assert 'class="warning"' in text and "load average of 9.00 on 2" in text  # a busy machine


def test_report_of_a_run_with_nothing_measured(tmp_path):
    skipped = [entry(c, None, status="skipped", error="CUDA is not available")
               for c in matrix.select("smoke", devices=("cuda",))]
    run = write_run(tmp_path / "run", skipped)
    text = report_html(load(run), "nothing", run_dir=run)
    assert "No case was measured." in text and 'id="not-measured"' in text
    assert "<img" not in text


def test_profiled_run_report_has_the_profiles_section(profile_run):
    text = (profile_run.run_dir / "report.html").read_text(encoding="utf-8")
    markdown = (profile_run.run_dir / "report.md").read_text(encoding="utf-8")
    assert 'id="profiles"' in text and "## Profiles" in markdown
    section = text[text.index('id="profiles"'):]
    section = section[:section.index("</section>")]
    assert ">operator calls/step<" in section and "top operators by self CPU time" in section
    assert ">operator<" in section and ">calls/step<" in section
    assert "<td>aten::" in section  # an operator row
