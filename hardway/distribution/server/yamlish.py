"""hardway.distribution.server.yamlish
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

A minimal, dependency-free YAML writer: just enough to write the Distribution registry's
``config.yml`` (:mod:`hardway.distribution.server.config`). Why not PyYAML: that config is a few
nested mappings and lists of strings, integers and booleans, which fifty lines can write
in block style; the course then needs no extra package for it, and the output is the
same bytes on every machine, which matters because
:func:`hardway.distribution.server.local_registry.start`
compares the rendered text with the config on disk to decide whether to restart the
registry. Writing only, never reading: nothing here parses YAML.
"""

from __future__ import annotations

import json
import re

__all__ = ["to_yaml"]

_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./:-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"to_yaml: cannot write {type(value).__name__} {value!r}")


def to_yaml(value: object, indent: int = 0) -> str:
    """Block-style YAML for nested dicts and lists of str, int and bool.

    Strings that YAML could read as something else (``"0.1"``, ``"no"``, ``"10s"``) are
    double-quoted; that is all a registry config needs, so no PyYAML.

    >>> print(to_yaml({"version": "0.1", "http": {"addr": ":5000", "tls": False}}), end="")
    version: "0.1"
    http:
      addr: ":5000"
      tls: false
    >>> print(to_yaml({"headers": {"X-Content-Type-Options": ["nosniff"]}}), end="")
    headers:
      X-Content-Type-Options:
        - nosniff
    """
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_scalar(str(key))}:\n{to_yaml(item, indent + 2)}")
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                text = empty if isinstance(item, dict | list) else _scalar(item)
                lines.append(f"{pad}{_scalar(str(key))}: {text}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}- {to_yaml(item, indent + 2).lstrip()}")
            else:
                lines.append(f"{pad}- {_scalar(item)}\n")
    else:
        lines.append(f"{pad}{_scalar(value)}\n")
    return "".join(lines)
