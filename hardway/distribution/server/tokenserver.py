"""hardway.distribution.server.tokenserver
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Docker Hub does not check passwords at the registry. The registry answers ``401`` with
``Bearer realm="https://auth.docker.io/token",service=…,scope=…``; the client asks that
*token service* for a token, with its password, for exactly those scopes; the service
returns a JWT that lists the granted actions and is signed with a key the registry
trusts (its certificate is in the registry's ``rootcertbundle``). The registry checks
the signature, the issuer, the audience (``service``) and the actions — and never sees
a password.

This module is that token service, small enough to read: users come from an htpasswd
file (bcrypt, the same file Distribution's ``htpasswd`` mode reads), a tiny ACL says who
may do what, and tokens are ES256 JWTs (RS256 with an RSA key) whose header carries the
certificate (``x5c``), as Distribution 2.8 expects. ``registry start --auth token``
(:func:`hardway.distribution.server.local_registry.start_mode`) runs it as a process of
its own (:func:`main`), with its files next to the registry's
(:mod:`hardway.distribution.server.modes`); ``tools/room_registry.py`` serves it in a
thread of its own process.

>>> claims = {"sub": "learner"}
>>> key, cert = new_signing_key()
>>> token = sign_jwt(claims, key, cert)
>>> token.count("."), decode_jwt(token)["sub"]
(2, 'learner')
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from hardway.distribution.server.config import ISSUER, SERVICE, RegistryConfig
from hardway.sys.atomic import write_atomic

__all__ = [
    "DEFAULT_USERS",
    "Rule",
    "TokenService",
    "check_htpasswd",
    "decode_jwt",
    "hash_password",
    "load_signing_key",
    "new_signing_key",
    "save_signing_key",
    "sign_jwt",
    "write_htpasswd",
]

#: the course's one user (a teaching registry on 127.0.0.1, not a secret)
DEFAULT_USERS = {"learner": "containers"}


# --- passwords -----------------------------------------------------------------------------


def hash_password(password: str, *, cost: int = 5) -> str:
    """A bcrypt hash (``$2b$…``), the only kind Distribution's htpasswd mode accepts.

    A low cost keeps a notebook cell fast; this registry only listens on 127.0.0.1.
    """
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def _check_password(hashed: str, password: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # not a bcrypt hash at all
        return False


def write_htpasswd(path: Path | str, users: dict[str, str]) -> Path:
    """Write ``user:bcrypt`` lines for ``users`` (mode 0600)."""
    path = Path(path)
    path.write_text("".join(f"{u}:{hash_password(p)}\n" for u, p in users.items()))
    path.chmod(0o600)
    return path


def _read_htpasswd(path: Path) -> dict[str, str]:
    lines = (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    return {user: hashed.strip() for user, hashed in lines}


def check_htpasswd(path: Path | str, users: dict[str, str]) -> bool:
    """Does the htpasswd file ``path`` hold exactly ``users``, with these passwords?"""
    try:
        known = _read_htpasswd(Path(path))
    except OSError:
        return False
    return known.keys() == users.keys() and all(
        _check_password(known[user], password) for user, password in users.items()
    )


# --- keys and JWTs ----------------------------------------------------------------------------


def new_signing_key(kind: str = "ec") -> tuple[Any, x509.Certificate]:
    """A fresh private key (P-256, or RSA 2048 with ``kind="rsa"``) and its self-signed cert."""
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    return key, _certificate(key)


def save_signing_key(key: Any, path: Path | str) -> Path:
    """Write ``key`` to ``path`` as unencrypted PEM (mode 0600), for ``serve --key``."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, mode=0o600)
    return Path(path)


def load_signing_key(path: Path | str) -> Any:
    """The private key in the PEM file ``path`` (unencrypted), to sign tokens with."""
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def _certificate(key: Any) -> x509.Certificate:
    """A self-signed certificate for ``key``: what the registry's ``rootcertbundle`` holds."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, Any], key: Any, cert: x509.Certificate) -> str:
    """``header.claims.signature``, each base64url; ES256 for EC keys, RS256 for RSA."""
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    der = cert.public_bytes(serialization.Encoding.DER)
    header = {"typ": "JWT", "alg": alg, "x5c": [base64.b64encode(der).decode()]}
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    ).encode()
    if alg == "ES256":  # JOSE wants r || s, 32 bytes each, not the DER that cryptography gives
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64(signature)}"


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a JWT, *unverified* (to look inside one; the registry verifies)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# --- the service ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``account`` (a name, ``*`` for any logged-in user, ``""`` for anonymous) may do
    ``actions`` on repositories matching ``repository`` (a glob)."""

    account: str
    repository: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.account}:{self.repository}:{','.join(self.actions)}"

    @classmethod
    def parse(cls, text: str) -> Rule:
        """The rule ``ACCOUNT:REPOSITORY:ACTION,…`` (what ``str()`` gives).

        >>> Rule.parse("*:locked/*:pull")
        Rule(account='*', repository='locked/*', actions=('pull',))
        >>> str(Rule.parse(":public/*:pull"))
        ':public/*:pull'
        """
        account, repository, actions = text.split(":")
        return cls(account, repository, tuple(actions.split(",")))


