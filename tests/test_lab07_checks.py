"""Lab 07's checks against the registry in token mode: the solution and the course's
REFERENCE pass, the blank lab is not attempted, and each realistic wrong answer fails with
a message naming its mistake (tests/test_grading.py and test_autograde.py cover 07.6's
registry being unusable)."""

from __future__ import annotations

import pytest
from labcode import edited_solution, failed, namespace

from hardway.course.checks import lab07
from hardway.course.grading import run_check

REAL = ("07.3", "07.4", "07.5", "07.6", "07.7")


def test_the_solution_passes_and_the_blank_lab_is_not_attempted() -> None:
    solved, blank = namespace("solutions", "07"), namespace("labs", "07")
    for exercise in REAL:
        assert run_check(exercise, solved).status == "passed", exercise
        assert run_check(exercise, blank).status == "not attempted", exercise


def test_the_course_s_reference_push_passes() -> None:
    assert run_check("07.7", dict(lab07.REFERENCE)).status == "passed"


RESOLVED = 'location = urljoin(answer.url, answer.headers["Location"])'
NOT_RESOLVED = "location = registry_url + answer.headers['Location']"
MANIFEST_PUT = (
    '    answer = send("PUT", f"{url}/v2/{repository}/manifests/{tag}", auth, '
    "data=manifest_bytes,\n"
    '                  headers={"Content-Type": manifest["mediaType"]})\n'
    "    if answer.status_code != 201:\n"
    '        raise RuntimeError(f"the manifest PUT answered {answer.status_code}")\n'
)
LOOP = '    for blob in [manifest["config"], *manifest["layers"]]:\n'

WRONG = [
    pytest.param(
        "07.3",
        [
            (
                "        session.trust_env = False\n        if auth and",
                "        session.trust_env = False\n"
                '        session.auth = (auth["username"], auth["password"]) if auth else None\n'
                "        if auth and",
            )
        ],
        "carried your password (Authorization: Basic) to the registry",
        id="07.3-password-to-the-registry",
    ),
    pytest.param(
        "07.3",
        [
            (
                'answer = session.get(params["realm"], params=query, auth=login)',
                'answer = session.get(params["realm"], params=query)',
            )
        ],
        "without credentials",
        id="07.3-no-credentials-to-the-token-service",
    ),
    pytest.param(
        "07.3",
        [
            (
                '        if auth and auth.get("token"):\n            headers',
                "        if False:\n            headers",
            )
        ],
        "you fetched 3 tokens",
        id="07.3-token-not-reused",
    ),
    pytest.param(
        "07.3",
        [('"scope": auth["scopes"]}', '"scope": params.get("scope", "")}')],
        "ask for auth['scopes']",
        id="07.3-only-the-challenge-s-scope",
    ),
    pytest.param(
        "07.4",
        [(RESOLVED, NOT_RESOLVED)],
        "relative to the request",
        id="07.4-relative-location-not-resolved",
    ),
    pytest.param(
        "07.4",
        [('f"{offset}-{offset + len(chunk) - 1}"', 'f"{offset}-{offset + len(chunk)}"')],
        "Content-Range",
        id="07.4-content-range-off-by-one",
    ),
    pytest.param(
        "07.4",
        [
            (
                '    answer = send("PUT", f"{location}{separator}digest={digest}", auth)',
                '    answer = send("PUT", location, auth)',
            )
        ],
        "?digest=",
        id="07.4-digest-missing-on-the-final-put",
    ),
    pytest.param(
        "07.5",
        [('    if auth is not None and scope not in auth["scopes"]:', "    if False:")],
        "repository:lab07/src-",
        id="07.5-token-without-pull-on-the-source",
    ),
    pytest.param(
        "07.5",
        [
            (
                "    if answer.status_code == 202:\n        return False",
                "    if answer.status_code == 202:\n        return True",
            )
        ],
        "return False",
        id="07.5-202-taken-for-a-mount",
    ),
    pytest.param(
        "07.7",
        [(LOOP, MANIFEST_PUT + LOOP), (MANIFEST_PUT + "    return", "    return")],
        "before its blobs",
        id="07.7-manifest-before-its-blobs",
    ),
    pytest.param(
        "07.7",
        [
            (
                '        if send("HEAD", f"{url}/v2/{repository}/blobs/{digest}", auth)'
                ".status_code == 200:\n            continue\n",
                "",
            )
        ],
        "pushed a second time",
        id="07.7-no-head-before-upload",
    ),
    pytest.param(
        "07.7",
        [("        if source and mount_blob(", "        if False and mount_blob(")],
        "was not mounted",
        id="07.7-no-mount",
    ),
    pytest.param(
        "07.7",
        [('    if auth is not None and scope not in auth["scopes"]:', "    if False:")],
        "repository:lab07/base-",
        id="07.7-mount-without-pull-on-the-source",
    ),
    pytest.param(
        "07.7",
        [("        if len(data) > CHUNK_SIZE:", "        if False:")],
        "PATCH",
        id="07.7-big-layer-in-one-piece",
    ),
    pytest.param(
        "07.7",
        [
            (
                '    ping = send("GET", f"{url}/v2/", auth)\n'
                "    if ping.status_code != 200:\n        raise",
                "    if False:\n        raise",
            )
        ],
        "start with the ping",
        id="07.7-no-ping",
    ),
    pytest.param(
        "07.7",
        [
            (
                '        if auth and auth.get("token"):\n            headers',
                "        if False:\n            headers",
            )
        ],
        "tokens",
        id="07.7-a-token-per-request",
    ),
]


@pytest.mark.parametrize(("exercise", "edits", "words"), WRONG)
def test_each_wrong_answer_fails_naming_its_mistake(
    exercise: str, edits: list[tuple[str, str]], words: str
) -> None:
    failed(exercise, edited_solution("07", *edits), words)


def test_07_6_an_upload_without_its_digest_is_refused() -> None:
    learner = edited_solution(
        "07",
        (
            'done = send("PUT", f"{location}{separator}digest={digest}", auth, data=data,',
            'done = send("PUT", location, auth, data=data,',
        ),
    )
    assert run_check("07.6", learner).status != "passed"
