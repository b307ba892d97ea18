"""hardway.widgets
~~~~~~~~~~~~~~~

Pictures of the structures the course builds, for learners who would rather look than
read: a layer explorer (chapter 05), an image map (06, 08), a live cgroup meter (03)
and a namespace table (02). Each module is one picture, in two halves:

* a pure function that builds plain data (dataclasses) from the real thing — an image,
  a layout, a registry, a cgroup, ``/proc`` — tested without any frontend;
* a thin :class:`~hardway.widgets.view.View` over it that renders as ipywidgets in
  JupyterLab and as readable text everywhere else (a terminal, nbval, a CI log).

Nothing graded depends on them: they only show.
"""

from __future__ import annotations

__all__ = ["cgroup_meter", "image_map", "layer_explorer", "namespace_table"]


def __getattr__(name: str):  # lazy: importing the package must not import ipywidgets
    if name == "layer_explorer":
        from hardway.widgets.layertree import layer_explorer

        return layer_explorer
    if name == "image_map":
        from hardway.widgets.imagemap import image_map

        return image_map
    if name == "cgroup_meter":
        from hardway.widgets.meter import cgroup_meter

        return cgroup_meter
    if name == "namespace_table":
        from hardway.widgets.nstable import namespace_table

        return namespace_table
    raise AttributeError(f"module 'hardway.widgets' has no attribute {name!r}")
