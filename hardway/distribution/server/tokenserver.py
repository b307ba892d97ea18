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
certificate (``x5c``), as Distribution 2.8 expects. :func:`start_secured` starts the
course's registry in ``basic`` or ``token`` mode with it, for notebook 07 and the tests.

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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from hardway.distribution.server.config import RegistryConfig

__all__ = [
    "DEFAULT_USERS",
    "Rule",
    "SecuredRegistry",
    "TokenService",
    "decode_jwt",
    "hash_password",
    "new_signing_key",
    "sign_jwt",
    "start_secured",
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


# --- keys and JWTs ----------------------------------------------------------------------------


def new_signing_key(kind: str = "ec") -> tuple[Any, x509.Certificate]:
    """A fresh private key (P-256, or RSA 2048 with ``kind="rsa"``) and its self-signed cert."""
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hardway-token-service")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key, cert


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


#: logged-in users may push and pull everything; anonymous users nothing
DEFAULT_ACL = (Rule("*", "*", ("pull", "push", "delete")),)


class TokenService:
    """An HTTP token service: ``GET /token?service=…&scope=…`` with Basic credentials.

    :param htpasswd: users and bcrypt hashes
    :param acl: (optional) :class:`Rule` s; the first matching rule per scope grants
    :param lifetime: (optional) seconds a token lives (``expires_in``)
    """

    def __init__(
        self,
        htpasswd: Path | str,
        *,
        service: str = "hardway-registry",
        issuer: str = "hardway-token-service",
        acl: tuple[Rule, ...] = DEFAULT_ACL,
        lifetime: int = 300,
        key_kind: str = "ec",
    ) -> None:
        self.htpasswd = Path(htpasswd)
        self.service, self.issuer, self.acl, self.lifetime = service, issuer, acl, lifetime
        self.key, self.cert = new_signing_key(key_kind)
        self._server: ThreadingHTTPServer | None = None
        #: every request answered, as ``(account, scopes, status)``
        self.log: list[tuple[str, list[str], int]] = []

    def write_cert(self, path: Path | str) -> Path:
        """The registry's ``rootcertbundle``: the certificate whose key signs our tokens."""
        path = Path(path)
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def registry_config(self, port: int, cert: Path | str) -> RegistryConfig:
        """The config of a registry on ``port`` that trusts this (started) service: its
        realm, service and issuer, and our certificate, written to ``cert``."""
        from hardway.distribution.server.config import RegistryConfig

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
                service.log.append((account or "", scopes, status))
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


# --- the course's registry with auth -----------------------------------------------------------


@dataclass
class SecuredRegistry:
    """A running registry in ``basic`` or ``token`` mode (and its token service)."""

    url: str
    host: str
    port: int
    auth: str
    #: user → password: a secret, so never in the repr
    users: dict[str, str] = field(repr=False)
    token_service: TokenService | None

    def stop(self) -> None:
        from hardway.distribution.server import local_registry

        local_registry.stop(self.port)
        if self.token_service is not None:
            self.token_service.stop()


def start_secured(
    port: int, auth: str, *, users: dict[str, str] | None = None, directory: Path | str
) -> SecuredRegistry:
    """Start the course's registry on ``port`` with ``auth`` = ``"basic"`` or ``"token"``.

    ``directory`` keeps the htpasswd file and the token certificate.
    """
    from hardway.distribution.server import local_registry
    from hardway.distribution.server.config import RegistryConfig

    users = dict(DEFAULT_USERS if users is None else users)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(directory / "htpasswd", users)
    service = None
    if auth == "basic":
        config = RegistryConfig(port=port, auth="htpasswd", htpasswd=htpasswd)
    elif auth == "token":
        service = TokenService(htpasswd)
        service.start()
        config = service.registry_config(port, directory / "token.pem")
    else:
        raise ValueError(f"auth must be 'basic' or 'token', not {auth!r}")
    try:
        status = local_registry.start(port, config=config)
    except BaseException:
        if service is not None:
            service.stop()
        raise
    return SecuredRegistry(status.url, f"127.0.0.1:{port}", port, auth, users, service)


# --- as a process of its own (``registry start --auth token``) ---------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m hardway.distribution.server.tokenserver serve --htpasswd F --cert F --realm-file
    F``.

    Writes the certificate, starts listening on a free port of 127.0.0.1, then writes the
    realm URL to ``--realm-file`` (the starter waits for it) and serves until SIGTERM.
    """
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m hardway.distribution.server.tokenserver")
    parser.add_argument("action", choices=["serve"])
    parser.add_argument("--htpasswd", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--realm-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    service = TokenService(args.htpasswd)
    service.write_cert(args.cert)
    realm = service.start(port=args.port)
    tmp = args.realm_file.with_name(f".{args.realm_file.name}.{os.getpid()}")
    tmp.write_text(realm + "\n")
    os.replace(tmp, args.realm_file)
    print(f"token service: listening on {realm}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
