"""hardway.widgets: the data behind each picture on real images, layers, cgroups and
namespaces, and the widget trees built from it (no frontend needed to build them)."""

from __future__ import annotations

import doctest
import io
import os
import tarfile
import threading
from pathlib import Path

import ipywidgets
import pytest

import hardway.widgets.imagemap
import hardway.widgets.layertree
import hardway.widgets.meter
import hardway.widgets.nstable
import hardway.widgets.view
from hardway.distribution.registry import client_for, push
from hardway.errors import UnsafeLayerError
from hardway.image import apply, diff, layers, layout
from hardway.image.manifest import Index
from hardway.image.platform import Platform
from hardway.image.protocols import describe
from hardway.image.random import random_image
from hardway.isolation import cgroups
from hardway.isolation.limits import Limits
from hardway.isolation.stats import Stats
from hardway.widgets import cgroup_meter, image_map, layer_explorer, namespace_table
from hardway.widgets.imagemap import map_image, map_layout, map_reference
from hardway.widgets.layertree import layer_changes
from hardway.widgets.meter import CgroupMeter, reading
from hardway.widgets.nstable import namespace_rows

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: containers and cgroups")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize(
    "module",
    [
        hardway.widgets.view,
        hardway.widgets.layertree,
        hardway.widgets.imagemap,
        hardway.widgets.meter,
        hardway.widgets.nstable,
    ],
)
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0


def html_of(widget: ipywidgets.Widget) -> str:
    """Every HTML and label text in a widget tree, joined."""
    texts = []
    if isinstance(widget, ipywidgets.HTML | ipywidgets.Label):
        texts.append(widget.value)
    for child in getattr(widget, "children", ()):
        texts.append(html_of(child))
    return "\n".join(texts)


# -- the layer explorer ---------------------------------------------------------------


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def two_layers(tmp_path: Path) -> list[Path]:
    """Chapter 05's base and change: a file changed, one deleted, a directory emptied."""
    base, upper = tmp_path / "base", tmp_path / "upper"
    put(base / "etc/os-release", "one\n")
    put(base / "etc/motd", "hi\n")
    put(base / "var/cache/apt/pkgcache.bin", "cache\n")
    (base / "bin").mkdir()
    (base / "bin/sh").symlink_to("busybox")
    put(upper / "etc/os-release", "two\n")
    put(upper / "var/cache/fresh.db", "fresh\n")
    (upper / "bin").mkdir()
    (upper / "bin/sh").symlink_to("busybox")
    for tree in (base, upper):
        for path in tree.rglob("*"):
            os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    layers.write_layer(base, tmp_path / "base.tar.gz")
    diff.diff_layer(base, upper, tmp_path / "change.tar", compression="none")
    return [tmp_path / "base.tar.gz", tmp_path / "change.tar"]


def statuses(changes) -> dict[str, str]:
    return {e.path: e.status for e in changes.entries}


def test_layer_changes_marks_added_changed_and_deleted(two_layers: list[Path]) -> None:
    first, second = layer_changes(two_layers)
    assert set(statuses(first).values()) == {"added"}
    assert first.name == "base.tar.gz" and first.size == two_layers[0].stat().st_size
    marked = statuses(second)
    assert marked["etc/os-release"] == "changed"
    assert marked["etc/motd"] == "deleted"
    assert marked["var/cache/apt"] == marked["var/cache/apt/pkgcache.bin"] == "deleted"
    assert marked["var/cache/fresh.db"] == "added"
    assert marked["bin/sh"] == "kept"
    link = next(e for e in second.entries if e.path == "bin/sh")
    assert (link.kind, link.target, link.label()) == ("link", "busybox", "bin/sh -> busybox")
    assert second.count("deleted") == 3
    assert not any(".wh." in e.path for e in second.entries), "whiteouts are never entries"


def test_layer_changes_follow_the_applied_tree(two_layers: list[Path], tmp_path: Path) -> None:
    """What the explorer says is left equals what apply_layers really unpacks."""
    root = tmp_path / "root"
    root.mkdir()
    apply.apply_layers(two_layers, root)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*")}
    last = layer_changes(two_layers)[-1]
    assert {e.path for e in last.entries if e.status != "deleted"} == on_disk


