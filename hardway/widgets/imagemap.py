"""hardway.widgets.imagemap
~~~~~~~~~~~~~~~~~~~~~~~~

The image map: every document of an image and what it points at, with sizes, media
types and digests — an index (or a layout's ``index.json``) → one manifest per platform
→ its config and its layers. Chapter 06 draws the layout it wrote by hand, chapter 08
the index it pushed to the registry.

:func:`map_descriptor` walks the graph from one descriptor, given a ``fetch`` function
that returns a blob's exact bytes; :func:`map_layout`, :func:`map_reference` and
:func:`map_image` supply it for an OCI layout, a registry and an image in memory. The
result is a tree of plain :class:`Node` values; :func:`image_map` draws it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardway.image.blobs import BlobDir
from hardway.image.config import ImageConfig
from hardway.image.descriptor import Descriptor
from hardway.image.digest import sha256_digest
from hardway.image.layout import read_index
from hardway.image.manifest import ANNOTATION_REF_NAME, Index, Manifest
from hardway.image.mediatypes import INDEX_TYPES, MANIFEST_TYPES, layer_compression
from hardway.image.protocols import Image
from hardway.widgets.view import View, escape, human_size, short_digest

__all__ = ["Node", "image_map", "map_descriptor", "map_image", "map_layout", "map_reference"]

Fetch = Callable[[Descriptor], bytes]
_INDEXES = set(INDEX_TYPES.values())
_MANIFESTS = set(MANIFEST_TYPES.values())
_COLOURS = {
    "layout": "#6e7781", "index": "#8250df", "manifest": "#0969da",
    "config": "#1a7f37", "layer": "#9a6700", "blob": "#6e7781",
}  # fmt: skip
_MAX_DEPTH = 4


@dataclass(frozen=True)
class Node:
    """One document or blob of the map: its ``role`` (``layout``, ``index``,
    ``manifest``, ``config``, ``layer`` or ``blob``), its descriptor's fields, a
    human ``label`` (a platform, a tag, ``layer 0 (gzip)``) and what it points at."""

    role: str
    media_type: str
    digest: str
    size: int
    label: str = ""
    children: tuple[Node, ...] = ()

    def walk(self):
        """This node and every node below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def line(self) -> str:
        label = f" {self.label}" if self.label else ""
        return (
            f"{self.role}{label}  {short_digest(self.digest)}  {human_size(self.size)}  "
            f"{self.media_type}"
        )


def _entry_label(descriptor: Descriptor) -> str:
    parts = []
    if descriptor.platform is not None:
        parts.append(str(descriptor.platform))
    if tag := descriptor.annotations.get(ANNOTATION_REF_NAME):
        parts.append(f"tag {tag}")
    return ", ".join(parts) or "(no platform)"


def _config_label(raw: bytes) -> str:
    config = ImageConfig.from_json(raw)
    command = [*(config.config.entrypoint or ()), *(config.config.cmd or ())]
    shown = f", runs {' '.join(command)}" if command else ""
    return f"{config.platform}, {len(config.rootfs.diff_ids)} diff_id(s){shown}"


def _manifest_children(manifest: Manifest, raw_config: bytes) -> tuple[Node, ...]:
    config = manifest.config
    nodes = [
        Node(
            "config", config.media_type, str(config.digest), config.size, _config_label(raw_config)
        )
    ]
    for number, layer in enumerate(manifest.layers):
        compression = layer_compression(layer.media_type) or "?"
        nodes.append(
            Node(
                "layer",
                layer.media_type,
                str(layer.digest),
                layer.size,
                f"{number} ({compression})",
            )
        )
    return tuple(nodes)


def map_descriptor(
    descriptor: Descriptor, fetch: Fetch, *, label: str = "", depth: int = 0
) -> Node:
    """The map below *descriptor*: indexes and manifests are fetched and followed,
    configs read for a label, layers only listed (never downloaded)."""
    fields = (descriptor.media_type, str(descriptor.digest), descriptor.size)
    if descriptor.media_type in _INDEXES and depth < _MAX_DEPTH:
        index = Index.from_json(fetch(descriptor))
        children = tuple(
            map_descriptor(d, fetch, label=_entry_label(d), depth=depth + 1)
            for d in index.manifests
        )
        return Node("index", *fields, label, children)
    if descriptor.media_type in _MANIFESTS:
        manifest = Manifest.from_json(fetch(descriptor))
        return Node(
            "manifest", *fields, label, _manifest_children(manifest, fetch(manifest.config))
        )
    return Node("blob", *fields, label)


