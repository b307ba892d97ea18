"""hardway.course: the course machinery, on top of everything else.

The machine check of chapter 00 (:mod:`~hardway.course.doctor` and its child-process
:mod:`~hardway.course.probes`); what a run left behind (:mod:`~hardway.course.leftovers`)
and ``python -m hardway cleanup``, which removes it (:mod:`~hardway.course.cleanup`); the
base images every later chapter builds on (:mod:`~hardway.course.seed`); the self-checks
of the labs (:mod:`~hardway.course.grading`, and a module a lab in
:mod:`hardway.course.checks`); labs generated from solutions (:mod:`~hardway.course.labgen`)
and the headless grader (:mod:`~hardway.course.autograde`), whose grades and report forms
— table, room table, CSV, GitHub Classroom JSON — are :mod:`~hardway.course.grades`.

Public contract (notebooks and labs import these): ``grading.check``,
``grading.summary``; ``doctor``; ``seed`` (``seed_base_image``, ``seed_python_image``,
``write_example``).

Grading references: :mod:`hardway.course.checks` *are* the grading; the reference
implementations they compare with live in the parts below (each part's ``__init__``
names them).
"""
