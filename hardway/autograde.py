"""Placeholder: being built."""

def register(sub):  # noqa: D103
    sub.add_parser("autograde", help="(being built)")
