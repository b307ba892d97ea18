"""hardway.widgets.layertree
~~~~~~~~~~~~~~~~~~~~~~~~~

The layer explorer: an image's file tree, layer by layer. Each layer is a tar of
*changes*, so each tab shows the tree as it stands after that layer, every entry marked
with what the layer did to it:

====  =========  ===============================================================
mark  status     meaning
====  =========  ===============================================================
``+``  added      the layer creates it; no lower layer had it
``~``  changed    a lower layer had it; this layer writes it again (content, mode,
                  or a directory listed again because something inside it changed)
``-``  deleted    a whiteout (``.wh.name``) or an opaque marker removed it
``·``  kept       comes unchanged from a lower layer
====  =========  ===============================================================

:func:`layer_changes` reads only the tar *headers* (names and types) of each layer,
streaming, and follows the OCI rules with :func:`hardway.image.whiteouts.apply_names` — the
same model lab 05 builds — so it never writes a file.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hardway.image.apply import clean_name
from hardway.image.compression import decompressed
from hardway.image.protocols import Image, Layer
from hardway.image.whiteouts import META_PREFIX, apply_names, is_opaque, whiteout_target
from hardway.widgets.view import View, escape, human_size, short_digest

__all__ = ["LayerChanges", "TreeEntry", "layer_changes", "layer_explorer"]

MARKS = {"added": "+", "changed": "~", "deleted": "-", "kept": "·"}
_COLOURS = {"added": "#1a7f37", "changed": "#9a6700", "deleted": "#cf222e", "kept": "#57606a"}


@dataclass(frozen=True)
class TreeEntry:
    """One path of the tree after a layer: ``kind`` is ``dir``, ``file``, ``link``
    (symlink, with its ``target``), ``hardlink`` or ``other``."""

    path: str
    kind: str
    status: str
    target: str = ""

    def label(self, full: bool = True) -> str:
        """``etc/``, ``bin/sh -> busybox``: the path (or its last part) as ``ls -F`` would."""
        name = self.path if full else self.path.rsplit("/", 1)[-1]
        name += "/" if self.kind == "dir" else ""
        return f"{name} -> {self.target}" if self.kind == "link" else name


@dataclass(frozen=True)
class LayerChanges:
    """What one layer did, and the whole tree after it."""

    index: int
    name: str  # the layer's digest, or its file name
    size: int | None
    entries: tuple[TreeEntry, ...]

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("added", "changed", "deleted"))
        return f"layer {self.index}: {counts}"


def _kind(member: tarfile.TarInfo) -> tuple[str, str]:
    if member.isdir():
        return "dir", ""
    if member.issym():
        return "link", member.linkname
    if member.islnk():
        return "hardlink", member.linkname
    return ("file", "") if member.isfile() else ("other", "")


def tar_members(stream: BinaryIO) -> list[tuple[str, str, str]]:
    """``(name, kind, target)`` of each entry of an (optionally compressed) tar, in
    order, names cleaned (unsafe names raise :class:`~hardway.errors.UnsafeLayerError`)."""
    found = []
    with tarfile.open(fileobj=decompressed(stream), mode="r|") as tar:
        for member in tar:
            name = clean_name(member.name)
            if name:
                found.append((name, *_kind(member)))
    return found


def _read(layer: Path | str | BinaryIO | Layer) -> tuple[str, int | None, list]:
    """Name, size and members of a layer given as a file, a stream or an image layer."""
    if isinstance(layer, str | os.PathLike):
        path = Path(layer)
        with open(path, "rb") as fh:
            return path.name, path.stat().st_size, tar_members(fh)
    if hasattr(layer, "compressed"):
        with layer.compressed() as blob:
            return str(layer.digest), layer.size, tar_members(blob)
    return "stream", None, tar_members(layer)


def _step(
    index: int, name: str, size: int | None, members: list, below: dict[str, tuple[str, str]]
) -> tuple[LayerChanges, dict[str, tuple[str, str]]]:
    """One layer on top of ``below`` (path → (kind, target)): the marked tree and the new one."""
    names = [m[0] for m in members]
    after_names = apply_names(below, names)
    written = {
        name: (kind, target)
        for name, kind, target in members
        if whiteout_target(name) is None
        and not is_opaque(name)
        and not name.rsplit("/", 1)[-1].startswith(META_PREFIX)
    }
    # a file or a link written over a lower directory replaces it, contents and all
    replaced = {path for path, (kind, _) in written.items() if kind != "dir" and path in below}
    after_names = {p for p in after_names if p in written or not _under_any(p, replaced)}
    tree: dict[str, tuple[str, str]] = {}
    for path in after_names:
        tree[path] = written.get(path) or below.get(path) or ("dir", "")
    entries = []
    for path in sorted(after_names | set(below)):
        if path not in after_names:
            status = "deleted"
        elif path in written:
            status = "changed" if path in below else "added"
        else:
            status = "kept" if path in below else "added"  # an implicit parent directory
        kind, target = tree.get(path) or below[path]
        entries.append(TreeEntry(path, kind, status, target))
    return LayerChanges(index, name, size, tuple(entries)), tree


def _under_any(path: str, parents: set[str]) -> bool:
    """Whether one of ``path``'s ancestors is in ``parents``."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in parents for i in range(1, len(parts)))


