"""hardway.distribution.commands
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The image commands of ``python -m hardway``, with skopeo's image names (see
:mod:`hardway.distribution.transports`), so a command line can be checked against skopeo's::

    python -m hardway image from-dir ROOTFS oci:build/hello:v1 --cmd '["/hello"]'
    python -m hardway copy oci:build/hello:v1 docker-archive:hello.tar:hello:v1
    python -m hardway inspect docker-archive:hello.tar          # manifest and config
    python -m hardway unpack oci:build/hello:v1 rootfs/         # every layer, safely
    python -m hardway copy oci:build/hello:v1 docker://127.0.0.1:5000/hello:v1   # push
    python -m hardway pull 127.0.0.1:5000/hello:v1 rootfs/      # pull and unpack
    python -m hardway copy --all docker://HOST/multi:v1 docker://HOST/copy:v1  # an index
    python -m hardway delete docker://127.0.0.1:5000/hello:v1   # the manifest, every tag
    python -m hardway login 127.0.0.1:5000 --username learner   # then no --creds needed
    python -m hardway logout 127.0.0.1:5000

Registry names take ``--creds USER:PASS``, ``--authfile FILE`` and ``--insecure``; without
``--creds``, credentials come from the docker config file that ``login`` writes
(:mod:`hardway.distribution.credentials`: ``auths``, ``credHelpers``, ``credsStore``).

``unpack`` and ``pull`` build the root filesystem next to its place and rename it in
only when every layer's digest and diff_id were checked, so no byte of a corrupt or
tampered layer reaches it (:func:`hardway.image.unpack.unpack_image`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from hardway.distribution.transports import read_image, write_image
from hardway.errors import (
    BadImageNameError,
    BadReferenceError,
    HardwayError,
    InvalidImageError,
)
from hardway.image.config import image_id
from hardway.image.mediatypes import layer_media_type
from hardway.image.platform import Platform

__all__ = ["register"]


def _words(text: str) -> list[str]:
    """``'["sh", "-c"]'`` (JSON, like a Dockerfile) or ``'sh -c'`` (shell words)."""
    if text.lstrip().startswith("["):
        try:
            words = json.loads(text)
        except ValueError as exc:
            raise InvalidImageError(f"{text!r} is not a JSON array: {exc}") from None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise InvalidImageError(f"{text!r} should be a JSON array of strings")
        return words
    return shlex.split(text)


def _pairs(items: list[str], what: str) -> list[str]:
    for item in items:
        if "=" not in item or item.startswith("="):
            raise InvalidImageError(f"{what} {item!r} is not KEY=VALUE", fix=f"--{what} KEY=VALUE")
    return items


def _platform(text: str | None) -> Platform | None:
    return Platform.parse(text) if text else None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``image from-dir``, ``copy``, ``unpack`` and ``inspect``."""
    image = sub.add_parser("image", help="build an image from a directory (chapter 06)")
    verbs = image.add_subparsers(dest="verb", required=True, metavar="VERB")
    build = verbs.add_parser(
        "from-dir",
        help="one directory as one layer, on --base or on nothing",
        description="Build an image whose top layer is ROOTFS and write it to DEST "
        "(oci:DIR[:TAG] or docker-archive:FILE[:REF]). The same directory gives the same "
        "digests: times are SOURCE_DATE_EPOCH, else 1970.",
    )
    build.add_argument("rootfs", type=Path)
    build.add_argument("dest")
    build.add_argument("--base", metavar="IMAGE", help="the image to build on")
    build.add_argument("--entrypoint", help='JSON array (\'["/bin/sh","-c"]\') or words')
    build.add_argument("--cmd", help="JSON array or words")
    build.add_argument("--env", action="append", default=[], metavar="K=V")
    build.add_argument("--workdir", metavar="DIR")
    build.add_argument("--user", metavar="USER[:GROUP]")
    build.add_argument("--label", action="append", default=[], metavar="K=V")
    build.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]")
    build.add_argument("--volume", action="append", default=[], metavar="DIR")
    build.add_argument("--format", choices=("oci", "docker"), default="oci")
    build.add_argument("--compression", choices=("gzip", "zstd", "none"), default="gzip")
    build.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this machine")
    build.add_argument("--source-date-epoch", type=int, metavar="SECONDS")
    build.set_defaults(func=_from_dir)

    copy = sub.add_parser("copy", help="copy an image between oci:, docker-archive: and docker://")
    copy.add_argument("src")
    copy.add_argument("dest")
    copy.add_argument("--platform", help="from a multi-platform image, take this one")
    copy.add_argument(
        "--all",
        action="store_true",
        help="copy a multi-platform image whole: every manifest and the index, byte for byte "
        "(oci: and docker:// only; without it, the one for --platform or this machine)",
    )
    copy.add_argument(
        "--archive-format",
        choices=("legacy", "oci"),
        default="legacy",
        help="docker-archive: to write: legacy (<id>/layer.tar, as docker save did until "
        "Docker 25, read by every docker load) or oci (Docker 25+: an OCI layout plus "
        "manifest.json)",
    )
    _registry_flags(copy)
    copy.set_defaults(func=_copy)

    unpack = sub.add_parser("unpack", help="apply every layer of an image to a directory")
    unpack.add_argument("image")
    unpack.add_argument("rootfs", type=Path)
    unpack.add_argument("--platform")
    _registry_flags(unpack)
    unpack.set_defaults(func=_unpack)

    pull = sub.add_parser("pull", help="pull REF from a registry and unpack it into ROOTFS")
    pull.add_argument("ref", help="a reference: 127.0.0.1:5000/hello:v1, busybox, …")
    pull.add_argument("rootfs", type=Path)
    pull.add_argument("--platform")
    _registry_flags(pull)
    pull.set_defaults(func=_pull)

    inspect = sub.add_parser("inspect", help="show an image's digest, manifest and config")
    inspect.add_argument("image")
    _registry_flags(inspect)
    show = inspect.add_mutually_exclusive_group()
    show.add_argument("--raw", action="store_true", help="the manifest's exact bytes")
    show.add_argument("--config", action="store_true", help="the config's exact bytes")
    inspect.add_argument("--platform")
    inspect.set_defaults(func=_inspect)

    delete = sub.add_parser(
        "delete",
        help="delete an image's manifest from a registry (its blobs go at garbage collection)",
    )
    delete.add_argument("image", help="docker://HOST/REPO:TAG or …@sha256:…")
    _registry_flags(delete)
    delete.set_defaults(func=_delete)

    login = sub.add_parser(
        "login",
        help="check a user and password on a registry and remember them (like skopeo login)",
        description="Checks the credentials against REGISTRY, then writes them where "
        "docker does: through the credential helper the config file names for REGISTRY, "
        "else into its 'auths' (base64, mode 0600). The file: --authfile, else "
        "$REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json.",
    )
    login.add_argument("registry", help="a host: 127.0.0.1:5000, docker.io, …")
    login.add_argument("--username", "-u", help="default: asked")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (no prompt)"
    )
    _registry_flags(login)
    login.set_defaults(func=_login)

    logout = sub.add_parser("logout", help="forget the credentials of a registry")
    logout.add_argument("registry")
    logout.add_argument("--authfile", type=Path, metavar="FILE", help="a docker config.json")
    logout.set_defaults(func=_logout)


