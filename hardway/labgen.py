"""Placeholder: being built."""

def register(sub):  # noqa: D103
    sub.add_parser("labgen", help="(being built)")
