# ruff: noqa: E501 — the wrong answers are cells as a learner writes them, long lines and all
"""Lab 08's checks against realistic wrong answers, each caught with a message that names
the mistake; the blank lab is not attempted, the solution gets every point. The checks
push to the course's real registry (conftest gives this run its own)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from labcode import assert_full_and_blank, edited, fails, namespace

from hardway.course.grading import run_check


@pytest.fixture(scope="module")
def solution() -> dict:
    return namespace("solutions", "08")


def test_the_solution_gets_every_point_and_the_blank_lab_none() -> None:
    assert_full_and_blank("08")


def test_08_1_an_accept_header_without_the_oci_index_or_dockers_list(solution: dict) -> None:
    no_index = "def accept_header():\n    return ', '.join([OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])\n"
    assert "does not name application/vnd.oci.image.index.v1+json" in fails(
        "08.1", solution, no_index
    )
    no_list = (
        "def accept_header():\n    return ', '.join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST])\n"
    )
    message = fails("08.1", solution, no_list)
    assert "manifest.list.v2+json" in message and "schema 1" in message
    star = "def accept_header():\n    return ', '.join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, '*/*'])\n"
    assert "not also ['*/*']" in fails("08.1", solution, star)


def test_08_2_a_size_checked_only_at_the_end(solution: dict) -> None:
    at_the_end = edited(
        "08", "def verify_chunks",
        ("        if seen > size:\n            raise ValueError(f\"more than the {size} bytes the descriptor names\")\n", ""),
    )  # fmt: skip
    assert "size bound not enforced while streaming" in fails("08.2", solution, at_the_end)


def test_08_3_no_size_bound(solution: dict) -> None:
    digest_only = edited(
        "08", "def download_blob",
        ("            if announced > size:\n", "            if False:\n"),
        ("verify_chunks(response.iter_content(65536), digest, size)",
         "verify_chunks(response.iter_content(65536), digest, announced)"),
    )  # fmt: skip
    assert "size bound not enforced: a blob larger than its descriptor" in fails(
        "08.3", solution, digest_only
    )


def test_08_3_written_to_dest_then_verified(solution: dict) -> None:
    straight = """
def download_blob(registry_url, repository, descriptor, dest):
    url = f"{registry_url}/v2/{repository}/blobs/{descriptor['digest']}"
    with requests.Session() as session:
        session.trust_env = False
        with session.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            if int(response.headers["Content-Length"]) > descriptor["size"]:
                raise ValueError("too long")
            with open(dest, "wb") as out:
                for chunk in response.iter_content(65536):
                    out.write(chunk)
    if "sha256:" + hashlib.sha256(Path(dest).read_bytes()).hexdigest() != descriptor["digest"]:
        raise ValueError("wrong digest")
    return Path(dest)
"""
    assert "reached their final name before they were verified" in fails("08.3", solution, straight)


def test_08_3_a_temporary_file_left_behind(solution: dict) -> None:
    kept = edited("08", "def download_blob", ("                os.unlink(temporary)\n", ""))
    assert "temporary files were left behind" in fails("08.3", solution, kept)


def test_08_4_the_first_platform_of_the_index(solution: dict) -> None:
    first = edited(
        "08", "def my_pull", ("my_select_platform(document, platform)", "document['manifests'][0]")
    )
    assert "the index's first entry" in fails("08.4", solution, first)


def test_08_4_layers_in_reverse_order(solution: dict) -> None:
    backwards = edited(
        "08", "def my_pull", ("for path in layers:", "for path in reversed(layers):")
    )
    assert "applied in reverse order" in fails("08.4", solution, backwards)


def test_08_4_whiteouts_ignored(solution: dict) -> None:
    extract = edited(
        "08", "def my_pull",
        ("            my_apply_layer(path, Path(rootfs))",
         "            with tarfile.open(path) as tar:\n                tar.extractall(rootfs)"),
    )  # fmt: skip
    assert "hidden by a whiteout" in fails("08.4", solution, "import tarfile\n" + extract)


def test_08_4_the_digest_checked_after_the_layer_was_applied(solution: dict) -> None:
    after = """
def my_pull(registry, repository, reference, rootfs, *, platform="linux/amd64", username=None, password=None):
    url = f"http://{registry}"
    http = requests.Session()
    http.trust_env = False
    accept = {"Accept": accept_header()}
    document = http.get(f"{url}/v2/{repository}/manifests/{reference}", headers=accept).json()
    if "manifests" in document:
        digest = my_select_platform(document, platform)["digest"]
        document = http.get(f"{url}/v2/{repository}/manifests/{digest}", headers=accept).json()
    with tempfile.TemporaryDirectory() as work:
        for i, layer in enumerate(document["layers"]):
            path = Path(work) / f"{i}.tar.gz"
            path.write_bytes(http.get(f"{url}/v2/{repository}/blobs/{layer['digest']}").content)
            my_apply_layer(path, Path(rootfs))
            if "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != layer["digest"]:
                raise ValueError(f"layer {i} is corrupt")
    config = http.get(f"{url}/v2/{repository}/blobs/{document['config']['digest']}")
    return config.json()
"""
    assert "planted/evil reached the root filesystem" in fails("08.4", solution, after)


def test_08_4_a_pull_that_hangs_and_leaves_children_is_stopped_at_its_limit(
    solution: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learner's pull that starts processes and never returns: the check fails with the
    time limit, and every process it started is gone (its process group was killed)."""
    from hardway.course.checks import lab08

    monkeypatch.setattr(lab08, "PULL_TIME", 3.0)
    marker = f"hardway-test-hang-{os.getpid()}"
    hang = f"""
import subprocess, time
def my_pull(registry, repository, reference, rootfs, *, platform="linux/amd64", username=None, password=None):
    for _ in range(5):
        subprocess.Popen(["sleep", "1000", "{marker}"])
    while True:
        time.sleep(0.1)
"""
    assert "still running after 3 s" in fails("08.4", solution, hang)
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    assert left == "", f"processes of the stopped pull survived: {left}"


def test_the_course_pull_handed_on_passes_the_check() -> None:
    """REFERENCE's my_pull (what carry gives a learner stuck on lab 08) is a correct pull."""
    from hardway.course.checks.lab08 import REFERENCE

    assert run_check("08.4", {"my_pull": REFERENCE["my_pull"]}).status == "passed"