def _registry_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry (docker://) options")
    group.add_argument("--creds", metavar="USER:PASS", help="default: docker's config.json")
    group.add_argument("--authfile", type=Path, metavar="FILE", help="a docker config.json")
    group.add_argument(
        "--insecure", action="store_true", default=None, help="plain HTTP (default: only loopback)"
    )
    group.add_argument(
        "--attempts",
        type=_attempts,
        metavar="N",
        help="tries per request after resets, timeouts, 5xx, 429 (default: 5)",
    )


def _attempts(text: str) -> int:
    """``--attempts N``: tries in all, the first included, so at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a number of tries, 1 or more, not {text!r}")
    return int(text)


def _registry_options(args: argparse.Namespace):
    from hardway.distribution.credentials import Credentials
    from hardway.distribution.options import using

    creds = Credentials.parse(args.creds) if args.creds else None
    retry = {"attempts": args.attempts} if args.attempts else {}
    return using(credentials=creds, authfile=args.authfile, insecure=args.insecure, **retry)


def _from_dir(args: argparse.Namespace) -> int:
    from hardway.image.mutate import from_dir  # only this command builds: start-up time

    settings: dict = {
        "env": _pairs(args.env, "env"),
        "labels": dict(p.split("=", 1) for p in _pairs(args.label, "label")),
        "exposed_ports": args.expose,
        "volumes": args.volume,
        "working_dir": args.workdir,
        "user": args.user,
    }
    if args.entrypoint is not None:
        settings["entrypoint"] = _words(args.entrypoint)
    if args.cmd is not None:
        settings["cmd"] = _words(args.cmd)
    layer_media_type(args.format, args.compression)  # fail now, not after writing the layer
    platform = _platform(args.platform)
    base = read_image(args.base, platform=platform) if args.base else None
    with tempfile.TemporaryDirectory(prefix="hardway-build-") as work:
        built = from_dir(
            args.rootfs,
            work,
            base=base,
            fmt=args.format,
            compression=args.compression,
            platform=platform,
            source_date_epoch=args.source_date_epoch,
            **settings,
        )
        write_image(built, args.dest)
    _report(args.dest, built)
    return 0


def _report(name: str, image) -> None:
    print(name)
    print(f"  manifest  {image.digest()}")
    print(f"  image ID  {image_id(image.raw_config())}")


def _copy(args: argparse.Namespace) -> int:
    from hardway.distribution.transports import parse_image_name, read_all, write_all
    from hardway.image import archive

    with _registry_options(args):
        if args.all:
            raw, images = read_all(args.src)
            digest = write_all(raw, images, args.dest)
            print(args.dest)
            print(f"  index     {digest} ({len(images)} manifests)")
            return 0
        image = read_image(args.src, platform=_platform(args.platform))
        dest = parse_image_name(args.dest)
        if dest.transport == "docker-archive" and args.archive_format == "oci":
            archive.write_image(
                image, Path(dest.path), tags=[dest.ref] if dest.ref else [], layout="oci"
            )
        else:
            write_image(image, dest)
    _report(args.dest, image)
    return 0


def _delete(args: argparse.Namespace) -> int:
    from hardway.distribution import registry
    from hardway.distribution.transports import parse_image_name

    name = parse_image_name(args.image)
    if name.transport != "docker":
        raise BadImageNameError(
            f"delete works on docker://REF, not {name.transport}:",
            fix="delete docker://HOST/REPO:TAG",
        )
    with _registry_options(args):
        digest = registry.delete(name.path[2:])
    print(f"deleted {digest} (and every tag on it) from {name.path[2:]}")
    return 0


def _registry_host(text: str) -> str:
    """``https://127.0.0.1:5000/`` → ``127.0.0.1:5000``; Docker Hub's names → docker.io."""
    host = text.split("://", 1)[-1].split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    if not host:
        raise BadReferenceError(f"{text!r} names no registry", fix="login 127.0.0.1:5000")
    return host


def _login(args: argparse.Namespace) -> int:
    import getpass

    from hardway.distribution import registry
    from hardway.distribution.credentials import Credentials, store_credentials

    host = _registry_host(args.registry)
    username = args.username or input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise HardwayError(
            "login needs a user name and a password",
            fix=f"login {host} --username NAME --password-stdin",
        )
    credentials = Credentials(username, password)
    with _registry_options(args):
        registry.login(host, credentials)
    where = store_credentials(host, credentials, authfile=args.authfile)
    print(f"Login Succeeded! ({username} on {host}, stored in {_shown(where)})")
    return 0


def _shown(where: str) -> str:
    """A path relative to the home directory, as ``~/…`` (no absolute paths in outputs)."""
    home = str(Path.home())
    return "~" + where[len(home) :] if where.startswith(home + "/") else where


def _logout(args: argparse.Namespace) -> int:
    from hardway.distribution.credentials import erase_credentials

    host = _registry_host(args.registry)
    if erase_credentials(host, authfile=args.authfile):
        print(f"Removed login credentials for {host}")
        return 0
    print(f"Not logged in to {host}", file=sys.stderr)
    return 1


def _pull(args: argparse.Namespace) -> int:
    from hardway.distribution.reference import parse_reference

    args.image = f"docker://{parse_reference(args.ref)}"
    return _unpack(args)


def _unpack(args: argparse.Namespace) -> int:
    from hardway.image.unpack import unpack_image

    with _registry_options(args):
        image = read_image(args.image, platform=_platform(args.platform))
        unpack_image(image, args.rootfs)
    print(
        f"unpacked {len(image.manifest().layers)} layer(s) of {image.digest()} into {args.rootfs}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    with _registry_options(args):
        image = read_image(args.image, platform=_platform(args.platform))
    if args.raw or args.config:
        sys.stdout.buffer.write(image.raw_manifest() if args.raw else image.raw_config())
        sys.stdout.buffer.flush()
        return 0
    doc = {
        "Name": args.image,
        "Digest": str(image.digest()),
        "ImageID": str(image_id(image.raw_config())),
        "Manifest": json.loads(image.raw_manifest()),
        "Config": json.loads(image.raw_config()),
    }
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0
