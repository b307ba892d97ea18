"""hardway.course.checks.machine
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

What the checks need from this machine, or why they cannot run here. A check that talks
to the course's registry gets it from :func:`course_registry`, which says *not graded*
(:class:`~hardway.course.grading.NotGraded`), with the reason and its fix, when the
registry cannot serve the check — never a failure of the learner's code, never a bug in
the check.
"""

from __future__ import annotations

from hardway.course.grading import NotGraded
from hardway.distribution.server import local_registry
from hardway.distribution.server.local_registry import RegistryPaths, RegistryStatus
from hardway.distribution.server.services import Service, describe, stop_command
from hardway.errors import HardwayError

__all__ = ["course_registry"]


def course_registry() -> RegistryStatus:
    """The course's registry, running and open without credentials, for a check to push to
    and pull from: this checkout's, or another checkout's already serving the port.

    :raises NotGraded: it cannot start (``docker-registry`` missing, the port held by
        another program), or it asks for credentials
    """
    try:
        running = local_registry.ensure_running()
    except HardwayError as exc:
        raise NotGraded(
            f"the course's registry could not be used: {exc.message}", fix=exc.fix
        ) from exc
    if running.auth == "none":
        return running
    if running.state == RegistryPaths.for_port(running.port).root:
        whose = "this checkout's registry"
        fix = f"python -m hardway registry start --port {running.port}   (auth none again)"
    else:
        other = Service("registry", running.pid or 0, running.port, running.state)
        whose, fix = describe(other), stop_command(other)
    raise NotGraded(
        f"{whose} on {running.url} asks for credentials (auth {running.auth}); the check "
        "uploads without any",
        fix=fix,
    )