#: logged-in users may push and pull everything; anonymous users nothing
DEFAULT_ACL = (Rule("*", "*", ("pull", "push", "delete")),)


class TokenService:
    """An HTTP token service: ``GET /token?service=…&scope=…`` with Basic credentials.

    :param htpasswd: users and bcrypt hashes
    :param acl: (optional) :class:`Rule` s; the first matching rule per scope grants
    :param lifetime: (optional) seconds a token lives (``expires_in``)
    :param key: (optional) the private key that signs tokens; default: a fresh P-256 key
    :param on_answer: (optional) called with ``(account, scopes, status)`` for every
        request answered (``""``: anonymous)
    """

    def __init__(
        self,
        htpasswd: Path | str,
        *,
        service: str = SERVICE,
        issuer: str = ISSUER,
        acl: tuple[Rule, ...] = DEFAULT_ACL,
        lifetime: int = 300,
        key: Any = None,
        on_answer: Callable[[str, list[str], int], None] | None = None,
    ) -> None:
        self.htpasswd = Path(htpasswd)
        self.service, self.issuer, self.acl, self.lifetime = service, issuer, acl, lifetime
        self.key = ec.generate_private_key(ec.SECP256R1()) if key is None else key
        self.cert = _certificate(self.key)
        self.on_answer = on_answer
        self._server: ThreadingHTTPServer | None = None

    def write_cert(self, path: Path | str) -> Path:
        """The registry's ``rootcertbundle``: the certificate whose key signs our tokens."""
        path = Path(path)
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def registry_config(self, port: int, cert: Path | str) -> RegistryConfig:
        """The config of a registry on ``port`` that trusts this (started) service: its
        realm, service and issuer, and our certificate, written to ``cert``."""
        return RegistryConfig(
            port=port,
            auth="token",
            realm=self.realm,
            service=self.service,
            issuer=self.issuer,
            rootcertbundle=self.write_cert(cert),
        )

    def grant(self, account: str, scope: str) -> dict[str, Any] | None:
        """The ``access`` entry for one requested scope, or ``None`` if nothing is allowed."""
        kind, _, rest = scope.partition(":")
        name, _, wanted = rest.rpartition(":")
        for rule in self.acl:
            who_ok = rule.account == account or (rule.account == "*" and account)
            if who_ok and fnmatch.fnmatchcase(name, rule.repository):
                asked = sorted(set(wanted.split(",")))  # granted in one order, however asked
                actions = [a for a in asked if a in rule.actions or "*" in rule.actions]
                return {"type": kind, "name": name, "actions": actions} if actions else None
        return None

    def issue(self, account: str, scopes: list[str]) -> dict[str, Any]:
        """The JSON answer: a token for the granted part of ``scopes``."""
        now = int(time.time())
        access = [a for s in scopes if (a := self.grant(account, s))]
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = sign_jwt(claims, self.key, self.cert)
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat()
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime,
            "issued_at": issued,
        }

    def authenticate(self, header: str | None) -> str | None:
        """The account for an ``Authorization`` header: ``""`` anonymous, ``None`` refused."""
        if not header:
            return ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode(errors="replace").partition(":")
        hashed = _read_htpasswd(self.htpasswd).get(user)
        return user if hashed and _check_password(hashed, password) else None

    # --- serving -------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the realm URL (``http://…/token``)."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                scopes = [s for item in query.get("scope", []) for s in item.split()]
                account = service.authenticate(self.headers.get("Authorization"))
                if url.path != "/token":
                    status, body = 404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]}
                elif (
                    account is None or query.get("service", [service.service])[0] != service.service
                ):
                    status, body = (
                        401,
                        {"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]},
                    )
                else:
                    status, body = 200, service.issue(account, scopes)
                if service.on_answer is not None:
                    service.on_answer(account or "", scopes, status)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # quiet: never print a request line
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.realm

    @property
    def realm(self) -> str:
        if self._server is None:
            raise RuntimeError("the token service is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- as a process of its own (``registry start --auth token``) ---------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m hardway.distribution.server.tokenserver serve --htpasswd F --cert F
    --realm-file F [--key F] [--rule ACCOUNT:REPOSITORY:ACTIONS …]``.

    Writes the certificate, starts listening on a free port of 127.0.0.1, then writes the
    realm URL to ``--realm-file`` (the starter waits for it) and serves until SIGTERM,
    printing one line per request answered: its status, account and scopes (a token or
    a password, never).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hardway.distribution.server.tokenserver")
    parser.add_argument("action", choices=["serve"])
    parser.add_argument("--htpasswd", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--realm-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", type=load_signing_key, help="PEM private key to sign with")
    parser.add_argument("--rule", type=Rule.parse, action="append", help="default: '*:*:…'")
    args = parser.parse_args(argv)
    acl = tuple(args.rule) if args.rule else DEFAULT_ACL
    service = TokenService(args.htpasswd, acl=acl, key=args.key, on_answer=_print_answer)
    service.write_cert(args.cert)
    realm = service.start(port=args.port)
    write_atomic(args.realm_file, f"{realm}\n".encode())
    print(f"token service: listening on {realm}", flush=True)
    threading.Event().wait()
    return 0


def _print_answer(account: str, scopes: list[str], status: int) -> None:
    print(f"token service: {status} {account or '(anonymous)'} {' '.join(scopes)}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