def map_image(image: Image, label: str = "") -> Node:
    """The map of one image in memory (its manifest, config and layers)."""
    raw = image.raw_manifest()
    manifest = image.manifest()
    children = _manifest_children(manifest, image.raw_config())
    return Node("manifest", manifest.media_type, str(sha256_digest(raw)), len(raw), label, children)


def map_layout(path: Path | str) -> Node:
    """The map of an OCI image layout: its ``index.json`` and every entry in it."""
    path = Path(path)
    blobs = BlobDir(path / "blobs")
    index = read_index(path)
    raw = (path / "index.json").read_bytes()
    children = tuple(map_descriptor(d, blobs.read, label=_entry_label(d)) for d in index.manifests)
    return Node(
        "layout", index.media_type, str(sha256_digest(raw)), len(raw), "index.json", children
    )


def map_reference(reference: str, **options: Any) -> Node:
    """The map of what a registry serves for *reference* (``host/repo:tag``)."""
    from hardway.distribution.reference import parse_reference
    from hardway.distribution.registry import client_for

    ref = parse_reference(reference)
    with client_for(ref, **options) as client:

        def fetch(descriptor: Descriptor) -> bytes:
            if descriptor.media_type in _INDEXES | _MANIFESTS:
                return client.get_manifest(ref.repository, str(descriptor.digest))[0]
            with client.open_blob(ref.repository, descriptor.digest, descriptor.size) as blob:
                return blob.read()

        raw, top = client.get_manifest(ref.repository, ref.identifier)
        cached = {str(top.digest): raw}
        return map_descriptor(
            top, lambda d: cached.get(str(d.digest)) or fetch(d), label=ref.familiar
        )


# --- drawing ---------------------------------------------------------------------------


def _text(node: Node, prefix: str = "", last: bool = True, top: bool = True) -> list[str]:
    lines = [node.line() if top else f"{prefix}{'└─ ' if last else '├─ '}{node.line()}"]
    inner = prefix if top else prefix + ("   " if last else "│  ")
    for number, child in enumerate(node.children):
        lines += _text(child, inner, number == len(node.children) - 1, top=False)
    return lines


def _box(node: Node) -> str:
    colour = _COLOURS[node.role]
    head = (
        f"<div style='border-left:4px solid {colour};padding:2px 8px;margin:3px 0;"
        f"background:#f6f8fa'><b style='color:{colour}'>{escape(node.role)}</b> "
        f"{escape(node.label)}<br><code title='{escape(node.digest)}'>"
        f"{escape(short_digest(node.digest, 16))}</code> · {escape(human_size(node.size))}"
        f" · <small>{escape(node.media_type)}</small></div>"
    )
    if not node.children:
        return f"<div class='hw-node hw-{node.role}'>{head}</div>"
    inner = "".join(_box(child) for child in node.children)
    return (
        f"<div class='hw-node hw-{node.role}'>{head}"
        f"<div style='margin-left:1.5em;border-left:1px dashed #d0d7de;padding-left:6px'>"
        f"{inner}</div></div>"
    )


class ImageMap(View):
    """A map as boxes: the top document, then one accordion section per entry."""

    def __init__(self, root: Node) -> None:
        self.root = root

    def __str__(self) -> str:
        return "\n".join(_text(self.root))

    def to_html(self) -> str:
        return _box(self.root)

    def widget(self) -> Any:
        import ipywidgets

        root = self.root
        if root.role not in ("index", "layout"):
            box = ipywidgets.HTML(_box(root))
        else:
            top = ipywidgets.HTML(
                _box(Node(root.role, root.media_type, root.digest, root.size, root.label))
            )
            sections = [ipywidgets.HTML(_box(child)) for child in root.children]
            titles = [f"{child.role} {child.label}" for child in root.children]
            accordion = ipywidgets.Accordion(children=sections, titles=titles)
            if sections:
                accordion.selected_index = 0
            box = ipywidgets.VBox([top, accordion])
        box.add_class("hw-image-map")
        return box


def image_map(what: Image | Node | Path | str) -> ImageMap:
    """Draw an image in memory, an OCI layout directory, or a registry reference."""
    if isinstance(what, Node):
        return ImageMap(what)
    if hasattr(what, "raw_manifest"):
        return ImageMap(map_image(what))
    if isinstance(what, str | os.PathLike) and (Path(what) / "index.json").is_file():
        return ImageMap(map_layout(what))
    return ImageMap(map_reference(str(what)))
