"""The browser helper itself: it must see a rendered page and report a JavaScript error."""

import pytest

from tests.browser import is_blank, open_page


@pytest.mark.slow
def test_browser_sees_content_and_javascript_errors(tmp_path):
    page_file = tmp_path / "page.html"
    page_file.write_text("<html><body style='background:white'><h1 id='t'>blitzbench</h1>"
                         "<script>undefinedFunction()</script></body></html>")
    with open_page(page_file.as_uri()) as (page, errors):
        assert page.inner_text("#t") == "blitzbench"
        shot = tmp_path / "shot.png"
        page.screenshot(path=str(shot))
    assert not is_blank(shot)
    assert any("undefinedFunction" in e for e in errors.page)
