"""hardway.build.dockerignore
~~~~~~~~~~~~~~~~~~~~~~~~~~

The build context as Docker sends it: every file of the context directory except those
its ``.dockerignore`` names. Docker's rules (the ``patternmatcher`` of the Docker CLI):

* one pattern a line; ``#`` starts a comment line; blanks around a pattern are dropped;
* a pattern is cleaned like a path (``./a//b/`` is ``a/b``) and a leading ``/`` is
  dropped: every pattern is relative to the context's top, ``/secret`` and ``secret``
  alike (unlike ``.gitignore``, a bare ``secret`` does *not* match ``sub/secret``);
* ``*`` matches within one name, ``?`` one character of a name, ``[a-z]`` a class, and
  ``**`` any number of directories, none too (``**/*.log`` matches ``a.log``);
* a pattern that matches a directory excludes everything below it;
* ``!pattern`` is an exception: it brings a file back; **the last matching line wins**;
* ``.dockerignore`` and the ``Dockerfile`` may be excluded too: they are still read
  (the builder needs them) but then ``COPY`` never sees them;
* ``app.Dockerfile.dockerignore`` beside ``app.Dockerfile`` takes the place of the
  context's ``.dockerignore`` for that Dockerfile (BuildKit's rule).

:func:`send_context` makes that context — a copy without the ignored files, or the
directory itself when there is no ``.dockerignore`` — so an ignored file can reach
neither a layer nor a ``COPY``'s cache key (:func:`hardway.build.copyplan.copy_content`
hashes what is there to copy): changing it never misses the cache.

>>> rules = patterns("**/*.log\\n!keep.log\\n/secret.txt\\n")
>>> [(name, ignored(name, rules)) for name in ("a.log", "x/y.log", "keep.log", "secret.txt")]
[('a.log', True), ('x/y.log', True), ('keep.log', False), ('secret.txt', True)]
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IGNORE_FILE", "Pattern", "ignore_file", "ignored", "patterns", "send_context"]

#: the file in the context's top directory that lists what not to send
IGNORE_FILE = ".dockerignore"


@dataclass(frozen=True)
class Pattern:
    """One line of a ``.dockerignore``: its cleaned text, whether it is an exception
    (``!``), and the regular expression it compiles to."""

    text: str
    exception: bool
    regex: re.Pattern[str]

    def matches(self, name: str) -> bool:
        """Whether the pattern matches *name* or one of its parent directories."""
        if self.regex.fullmatch(name):
            return True
        parts = name.split("/")
        return any(self.regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts)))


def _regex(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern as a regular expression over ``/``-separated names.

    >>> bool(_regex("**/*.log").fullmatch("a.log")), bool(_regex("a/**/b").fullmatch("a/b"))
    (True, True)
    >>> bool(_regex("*.md").fullmatch("docs/x.md")), bool(_regex("a?c").fullmatch("a/c"))
    (False, False)
    """
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")  # any number of directories, none too
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append(f"[{'^' + body[1:] if body.startswith('^') else body}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def patterns(text: str) -> list[Pattern]:
    """The patterns of a ``.dockerignore``'s *text*, in order.

    >>> [(p.text, p.exception) for p in patterns("# note\\n ./a//b/ \\n!/c\\n\\n")]
    [('a/b', False), ('c', True)]
    """
    found = []
    for line in text.lstrip("\ufeff").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        if not line:
            continue
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line.lstrip("/")
        found.append(Pattern(line, exception, _regex(line)))
    return found


def ignored(name: str, rules: Sequence[Pattern]) -> bool:
    """Whether *name* (relative to the context, ``/``-separated) is left out: the last
    pattern that matches it, or a parent of it, decides."""
    result = False
    for rule in rules:
        if rule.matches(name):
            result = not rule.exception
    return result


def ignore_file(context: Path, dockerfile: Path | None = None) -> Path | None:
    """The ignore file that applies: ``NAME.dockerignore`` beside Dockerfile ``NAME``
    (BuildKit's rule, so each Dockerfile of a repository can have its own), else the
    context's ``.dockerignore``; ``None`` when there is neither."""
    candidates = [dockerfile.with_name(dockerfile.name + IGNORE_FILE)] if dockerfile else []
    return next((c for c in [*candidates, context / IGNORE_FILE] if c.is_file()), None)


def send_context(context: Path, into: Path, dockerfile: Path | None = None) -> Path:
    """The build context as Docker sends it: *context* itself when no ignore file
    applies (:func:`ignore_file`), else a copy in *into* (a new directory) without the
    ignored files. Links are copied as links, never followed; modes are kept; the copy
    makes no file outside *into*."""
    ignore = ignore_file(context, dockerfile)
    if ignore is None:
        return context
    rules = patterns(ignore.read_text(errors="replace"))
    may_reinclude = any(rule.exception for rule in rules)
    into.mkdir(parents=True)
    for top, dirs, files in os.walk(context):
        rel = os.path.relpath(top, context)
        prefix = "" if rel == "." else f"{rel}/"
        kept = []
        for name in sorted(dirs):
            if os.path.islink(os.path.join(top, name)):
                files.append(name)  # a link to a directory is copied as a link
            elif not ignored(prefix + name, rules):
                _make_dirs(context, into, prefix + name)
                kept.append(name)
            elif may_reinclude:  # an exception may bring back a file below it
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if not ignored(prefix + name, rules):
                _make_dirs(context, into, prefix.rstrip("/"))
                _copy_entry(Path(top) / name, into / (prefix + name))
    return into


def _make_dirs(context: Path, into: Path, rel: str) -> None:
    """Directory *rel* and its parents in the copy, with the context's modes (also for
    an ignored directory that holds a file an exception brought back)."""
    if not rel:
        return
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        name = "/".join(parts[:i])
        if not (into / name).is_dir():
            (into / name).mkdir()
            shutil.copymode(context / name, into / name)


def _copy_entry(source: Path, dest: Path) -> None:
    """One file, link or FIFO of the context into the copy."""
    st = os.lstat(source)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), dest)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(source, dest, follow_symlinks=False)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dest, stat.S_IMODE(st.st_mode))  # COPY refuses it, as before
