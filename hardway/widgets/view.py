"""hardway.widgets.view
~~~~~~~~~~~~~~~~~~~~

One object, notebook or terminal (like rich's ``JupyterMixin``): a :class:`View` renders
as a live ipywidgets tree where a widget manager runs (JupyterLab), as HTML where only
HTML is shown (a static notebook viewer), and as plain text everywhere else (nbval, a
terminal, a CI log). The widget is built only when a frontend asks for it, so a View
costs nothing in a script, and ipywidgets stays optional.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

__all__ = ["View", "escape", "human_size", "short_digest"]


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def short_digest(digest: object, width: int = 12) -> str:
    """``sha256:`` and the first *width* hex digits: enough to tell blobs apart.

    >>> short_digest("sha256:" + "ab" * 32)
    'sha256:abababababab…'
    """
    text = str(digest)
    algorithm, _, hexdigits = text.partition(":")
    return f"{algorithm}:{hexdigits[:width]}…" if len(hexdigits) > width else text


def human_size(size: int | None) -> str:
    """Bytes for a person: ``1.5 KiB``, ``12.0 MiB``; exact below 1 KiB.

    >>> human_size(512), human_size(1536), human_size(None)
    ('512 B', '1.5 KiB', '–')
    """
    if size is None:
        return "–"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class View:
    """Base of every picture: subclasses give :meth:`__str__` (text), :meth:`to_html`
    and :meth:`widget` (an ipywidgets tree); the rest is shared."""

    def to_html(self) -> str:
        return f"<pre>{escape(self)}</pre>"

    def widget(self) -> Any:
        """An ipywidgets tree of this view (default: its HTML in one ``HTML`` widget)."""
        import ipywidgets

        return ipywidgets.HTML(self.to_html())

    def _repr_mimebundle_(self, include: Iterable[str] | None = None, exclude: object = None):
        bundle = {"text/plain": str(self), "text/html": self.to_html()}
        try:
            import ipywidgets  # noqa: F401
        except ImportError:  # the lab extra is not installed: HTML and text still work
            return bundle
        data = self.widget()._repr_mimebundle_()
        widget_view = "application/vnd.jupyter.widget-view+json"
        if isinstance(data, tuple):  # (data, metadata) in some ipywidgets versions
            data = data[0]
        if data and widget_view in data:
            bundle[widget_view] = data[widget_view]
        return bundle
