"""hardway.widgets.nstable
~~~~~~~~~~~~~~~~~~~~~~~

The namespace table: for each kind of namespace, the inode of the host's (this
kernel's process) and of the container's, read from ``/proc/<pid>/ns/*``. Equal
inodes, same namespace — the one test that tells what a container really shares
with its host (chapter 02).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hardway.isolation.namespaces import KINDS, ns_inodes
from hardway.widgets.view import View, escape

__all__ = ["NamespaceRow", "namespace_rows", "namespace_table"]

#: what each kind isolates, in the learner's words
ISOLATES = {
    "uts": "hostname",
    "pid": "process ids",
    "mnt": "mounts",
    "ipc": "SysV IPC, POSIX queues",
    "net": "network devices, ports",
    "user": "user and group ids",
    "cgroup": "cgroup view",
}


@dataclass(frozen=True)
class NamespaceRow:
    kind: str
    isolates: str
    host: int
    container: int

    @property
    def shared(self) -> bool:
        return self.host == self.container


def namespace_rows(host: Mapping[str, int], container: Mapping[str, int]) -> list[NamespaceRow]:
    """One row per kind both sides have, in :data:`~hardway.isolation.namespaces.KINDS` order.

    >>> [r.shared for r in namespace_rows({"uts": 1, "pid": 2}, {"uts": 1, "pid": 3})]
    [True, False]
    """
    return [
        NamespaceRow(kind, ISOLATES[kind], host[kind], container[kind])
        for kind in KINDS
        if kind in host and kind in container
    ]


class NamespaceTable(View):
    def __init__(self, rows: list[NamespaceRow]) -> None:
        self.rows = rows

    def __str__(self) -> str:
        lines = [f"{'namespace':<10} {'isolates':<24} {'host':>12} {'container':>12}  "]
        for r in self.rows:
            verdict = "shared" if r.shared else "own"
            lines.append(f"{r.kind:<10} {r.isolates:<24} {r.host:>12} {r.container:>12}  {verdict}")
        return "\n".join(lines)

    def to_html(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("namespace", "isolates", "host", "container", ""))
        body = ""
        for r in self.rows:
            colour = "#57606a" if r.shared else "#1a7f37"
            verdict = "shared with the host" if r.shared else "its own"
            body += (
                f"<tr><td><code>{escape(r.kind)}</code></td><td>{escape(r.isolates)}</td>"
                f"<td><code>{r.host}</code></td><td><code>{r.container}</code></td>"
                f"<td style='color:{colour}'><b>{verdict}</b></td></tr>"
            )
        return f"<table class='hw-namespaces'><tr>{head}</tr>{body}</table>"

    def widget(self) -> Any:
        import ipywidgets

        table = ipywidgets.HTML(self.to_html())
        table.add_class("hw-namespace-table")
        return table


def namespace_table(pid: int | Any, host: int | str = "self") -> NamespaceTable:
    """Compare *pid*'s namespaces (or a running :class:`~hardway.isolation.container.Container`'s)
    with *host*'s (default: this process)."""
    pid = getattr(pid, "pid", pid)
    return NamespaceTable(namespace_rows(ns_inodes(host), ns_inodes(pid)))
