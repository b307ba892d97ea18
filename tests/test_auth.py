"""Auth: WWW-Authenticate parsing, scopes, docker config.json and credential helpers, and
round trips against the real registry in htpasswd (basic) and token mode, with the
course's token service, judged by skopeo."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from requests.adapters import BaseAdapter

from hardway.cli import main
from hardway.distribution import registry as client
from hardway.distribution.auth import BearerAuth, merge_scopes, parse_challenges
from hardway.distribution.credentials import Credentials, load_credentials
from hardway.distribution.errors import UnauthorizedError
from hardway.distribution.server import local_registry
from hardway.distribution.server.config import SERVICE
from hardway.distribution.server.paths import RegistryPaths
from hardway.distribution.server.tokenserver import decode_jwt
from hardway.image.digest import sha256_digest
from hardway.image.random import random_image

GOOD = Credentials("learner", "containers")


def test_challenges_with_quoted_commas_escapes_and_several_schemes() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="reg",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope", '
        'Basic realm="say \\"hi\\", please"'
    )
    bearer, basic = parse_challenges(header)
    assert bearer.scheme == "bearer" and bearer.params["realm"] == "https://auth.example/token"
    assert bearer.params["scope"] == "repository:a/b:pull,push repository:c:pull"
    assert bearer.params["error"] == "insufficient_scope"
    assert basic.params == {"realm": 'say "hi", please'}
    assert parse_challenges("Basic realm=hardway") == parse_challenges('basic   realm="hardway"')


def test_scopes_merge_with_push_first() -> None:
    merged = merge_scopes("repository:base:pull", "repository:app:pull", ["repository:app:push"])
    assert merged == ["repository:app:pull,push", "repository:base:pull"]


def test_secrets_never_show_in_reprs() -> None:
    creds = Credentials("me", "hunter2", identity_token="idtok")
    auth = BearerAuth(creds)
    for text in (repr(creds), repr(auth), str(creds)):
        assert "hunter2" not in text and "idtok" not in text


def test_config_json_auths_identity_tokens_and_credential_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread host\n[ "$1" = get ] || exit 1\n'
        'echo "{\\"ServerURL\\":\\"$host\\",\\"Username\\":\\"h\\",\\"Secret\\":\\"s-$host\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{Path('/usr/bin')}:{Path('/bin')}")
    config = {
        "auths": {
            "127.0.0.1:5000": {"auth": base64.b64encode(b"learner:pw:with:colons").decode()},
            "https://index.docker.io/v1/": {"identitytoken": "refresh-me"},
        },
        "credHelpers": {"helped.example": "fake"},
        "credsStore": "fake",
    }
    authfile = tmp_path / "config.json"
    authfile.write_text(json.dumps(config))
    assert load_credentials("127.0.0.1:5000", authfile=authfile) == Credentials(
        "learner", "pw:with:colons"
    )
    assert load_credentials("docker.io", authfile=authfile).identity_token == "refresh-me"
    assert load_credentials("helped.example", authfile=authfile) == Credentials(
        "h", "s-helped.example"
    )
    assert load_credentials("other.example", authfile=authfile).password == "s-other.example"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(request):
    from conftest import find_free_port

    started = local_registry.start_mode(find_free_port(), request.param)
    yield started
    local_registry.stop(started.port)


def test_round_trip_with_credentials_and_a_clear_error_without(
    secured, tmp_path: Path, capsys
) -> None:
    image = random_image(5000, 2, seed=801)
    ref = f"{secured.host}/app/auth:v1"
    assert client.push(image, ref, credentials=GOOD) == image.digest()
    assert client.pull(ref, credentials=GOOD).digest() == image.digest()
    with pytest.raises(UnauthorizedError) as anonymous:
        client.pull(ref, credentials=Credentials())
    assert anonymous.value.status_code == 401
    with pytest.raises(UnauthorizedError, match="refused") as wrong:
        client.pull(ref, credentials=Credentials("learner", "wrong"))
    assert "wrong" not in str(wrong.value), "the password is never printed"
    authfile = tmp_path / "config.json"
    entry = base64.b64encode(b"learner:containers").decode()
    authfile.write_text(json.dumps({"auths": {secured.host: {"auth": entry}}}))
    capsys.readouterr()
    assert main(["inspect", f"docker://{ref}", "--authfile", str(authfile)]) == 0
    assert json.loads(capsys.readouterr().out)["Digest"] == str(image.digest())
    assert main(["inspect", f"docker://{ref}", "--creds", "learner:nope"]) == 1
    assert "error:" in capsys.readouterr().err


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_skopeo_reads_what_we_pushed_with_auth(secured, tmp_path: Path, capsys) -> None:
    image = random_image(2000, 1, seed=802)
    client.push(image, f"{secured.host}/judged:v1", credentials=GOOD)
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "learner:containers",
            f"docker://{secured.host}/judged:v1",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert sha256_digest(raw) == image.digest()


def test_token_mode_caches_tokens_and_grants_scopes(secured) -> None:
    if secured.auth != "token":
        pytest.skip("token mode only")
    image = random_image(1000, 3, seed=803)
    with client.client_for(f"{secured.host}/cached:v1", push=True, credentials=GOOD) as reg:
        reg.write_image(image, "cached", "v1")
        assert reg.auth.tokens_fetched == 1, "one token for the whole push"
        sent = reg.bytes_uploaded
        # one blob at a time: in parallel, a thread may ask for a token before another
        # has added the mount source's scope, and the count would depend on timing
        reg.write_image(image, "cached2", "v1", mount_from=("cached",), jobs=1)
        # a new repository, then the mount source's pull scope: a re-challenge each
        assert reg.auth.tokens_fetched == 3
        assert reg.bytes_uploaded == sent, "every blob mounted from the first repository"
    paths = RegistryPaths(secured.state)
    status, account, scopes = paths.token_log.read_text().splitlines()[-1].split()[2:5]
    assert (account, status) == ("learner", "200"), "the last answer of the token service"
    assert scopes.startswith("repository:cached2:") and "push" in scopes
    with requests.Session() as session:
        session.trust_env = False
        answer = session.get(
            paths.token_realm.read_text().strip(),
            params={"service": SERVICE, "scope": "repository:x:pull,push"},
            auth=("learner", "containers"),
            timeout=10,
        )
    claims = decode_jwt(answer.json()["token"])
    assert claims["access"] == [{"type": "repository", "name": "x", "actions": ["pull", "push"]}]
    assert claims["aud"] == SERVICE


def test_merged_scopes_do_not_depend_on_the_order_a_registry_lists_them() -> None:
    """Distribution lists resources and actions in Go map order; the token request may not."""
    from itertools import permutations

    from hardway.distribution.auth import merge_scopes

    parts = ["repository:new:push,pull", "repository:old:pull", "repository:zzz:pull"]
    remembered = ["repository:old:pull,push"]
    results = {
        tuple(merge_scopes(" ".join(order), remembered))
        for order in permutations(
            p.replace("push,pull", a)
            for p, a in zip(parts, ["pull,push", "pull", "pull"], strict=True)
        )
    } | {tuple(merge_scopes(" ".join(order), remembered)) for order in permutations(parts)}
    assert results == {
        ("repository:new:pull,push", "repository:old:pull,push", "repository:zzz:pull")
    }


def test_a_401_to_a_request_sent_before_auth_was_known_is_retried() -> None:
    """Parallel uploads: one thread learns Basic auth while another's request is already on
    its way without it. That 401 refused nothing, so it is answered, not returned."""

    class Basic(BaseAdapter):
        def send(self, request, **kwargs):
            response = requests.Response()
            response.request, response.connection, response.url = request, self, request.url
            response.raw = io.BytesIO(b"")
            if request.headers.get("Authorization") == GOOD.basic():
                response.status_code = 200
            else:
                response.status_code = 401
                response.headers["WWW-Authenticate"] = 'Basic realm="r"'
            return response

        def close(self) -> None:
            pass

    for creds, want in ((GOOD, 200), (Credentials("learner", "wrong"), 401)):
        auth = BearerAuth(creds)
        with requests.Session() as session:
            session.mount("http://", Basic())
            early = [
                auth(session.prepare_request(requests.Request("HEAD", f"http://r/v2/{i}")))
                for i in range(2)
            ]
            assert [session.send(r).status_code for r in early] == [want, want]


class Bearer(BaseAdapter):
    """A registry that takes only the bearer tokens in ``accepted``; any other request is
    refused with a challenge carrying ``error`` (sent: every Authorization it saw)."""

    CHALLENGE = 'Bearer realm="http://auth/token",service="reg",scope="repository:app:pull"'

    def __init__(self, accepted: set[str], error: str) -> None:
        super().__init__()
        self.accepted, self.error, self.sent = accepted, error, []

    def send(self, request, **kwargs):
        sent = request.headers.get("Authorization", "")
        self.sent.append(sent)
        response = requests.Response()
        response.request, response.connection, response.url = request, self, request.url
        response.raw = io.BytesIO(b"")
        response.status_code = 200 if sent.removeprefix("Bearer ") in self.accepted else 401
        if response.status_code == 401:
            error = f',error="{self.error}"' if sent else ""
            response.headers["WWW-Authenticate"] = self.CHALLENGE + error
        return response

    def close(self) -> None:
        pass


def token_auth(monkeypatch) -> BearerAuth:
    """A BearerAuth whose token service hands out T1, T2, … (no network)."""
    auth = BearerAuth(GOOD)

    def fetch(realm: str, service: str, scopes: list[str]) -> tuple[str, float]:
        auth.tokens_fetched += 1
        return f"T{auth.tokens_fetched}", 300

    monkeypatch.setattr(auth, "_fetch", fetch)
    return auth


def send(auth: BearerAuth, adapter: BaseAdapter, prepared=None) -> requests.Response:
    with requests.Session() as session:
        session.mount("http://", adapter)
        request = prepared or auth(session.prepare_request(requests.Request("GET", "http://r/v2/")))
        return session.send(request)


def test_insufficient_scope_for_the_token_just_granted_is_not_retried(monkeypatch) -> None:
    """The service granted less than the challenge asked: asking again cannot help, so the
    401 is returned after one token, not fetched over and over."""
    auth = token_auth(monkeypatch)
    registry = Bearer(accepted=set(), error="insufficient_scope")
    assert send(auth, registry).status_code == 401
    assert auth.tokens_fetched == 1 and registry.sent == ["", "Bearer T1"]


def test_a_token_refused_after_another_thread_refreshed_it_takes_the_successor(
    monkeypatch,
) -> None:
    """Two threads send with T1; it has expired. The first to hear 401 fetches T2; the
    other's 401 (for T1) must take T2 from the cache, not fetch T3, and not give up."""
    auth = token_auth(monkeypatch)
    registry = Bearer(accepted={"T1"}, error="invalid_token")
    assert send(auth, registry).status_code == 200 and auth.tokens_fetched == 1
    with requests.Session() as session:  # the other thread's request, on its way with T1
        late = auth(session.prepare_request(requests.Request("GET", "http://r/v2/x")))
    registry.accepted = {"T2"}  # T1 expires
    assert send(auth, registry).status_code == 200 and auth.tokens_fetched == 2
    assert send(auth, registry, late).status_code == 200
    assert auth.tokens_fetched == 2, "the successor was reused"
    assert registry.sent[-2:] == ["Bearer T1", "Bearer T2"]


