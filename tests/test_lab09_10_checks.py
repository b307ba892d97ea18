"""The checks of labs 09 and 10 accept other correct answers than the reference one, and
reject the plausible wrong ones (tests/test_autograde.py covers blank lab and solution)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading

from hardway.course.grading import run_check


def _status(exercise: str, **namespace: object) -> str:
    return run_check(exercise, namespace).status


def upload_with_threads(digests, has, upload, jobs):
    """Not a pool: plain threads and a semaphore — correct too."""
    missing = [d for d in digests if not has(d)]
    slots, errors = threading.Semaphore(jobs), []

    def one(digest):
        with slots:
            try:
                upload(digest)
            except Exception as exc:  # handed to the caller below
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(d,)) for d in missing]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return missing


def upload_with_pool_map(digests, has, upload, jobs):
    missing = [d for d in digests if not has(d)]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(upload, missing))
    return missing


def upload_one_by_one(digests, has, upload, jobs):
    missing = [d for d in digests if not has(d)]
    for digest in missing:
        upload(digest)
    return missing


def test_09_5_accepts_any_bounded_parallel_upload_and_rejects_a_serial_one() -> None:
    assert _status("09.5", upload_missing=upload_with_threads) == "passed"
    assert _status("09.5", upload_missing=upload_with_pool_map) == "passed"
    assert _status("09.5", upload_missing=upload_one_by_one) == "failed"


def run_argv_by_hand(args):
    if args.startswith("["):
        try:
            value = json.loads(args)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", args]


def test_10_2_accepts_a_tuple_or_a_list() -> None:
    assert _status("10.2", run_argv=run_argv_by_hand) == "passed"
    assert _status("10.2", run_argv=lambda a: tuple(run_argv_by_hand(a))) == "passed"
    assert _status("10.2", run_argv=lambda a: ["/bin/sh", "-c", a]) == "failed"


def apply_instruction_by_hand(config, keyword, args):
    new = json.loads(json.dumps(config))
    if keyword == "ENV":
        name = args.split("=", 1)[0]
        env = [e for e in new.get("Env", []) if e.split("=", 1)[0] != name]
        old = [e.split("=", 1)[0] for e in new.get("Env", [])]
        if name in old:
            env.insert(old.index(name), args)
        else:
            env.append(args)
        new["Env"] = env
    elif keyword == "WORKDIR":
        new["WorkingDir"] = os.path.normpath(os.path.join(new.get("WorkingDir") or "/", args))
    elif keyword == "USER":
        new["User"] = args
    elif keyword == "EXPOSE":
        port = args if "/" in args else f"{args}/tcp"
        new.setdefault("ExposedPorts", {})[port] = {}
    else:
        form = run_argv_by_hand(args)
        if keyword == "CMD":
            new["Cmd"] = form
        else:
            new["Entrypoint"] = form
            new.pop("Cmd", None)
    return new


def test_10_5_accepts_a_hand_written_config_and_rejects_a_kept_cmd() -> None:
    assert _status("10.5", apply_instruction=apply_instruction_by_hand) == "passed"

    def keeps_cmd(config, keyword, args):
        new = apply_instruction_by_hand(config, keyword, args)
        if keyword == "ENTRYPOINT" and "Cmd" in config:
            new["Cmd"] = config["Cmd"]
        return new

    assert _status("10.5", apply_instruction=keeps_cmd) == "failed"


def test_the_helpers_the_checks_share() -> None:
    """One source of randomness, seeded anew on every call; one scratch directory."""
    import doctest

    from hardway.course import checks

    assert doctest.testmod(checks).failed == 0
    assert checks.fresh_rng().getstate() != checks.fresh_rng().getstate()
