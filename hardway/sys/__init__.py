"""hardway.sys: the OS plumbing every part of the course stands on.

System calls through ctypes (:mod:`~hardway.sys.linux`), reading other processes in
``/proc`` (:mod:`~hardway.sys.proc`) and the mount table (:mod:`~hardway.sys.mountinfo`),
path resolution that cannot escape a root (:mod:`~hardway.sys.securejoin`), atomic file
writes (:mod:`~hardway.sys.atomic`), sizes as people type them (:mod:`~hardway.sys.sizes`),
where run-time state lives (:mod:`~hardway.sys.state`) and how another user imports this
package from a checkout it cannot read (:mod:`~hardway.sys.importable`). Nothing here knows about
images, registries or the course; everything above may use it.

Public contract (notebooks and labs import these): ``linux`` (chapters 01–02),
``state``.

Grading references — checks compare learners' answers with these, so a change here
changes a grade: ``securejoin.resolve`` (05), ``sizes.parse_size`` (03), ``linux``
(the syscall wrappers that labs 01–02 hand to the learner).
"""
