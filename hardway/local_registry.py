"""Placeholder: being built."""

def register(sub):  # noqa: D103
    sub.add_parser("local_registry", help="(being built)")
