# ruff: noqa: E501 — the wrong answers are cells as a learner writes them, long lines and all
"""Lab 10's checks against realistic wrong answers, each caught with a message that names
the mistake; other correct answers pass; the blank lab is not attempted, the solution gets
every point. 10.6–10.9 run for real: overlayfs, the runtime, umoci, the course's registry,
skopeo and runc."""

from __future__ import annotations

import json

import pytest
from labcode import assert_full_and_blank, edited, fails, namespace

from hardway.course.grading import run_check


@pytest.fixture(scope="module")
def solution() -> dict:
    return namespace("solutions", "10")


def rebound(*sources: str) -> dict:
    """The solution's namespace with ``sources`` run *in* it: functions defined before
    (my_build, capstone) see the wrong helpers, as in a notebook."""
    found = namespace("solutions", "10")
    for source in sources:
        exec(source, found)
    return found


def test_the_solution_gets_every_point_and_the_blank_lab_none() -> None:
    assert_full_and_blank("10")


def test_10_1_continuations_not_joined(solution: dict) -> None:
    unjoined = "def logical_lines(text):\n    return [(n, l.strip()) for n, l in enumerate(text.splitlines(), 1) if l.strip() and not l.strip().startswith('#')]\n"
    assert "logical_lines should give" in fails("10.1", solution, unjoined)


def run_argv_by_hand(args):
    if args.startswith("["):
        try:
            value = json.loads(args)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", args]


def test_10_2_accepts_a_tuple_or_a_list_and_rejects_a_shell_for_all() -> None:
    assert run_check("10.2", {"run_argv": run_argv_by_hand}).status == "passed"
    assert run_check("10.2", {"run_argv": lambda a: tuple(run_argv_by_hand(a))}).status == "passed"
    assert run_check("10.2", {"run_argv": lambda a: ["/bin/sh", "-c", a]}).status == "failed"


def test_10_3_no_default(solution: dict) -> None:
    plain = "def substitute(word, env):\n    return re.sub(r'\\$\\{?(\\w+)\\}?', lambda m: env.get(m.group(1), ''), word)\n"
    assert "should be" in fails("10.3", solution, plain)


def test_10_4_a_copy_key_from_its_text_only(solution: dict) -> None:
    text_only = edited(
        "10", "def files_sum",
        ('        if keyword.upper() == "COPY":\n            facts["files"] = files_sum(context, args.split()[:-1])\n', ""),
    )  # fmt: skip
    assert "needs a checksum of the content it copies" in fails("10.4", solution, text_only)


def test_10_4_a_changed_file_not_invalidating_later_steps(solution: dict) -> None:
    unchained = edited(
        "10",
        "def files_sum",
        (
            '        facts = {"parent": parent, "step": step}',
            '        facts = {"parent": base, "step": step}',
        ),
    )
    assert "did not invalidate the later steps" in fails("10.4", solution, unchained)


def test_10_4_a_copy_key_with_mtimes(solution: dict) -> None:
    mtimes = edited(
        "10", "def files_sum", ("st.st_gid, content])", "st.st_gid, content, st.st_mtime_ns])")
    )
    assert "not mtime" in fails("10.4", solution, mtimes)


def test_10_4_a_copy_key_without_modes(solution: dict) -> None:
    modes = edited("10", "def files_sum", ("st.st_mode, st.st_uid", "st.st_uid"))
    assert "include each file's mode" in fails("10.4", solution, modes)


def test_10_5_entrypoint_clears_a_cmd_of_the_same_dockerfile(solution: dict) -> None:
    always = edited(
        "10",
        "def apply_instruction",
        ('if keyword == "ENTRYPOINT" and not cmd_set:', 'if keyword == "ENTRYPOINT":'),
    )
    assert "ENTRYPOINT cleared a CMD of the same Dockerfile" in fails("10.5", solution, always)


def test_10_5_entrypoint_keeps_an_inherited_cmd(solution: dict) -> None:
    never = edited(
        "10", "def apply_instruction", ('if keyword == "ENTRYPOINT" and not cmd_set:', "if False:")
    )
    assert "should give" in fails("10.5", solution, never)


def test_10_6_env_not_passed_to_the_run(solution: dict) -> None:
    no_env = edited("10", "def run_changes", ('env=config.get("Env") or []', "env=[]"))
    assert "ENV not applied to the RUN" in fails("10.6", solution, no_env)


