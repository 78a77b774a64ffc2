"""Griffe extension for the API reference: array shapes in docstrings, such as ``[U + 1][T]`` (a list of U + 1 rows
of T values) or ``E[n | S] [M]``, are shown as code. Markdown would otherwise read two bracket groups in a row as a
reference link and the strict build would fail on a cross-reference that was never meant."""

from __future__ import annotations

import re

import griffe

CODE = re.compile(r"(``?).+?\1", re.S)  # code spans already in the docstring are left alone
SHAPE = re.compile(r"\S*\[[^\[\]`\n]+\](?: ?\[[^\[\]`\n]+\])+")  # two or more bracket groups in a row


def shapes_as_code(text: str) -> str:
    out, last = [], 0
    for span in CODE.finditer(text):
        out += [SHAPE.sub(r"`\g<0>`", text[last:span.start()]), span.group(0)]
        last = span.end()
    return "".join(out + [SHAPE.sub(r"`\g<0>`", text[last:])])


class ShapesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = shapes_as_code(obj.docstring.value)