def _tar(*entries: tuple[str, bytes, str]) -> io.BytesIO:
    """A tar of (name, type, link target) entries, files empty."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, target in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("kind", [tarfile.REGTYPE, tarfile.SYMTYPE])
def test_a_directory_replaced_by_a_file_loses_its_contents(tmp_path: Path, kind: bytes) -> None:
    """As apply_layers does: the lower directory goes, and everything under it."""
    lower = _tar(("d", tarfile.DIRTYPE, ""), ("d/x", tarfile.REGTYPE, ""))
    upper = _tar(("d", kind, "elsewhere" if kind == tarfile.SYMTYPE else ""))
    apply.apply_layers([lower, upper], tmp_path)
    lower.seek(0), upper.seek(0)
    last = layer_changes([lower, upper])[-1]
    assert statuses(last) == {"d": "changed", "d/x": "deleted"}
    assert {e.path for e in last.entries if e.status != "deleted"} == {
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
    }


def test_layer_changes_of_a_random_image() -> None:
    image = random_image(256, 3, seed=7)
    changes = layer_changes(image)
    assert [c.name for c in changes] == [str(layer.digest) for layer in image.layers()]
    assert [c.count("added") for c in changes] == [1, 1, 1]
    assert [len(c.entries) for c in changes] == [1, 2, 3]


def test_layer_changes_refuse_an_unsafe_name() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("../escape"), io.BytesIO())
    buf.seek(0)
    with pytest.raises(UnsafeLayerError):
        layer_changes([buf])


def test_layer_explorer_widget_has_a_tab_per_layer(two_layers: list[Path]) -> None:
    view = layer_explorer(two_layers)
    tabs = view.widget()
    assert isinstance(tabs, ipywidgets.Tab) and len(tabs.children) == 2
    assert tabs.titles[1].startswith("1: change.tar")
    assert "hw-deleted" in tabs.children[1].value and "motd" in tabs.children[1].value
    assert "- etc/motd" in str(view) and "~ etc/os-release" in str(view)
    bundle = view._repr_mimebundle_()
    assert bundle["text/plain"] == str(view) and WIDGET_VIEW in bundle


# -- the image map --------------------------------------------------------------------


def test_map_image_lists_config_and_layers() -> None:
    image = random_image(128, 2, seed=3)
    node = map_image(image)
    assert (node.role, node.digest) == ("manifest", str(image.digest()))
    assert [n.role for n in node.children] == ["config", "layer", "layer"]
    digests = [str(layer.digest) for layer in image.layers()]
    assert [n.digest for n in node.children[1:]] == digests
    assert node.children[0].label.startswith("linux/amd64, 2 diff_id(s)")


def test_map_layout_follows_an_index(tmp_path: Path) -> None:
    amd = random_image(64, 1, seed=1)
    arm = random_image(64, 2, seed=2, platform=Platform("arm64", "linux", "v8"))
    layout.write_index([amd, arm], tmp_path / "oci", tag="multi")
    layout.write_image(amd, tmp_path / "oci", tag="v1")
    root = map_layout(tmp_path / "oci")
    assert root.role == "layout" and [c.label for c in root.children] == ["tag multi", "tag v1"]
    index = root.children[0]
    assert index.role == "index"
    assert [c.label for c in index.children] == ["linux/amd64", "linux/arm64/v8"]
    assert [c.digest for c in index.children] == [str(amd.digest()), str(arm.digest())]
    assert len(index.children[1].children) == 3  # config + 2 layers
    everything = {n.digest for n in root.walk()}
    assert {str(layer.digest) for layer in arm.layers()} <= everything


def test_image_map_widget_shows_the_digests(tmp_path: Path) -> None:
    image = random_image(64, 2, seed=5)
    layout.write_image(image, tmp_path / "oci", tag="v1")
    view = image_map(tmp_path / "oci")
    tree = view.widget()
    assert isinstance(tree, ipywidgets.VBox)
    accordion = tree.children[1]
    assert isinstance(accordion, ipywidgets.Accordion) and accordion.titles == ("manifest tag v1",)
    shown = html_of(tree)
    for digest in [image.digest(), *(layer.digest for layer in image.layers())]:
        assert str(digest) in shown  # the full digest, in the box's title
    assert str(image.digest())[:19] in str(view)


def test_map_reference_reads_the_registry(registry) -> None:
    host = registry.url.removeprefix("http://")
    one, two = (
        random_image(64, 1, seed=11),
        random_image(64, 1, seed=12, platform=Platform("arm64", "linux")),
    )
    repo = f"{host}/widgets/map"
    for image in (one, two):
        push(image, f"{repo}@{image.digest()}")
    index_bytes = Index(tuple(describe([one, two]))).to_json()
    with client_for(f"{repo}:v1", push=True) as client:
        client.put_manifest("widgets/map", "v1", index_bytes, Index().media_type)
    node = map_reference(f"{repo}:v1")
    assert node.role == "index" and len(node.children) == 2
    assert node.children[1].children[1].digest == str(two.layers()[0].digest)
    assert "arm64" in str(image_map(f"{repo}:v1"))


# -- the namespace table --------------------------------------------------------------


def test_namespace_rows_compare_inodes() -> None:
    rows = namespace_rows({"uts": 1, "pid": 2, "net": 3}, {"uts": 1, "pid": 5, "net": 3})
    assert [(r.kind, r.shared) for r in rows] == [("uts", True), ("pid", False), ("net", True)]


def test_namespace_table_of_this_process_shares_everything() -> None:
    view = namespace_table(os.getpid())
    assert view.rows and all(r.shared for r in view.rows)
    assert "own" not in str(view).split("\n", 1)[1]


@needs_root
def test_namespace_table_of_a_container(busybox_rootfs: Path) -> None:
    from hardway.isolation.container import start
    from hardway.isolation.namespaces import Isolation

    with start(Isolation.container(busybox_rootfs, "nstable"), ["sleep", "30"]) as box:
        view = namespace_table(box)
        inside = box.namespaces()
    own = {r.kind for r in view.rows if not r.shared}
    assert own == {"uts", "pid", "mnt", "ipc", "net", "cgroup"}
    assert [r.container for r in view.rows] == [inside[r.kind] for r in view.rows]
    assert "its own" in html_of(view.widget())


# -- the cgroup meter -----------------------------------------------------------------


def test_reading_is_cpu_time_over_wall_time() -> None:
    before = Stats("v1", cpu_usage_usec=1_000_000)
    now = Stats("v1", memory_current=10 << 20, memory_max=40 << 20, cpu_usage_usec=1_100_000)
    got = reading(before, now, 2.0, 0.4, 0.5)
    assert (got.cpus, got.cpu_fraction, got.memory_fraction) == (0.25, 0.5, 0.25)
    first = reading(None, now, 0.0, 0.0, None)
    assert (first.cpus, first.cpu_fraction) == (None, None)


def test_meter_widget_follows_readings() -> None:
    meter = CgroupMeter(Limits(memory="32M", cpus=0.5), ["sh"])
    box = meter.widget()
    meter.add(reading(None, Stats("v2", memory_current=8 << 20, memory_max=32 << 20), 0, 0, 0.5))
    assert box.children[0].children[0].value == 0.25
    assert "8.0 MiB of 32.0 MiB" in html_of(box)
    assert "memory peak 8.0 MiB of 32.0 MiB" in str(meter)


def test_a_sampler_error_is_shown_in_the_status() -> None:
    class Broken:
        def stats(self) -> Stats:
            raise OSError("memory.current is gone")

    meter = CgroupMeter(Limits(memory="32M"), ["true"])
    meter.sample(Broken(), threading.Event(), 0.01)
    assert "memory.current is gone" in str(meter)


@needs_root
def test_meter_on_a_real_container(busybox_rootfs: Path) -> None:
    work = ["sh", "-c", "yes > /dev/null & x=$(head -c 8000000 /dev/zero | tr '\\0' x); kill $!"]
    threads = threading.active_count()
    meter = cgroup_meter(
        busybox_rootfs, work, Limits(memory="64M", cpus=0.5), interval=0.05, show=False
    )
    assert meter.result is not None and meter.result.returncode == 0, meter.result
    assert meter.error is None
    assert meter.readings and meter.peak("memory") > 0
    assert all(r.memory_max == 64 << 20 for r in meter.readings)
    assert "ended with status 0" in str(meter)
    assert threading.active_count() == threads, "the sampler thread is gone"
    assert not [g for g in cgroups.find_groups() if "meter" in g.name], "the group is removed"


@needs_root
def test_meter_stops_a_container_that_outlives_its_timeout(busybox_rootfs: Path) -> None:
    meter = cgroup_meter(busybox_rootfs, ["sleep", "30"], Limits(pids=8), timeout=0.3, show=False)
    assert meter.result.returncode == -1  # still running when the timeout passed: then killed
    assert not [g for g in cgroups.find_groups() if "meter" in g.name]


@needs_root
def test_meter_cleans_up_when_the_cell_is_interrupted(busybox_rootfs: Path) -> None:
    """Ctrl-C in a notebook is a KeyboardInterrupt in the main thread, mid-wait."""
    import _thread

    threads = threading.active_count()
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        cgroup_meter(busybox_rootfs, ["sleep", "30"], Limits(pids=8), show=False)
    timer.join()
    assert threading.active_count() == threads, "the sampler thread is gone"
    assert not [g for g in cgroups.find_groups() if "meter" in g.name], "the group is removed"