def layer_changes(
    layers: Image | Iterable[Path | str | BinaryIO | Layer],
) -> list[LayerChanges]:
    """For each layer, lowest first: the tree after it, each path marked (see above).

    *layers* is an :class:`~hardway.image.protocols.Image` (its layers are read through
    their verified streams), or layer files or streams, gzip, zstd or plain tar.
    """
    if hasattr(layers, "layers") and callable(layers.layers):
        layers = layers.layers()
    below: dict[str, tuple[str, str]] = {}
    result = []
    for index, layer in enumerate(layers):
        name, size, members = _read(layer)
        changes, below = _step(index, name, size, members, below)
        result.append(changes)
    return result


def _text(changes: Sequence[LayerChanges], everything: bool) -> str:
    lines = []
    for layer in changes:
        lines.append(f"{layer.summary()}  ({short_digest(layer.name)}, {human_size(layer.size)})")
        for entry in layer.entries:
            if everything or entry.status != "kept":
                lines.append(f"  {MARKS[entry.status]} {entry.label()}")
    return "\n".join(lines)


def _tree_html(layer: LayerChanges) -> str:
    rows = []
    for entry in layer.entries:
        colour = _COLOURS[entry.status]
        style = f"color:{colour};padding-left:{1.2 * entry.path.count('/'):.1f}em"
        if entry.status == "deleted":
            style += ";text-decoration:line-through"
        name = entry.label(full=False)
        rows.append(
            f"<div class='hw-entry hw-{entry.status}' style='{style}'>"
            f"<code>{MARKS[entry.status]} {escape(name)}</code></div>"
        )
    legend = " ".join(f"<span style='color:{_COLOURS[s]}'>{MARKS[s]} {s}</span>" for s in MARKS)
    head = f"<div><b>{escape(layer.summary())}</b> — <code>{escape(layer.name)}</code></div>"
    body = f"<div style='line-height:1.35;margin-top:4px'>{''.join(rows)}</div>"
    return f"<div class='hw-layer'>{head}<div>{legend}</div>{body}</div>"


class LayerExplorer(View):
    """The explorer: a tab per layer, each an HTML tree; text lists what changed."""

    def __init__(self, changes: Sequence[LayerChanges]) -> None:
        self.changes = list(changes)

    def __str__(self) -> str:
        return _text(self.changes, everything=False)

    def to_html(self) -> str:
        return "".join(_tree_html(layer) for layer in self.changes)

    def widget(self) -> Any:
        import ipywidgets

        pages = [ipywidgets.HTML(_tree_html(layer)) for layer in self.changes]
        titles = [f"{c.index}: {short_digest(c.name, 8)}" for c in self.changes]
        tabs = ipywidgets.Tab(children=pages, titles=titles)
        tabs.add_class("hw-layer-explorer")
        return tabs


def layer_explorer(layers: Image | Iterable[Path | str | BinaryIO | Layer]) -> LayerExplorer:
    """Show an image (or layer files) layer by layer: the widget, or text in a terminal."""
    return LayerExplorer(layer_changes(layers))