# --- login, logout and credential helpers (store / get / erase) ------------------------

#: a credential helper like the one the chapter 07 reader writes, for several registries:
#: it keeps what ``store`` gets in a JSON file beside it, and logs each verb
HELPER = """#!/bin/sh
store="$(dirname "$0")/store.json"
[ -f "$store" ] || echo '{}' > "$store"
input="$(cat)"
echo "$1" >> "$(dirname "$0")/calls.log"
python3 - "$1" "$store" "$input" <<'PY'
import json, sys
verb, path, data = sys.argv[1], sys.argv[2], sys.argv[3]
store = json.load(open(path))
if verb == "store":
    doc = json.loads(data)
    store[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
elif verb in ("get", "erase"):
    if data.strip() not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    if verb == "get":
        user, secret = store[data.strip()]
        print(json.dumps({"ServerURL": data.strip(), "Username": user, "Secret": secret}))
    else:
        del store[data.strip()]
json.dump(store, open(path, "w"))
PY
"""


def _login(capsys, host: str, authfile: Path, password: str, monkeypatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    argv = ["login", host, "--username", "learner", "--password-stdin"]
    return main([*argv, "--authfile", str(authfile)])


def test_login_writes_auths_0600_and_every_command_reads_it(
    secured, tmp_path: Path, capsys, monkeypatch
) -> None:
    image = random_image(3000, 1, seed=803)
    ref = f"{secured.host}/login/app:v1"
    authfile = tmp_path / "conf" / "config.json"
    assert _login(capsys, secured.host, authfile, "wrong-password", monkeypatch) == 1
    assert not authfile.exists(), "refused credentials are not stored"
    assert "wrong-password" not in "".join(capsys.readouterr())
    assert _login(capsys, secured.host, authfile, "containers", monkeypatch) == 0
    out, err = capsys.readouterr()
    assert "Login Succeeded" in out and "containers" not in out + err
    assert authfile.stat().st_mode & 0o777 == 0o600
    doc = json.loads(authfile.read_text())
    assert base64.b64decode(doc["auths"][secured.host]["auth"]) == b"learner:containers"
    client.push(image, ref, credentials=GOOD)
    assert main(["inspect", f"docker://{ref}", "--authfile", str(authfile)]) == 0
    assert json.loads(capsys.readouterr().out)["Digest"] == str(image.digest())
    # skopeo reads the file we wrote
    skopeo = ["skopeo", "inspect", "--raw", "--tls-verify=false", "--authfile", str(authfile)]
    raw = subprocess.run([*skopeo, f"docker://{ref}"], capture_output=True, check=True).stdout
    assert sha256_digest(raw) == image.digest()
    assert main(["logout", secured.host, "--authfile", str(authfile)]) == 0
    assert json.loads(authfile.read_text())["auths"] == {}
    assert main(["inspect", f"docker://{ref}", "--authfile", str(authfile)]) == 1
    assert main(["logout", secured.host, "--authfile", str(authfile)]) == 1


def test_we_read_what_skopeo_login_wrote(secured, tmp_path: Path) -> None:
    authfile = tmp_path / "auth.json"
    subprocess.run(
        [
            "skopeo",
            "login",
            "--tls-verify=false",
            "--authfile",
            str(authfile),
            "--username",
            "learner",
            "--password-stdin",
            secured.host,
        ],
        input=b"containers\n",
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert load_credentials(secured.host, authfile=authfile) == GOOD


def test_docker_config_and_registry_auth_file_choose_the_file(tmp_path: Path, monkeypatch) -> None:
    from hardway.distribution.credentials import login_path, store_credentials

    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert login_path() == tmp_path / "docker" / "config.json"
    store_credentials("127.0.0.1:1", GOOD)
    assert load_credentials("127.0.0.1:1") == GOOD
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    assert login_path() == tmp_path / "auth.json"
    assert login_path(tmp_path / "x.json") == tmp_path / "x.json"


def test_login_and_logout_go_through_the_credential_helper(
    secured, tmp_path: Path, capsys, monkeypatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-course"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    authfile = tmp_path / "config.json"
    authfile.write_text(json.dumps({"credHelpers": {secured.host: "course"}}))
    assert _login(capsys, secured.host, authfile, "containers", monkeypatch) == 0
    assert "docker-credential-course" in capsys.readouterr().out
    assert "containers" not in authfile.read_text(), "the helper keeps it, not the file"
    assert json.loads((bindir / "store.json").read_text())[secured.host][1] == "containers"
    assert load_credentials(secured.host, authfile=authfile) == GOOD
    image = random_image(2000, 1, seed=804)
    ref = f"{secured.host}/helped/app:v1"
    client.push(image, ref, authfile=authfile)
    assert client.pull(ref, authfile=authfile).digest() == image.digest()
    assert main(["logout", secured.host, "--authfile", str(authfile)]) == 0
    assert json.loads((bindir / "store.json").read_text()) == {}
    calls = [line.split()[0] for line in (bindir / "calls.log").read_text().splitlines()]
    assert calls[0] == "store" and "get" in calls and calls[-1] == "erase"
    with pytest.raises(UnauthorizedError):
        client.pull(ref, authfile=authfile)


def test_a_missing_or_failing_helper_says_so(tmp_path: Path, monkeypatch) -> None:
    from hardway.distribution.credentials import store_credentials
    from hardway.errors import HardwayError

    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    authfile = tmp_path / "config.json"
    authfile.write_text(json.dumps({"credsStore": "absent"}))
    with pytest.raises(HardwayError, match="docker-credential-absent is not installed"):
        store_credentials("127.0.0.1:1", Credentials("me", "pw-never-shown"), authfile=authfile)
    (tmp_path / "docker-credential-absent").write_text("#!/bin/sh\necho locked; cat; exit 1\n")
    (tmp_path / "docker-credential-absent").chmod(0o755)
    with pytest.raises(HardwayError, match="store failed: locked") as failed:
        store_credentials("127.0.0.1:1", Credentials("me", "pw-never-shown"), authfile=authfile)
    assert "pw-never-shown" not in str(failed.value)