def test_10_6_an_overlay_mounted_without_making_root_private(solution: dict) -> None:
    shared = edited(
        "10",
        "def run_changes",
        ('        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)\n', ""),
    )
    assert "still mounted in the notebook's mount namespace" in fails("10.6", solution, shared)


def test_10_6_a_run_on_the_image_itself(solution: dict) -> None:
    in_place = edited(
        "10", "def run_changes",
        ('        linux.mount("overlay", merged, "overlay", 0, options)\n        return my_run(merged,',
         "        return my_run(lower,"),
    )  # fmt: skip
    assert "changed the lower directory" in fails("10.6", solution, in_place)


def test_10_7_whiteouts_copied_as_devices(solution: dict) -> None:
    as_is = "import subprocess\ndef oci_changes(upper, dest):\n    subprocess.run(['cp', '-a', str(upper), str(dest)], check=True)\n"
    assert "a character device 0/0" in fails("10.7", solution, as_is)


def test_10_7_opaque_directories_forgotten(solution: dict) -> None:
    forgot = edited(
        "10", "def oci_changes", ('                if opaque == b"y":', "                if False:")
    )
    assert "no opq/.wh..wh..opq" in fails("10.7", solution, forgot)


def test_10_7_symlinks_followed(solution: dict) -> None:
    followed = edited(
        "10",
        "def oci_changes",
        (
            "            elif source.is_symlink():\n                os.symlink(os.readlink(source), out)\n",
            "",
        ),
    )
    assert "should stay a symlink" in fails("10.7", solution, followed)


def test_10_8_env_not_applied_to_a_later_run() -> None:
    no_env = edited("10", "def run_changes", ('env=config.get("Env") or []', "env=[]"))
    message = run_check("10.8", rebound(no_env)).message
    assert "ENV not applied to later RUN" in message


def test_10_8_workdir_not_created() -> None:
    lazy = edited(
        "10", "def my_build",
        ('                if keyword == "WORKDIR":', '                if keyword == "NEVER":'),
    )  # fmt: skip
    assert "WORKDIR not created" in run_check("10.8", rebound(lazy)).message


def test_10_8_entrypoint_clearing_a_cmd_of_the_same_dockerfile() -> None:
    always = edited(
        "10",
        "def apply_instruction",
        ('if keyword == "ENTRYPOINT" and not cmd_set:', 'if keyword == "ENTRYPOINT":'),
    )
    assert (
        "ENTRYPOINT clearing a CMD of the same Dockerfile"
        in run_check("10.8", rebound(always)).message
    )


def test_10_8_copy_from_the_wrong_stage() -> None:
    previous = edited(
        "10", "def my_build",
        ('source_root = next(s["rootfs"] for s in stages if s["alias"] == wanted)',
         'source_root = stages[-2]["rootfs"]'),
    )  # fmt: skip
    assert "COPY --from reading the wrong stage" in run_check("10.8", rebound(previous)).message


def test_10_8_a_run_layer_that_records_unchanged_files() -> None:
    whole = edited(
        "10", "def my_build",
        ('                oci_changes(run / "upper", directory)',
         '                oci_changes(run / "upper", directory)\n'
         '                shutil.copytree(stage["rootfs"], directory, symlinks=True, dirs_exist_ok=True)'),
    )  # fmt: skip
    assert "RUN diff that records unchanged files" in run_check("10.8", rebound(whole)).message


def test_10_9_a_run_without_the_image_config() -> None:
    bare = edited(
        "10",
        "def capstone",
        ('env=image.get("Env") or [], cwd=image.get("WorkingDir") or "/"', "env=[], cwd='/'"),
    )
    result = run_check("10.9", rebound(bare))
    assert result.status == "failed" and "runc ran the same root filesystem" in result.message


def test_the_helpers_the_checks_share() -> None:
    """One source of randomness, seeded anew on every call; one scratch directory."""
    import doctest

    from hardway.course import checks

    assert doctest.testmod(checks).failed == 0
    assert checks.fresh_rng().getstate() != checks.fresh_rng().getstate()


def test_the_course_build_handed_on_passes_the_check() -> None:
    """REFERENCE's my_build (hardway's builder behind the lab's FROM-a-layout-tag rule)."""
    from hardway.course.checks.lab10 import REFERENCE

    assert run_check("10.8", {"my_build": REFERENCE["my_build"]}).status == "passed"
