"""A small HTML reader for the console's tests (the standard library's parser): the
elements with their attributes and text, enough to check structure and accessible names."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


@dataclass
class Element:
    """One element: its tag, attributes and the text inside it (descendants included)."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """An attribute's value (``""`` for a bare attribute), or None."""
        return self.attrs.get(name)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attrs})
        if self._open:
            self._open[-1].children.append(element)
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self._open and self._open[-1].tag == tag:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data


@dataclass
class Page:
    """A parsed page."""

    elements: list[Element]

    def all(self, tag: str, **attrs: str) -> list[Element]:
        """Elements with ``tag`` (``"*"``: any) whose attributes equal ``attrs``."""
        return [
            e
            for e in self.elements
            if (tag == "*" or e.tag == tag)
            and all(e.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]

    def texts(self, tag: str, **attrs: str) -> list[str]:
        """The whitespace-normalised texts of those elements."""
        return [" ".join(e.text.split()) for e in self.all(tag, **attrs)]

    def labels(self) -> list[str]:
        """The texts of the labels, without the text of the controls inside them."""
        found = []
        for label in self.all("label"):
            text = label.text
            for child in label.children:
                if child.tag in ("select", "textarea"):
                    text = text.replace(child.text, "")
            found.append(" ".join(text.split()))
        return found

    def buttons(self) -> list[str]:
        """The accessible names of the buttons (aria-label, else their text)."""
        return [b.get("aria-label") or " ".join(b.text.split()) for b in self.all("button")]


def parse(html: str) -> Page:
    """The elements of ``html``, in document order."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return Page(reader.elements)
