"""The Markdown writer: a title and the sections. Left out: charts, and the headline cards
(HTML only; the notes say the same in prose)."""

from __future__ import annotations

from typing import Sequence

from .document import Note, Section, Table


def table_markdown(table: Table) -> str:
    frame = table.frame.copy()
    for column, targets in table.links.items():
        frame[column] = [f"[{text}]({target})" if target else "" for text, target in zip(frame[column], targets)]
    return frame.to_markdown(index=False)


def write_markdown(title: str, sections: Sequence[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        if not section.has(Note, Table):
            continue  # charts only
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Note):
                lines += [f"> **Warning:** {block.text}" if block.warning else block.text, ""]
            elif isinstance(block, Table):
                lines += ([f"### {block.title}", ""] if block.title else []) + [table_markdown(block), ""]
    return "\n".join(lines)
