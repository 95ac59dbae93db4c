"""The HTML writer: one self-contained page from the sections, through a Jinja2 template
with autoescaping (every string from the results is escaped; links and badges are markup of
the template). Images are embedded as base64 PNG, styles inline, no script and no external
resource, so a page opens the same from a mail attachment, a CI artifact or a laptop
without network."""

from __future__ import annotations

import base64
import functools
from typing import Any, Sequence

import jinja2

from .. import format as fmt
from .document import Cards, Charts, Note, Section, Table

TEMPLATE = "page.html"


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("reports.run", "templates"),
                              autoescape=jinja2.select_autoescape(["html"]),
                              undefined=jinja2.StrictUndefined)


def _table(table: Table) -> dict[str, Any]:
    numeric = set(table.numeric)
    columns = [c for c in table.frame.columns if c != table.group_by]
    rows: list[dict[str, Any]] = []
    current = None
    for i, (_, row) in enumerate(table.frame.iterrows()):
        if table.group_by is not None and row[table.group_by] != current:
            current = row[table.group_by]
            rows.append({"group": current})
        rows.append({"cells": [{"text": row[c], "numeric": c in numeric,
                                "href": table.links[c][i] if c in table.links else None,
                                "badge": table.badges[c][i] if c in table.badges else ""}
                               for c in columns]})
    return {"kind": "table", "title": table.title, "rows": rows, "folded": table.folded,
            "summary": f"{table.title or 'Table'} ({fmt.count(len(table.frame), 'row')})",
            "headers": [{"text": c, "numeric": c in numeric} for c in columns]}


def _charts(block: Charts) -> dict[str, Any]:
    images = [{"src": "data:image/png;base64," + base64.b64encode(c.png).decode("ascii"),
               "alt": c.alt, "title": c.title} for c in block.charts]
    return {"kind": "charts", "title": block.title, "folded": block.folded, "note": block.note, "images": images}


def _block(block: Any) -> dict[str, Any]:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Charts):
        return _charts(block)
    if isinstance(block, Cards):
        return {"kind": "cards", "cards": block.items}
    if isinstance(block, Note):
        return {"kind": "note", "text": block.text, "warning": block.warning}
    raise TypeError(f"not a report block: {block!r}")


def write_html(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    views = [{"id": s.id, "title": s.title, "blocks": [_block(b) for b in s.blocks]} for s in sections]
    return environment().get_template(TEMPLATE).render(title=title, subtitle=subtitle, sections=views) + "\n"
