"""Lab 06's checks: the solution and the course's REFERENCE pass, the blank lab is not
attempted, and each realistic wrong answer fails with a message naming its mistake."""

from __future__ import annotations

import pytest
from labcode import edited_solution, failed, namespace

from hardway.course.checks import lab06
from hardway.course.grading import run_check

EXERCISES = ("06.1", "06.2", "06.3", "06.4", "06.5", "06.6")
DOCKER_MANIFEST = '"application/vnd.docker.distribution.manifest.v2+json"'


def test_the_solution_passes_and_the_blank_lab_is_not_attempted() -> None:
    solved, blank = namespace("solutions", "06"), namespace("labs", "06")
    for exercise in EXERCISES:
        assert run_check(exercise, solved).status == "passed", exercise
        assert run_check(exercise, blank).status == "not attempted", exercise


def test_the_course_s_reference_passes() -> None:
    for exercise in ("06.3", "06.5"):
        assert run_check(exercise, dict(lab06.REFERENCE)).status == "passed", exercise


WRONG = [
    pytest.param(
        "06.1",
        [("digest_of(gzip.decompress(blob)) for blob", "digest_of(blob) for blob")],
        "digests of the gzip blobs",
        id="06.1-diff-ids-of-the-gzip",
    ),
    pytest.param(
        "06.2",
        [('        "mediaType": OCI_MANIFEST,\n', f'        "mediaType": {DOCKER_MANIFEST},\n')],
        "mediaType",
        id="06.2-docker-media-type",
    ),
    pytest.param(
        "06.2",
        [
            (
                '"layers": [descriptor(blob, OCI_LAYER_GZIP) for blob in layer_blobs]',
                '"layers": [{**descriptor(blob, OCI_LAYER_GZIP), "size": '
                "len(gzip.decompress(blob))} for blob in layer_blobs]",
            )
        ],
        "size",
        id="06.2-size-of-the-tar",
    ),
    pytest.param(
        "06.3",
        [('    if architecture == "arm" and variant in ("", "7"):', "    if False:")],
        "arm/v7",
        id="06.3-linux-arm-not-v7",
    ),
    pytest.param(
        "06.3",
        [('    elif architecture == "arm64" and variant in ("8", "v8"):', "    elif False:")],
        "one platform",
        id="06.3-arm64-v8-not-arm64",
    ),
    pytest.param(
        "06.3",
        [
            (
                '    wanted = normalized(*platform.split("/"))',
                '    os_name, arch, *variant = platform.split("/")\n'
                '    wanted = (os_name, arch, variant[0] if variant else "")',
            ),
        ],
        "linux/arm",
        id="06.3-only-the-entries-normalised",
    ),
    pytest.param(
        "06.4",
        [('    new["annotations"] = {REF_NAME: tag}\n', "")],
        "no entry of index.json is annotated org.opencontainers.image.ref.name",
        id="06.4-no-ref-name",
    ),
    pytest.param(
        "06.5",
        [("        diff_ids.append(diff_id)", "        diff_ids.append(digest)")],
        "the digests of the gzip blobs",
        id="06.5-diff-ids-of-the-gzip",
    ),
    pytest.param(
        "06.5",
        [
            (
                'manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,',
                f'manifest = {{"schemaVersion": 2, "mediaType": {DOCKER_MANIFEST},',
            )
        ],
        "mediaType",
        id="06.5-manifest-media-type",
    ),
    pytest.param(
        "06.5",
        [
            (
                '"digest": digest, "size": size}',
                '"digest": digest, "size": os.path.getsize(directory)}',
            )
        ],
        "size",
        id="06.5-layer-size-wrong",
    ),
    pytest.param(
        "06.5",
        [
            (
                "    index_path.write_text(json.dumps(tag_manifest(index, manifest_bytes, tag)))",
                '    index["manifests"].append(descriptor(manifest_bytes, OCI_MANIFEST))\n'
                "    index_path.write_text(json.dumps(index))",
            )
        ],
        "org.opencontainers.image.ref.name",
        id="06.5-index-without-ref-name",
    ),
    pytest.param(
        "06.5",
        [
            (
                "    write_blob(layout, config_bytes)",
                "    write_blob(layout, json.dumps(json.loads(config_bytes), indent=2).encode())",
            )
        ],
        "the config",
        id="06.5-config-re-serialised",
    ),
    pytest.param(
        "06.6",
        [
            (
                '        if config.get("variant"):\n            platform["variant"]',
                '        if False:\n            platform["variant"]',
            )
        ],
        "variant included",
        id="06.6-variant-left-out",
    ),
    pytest.param(
        "06.6",
        [(', "platform": platform})', "})")],
        "has platform None",
        id="06.6-no-platform",
    ),
    pytest.param(
        "06.6",
        [
            (
                '    (layout / "index.json").write_text(json.dumps(tag_manifest(index, raw, tag)))',
                '    entry = {**descriptor(raw, OCI_MANIFEST), "annotations": {REF_NAME: tag}}\n'
                '    index["manifests"].append(entry)\n'
                '    (layout / "index.json").write_text(json.dumps(index))',
            )
        ],
        "mediaType",
        id="06.6-index-entry-typed-as-a-manifest",
    ),
]


@pytest.mark.parametrize(("exercise", "edits", "words"), WRONG)
def test_each_wrong_answer_fails_naming_its_mistake(
    exercise: str, edits: list[tuple[str, str]], words: str
) -> None:
    failed(exercise, edited_solution("06", *edits), words)
