"""The review page: one HTML file, its stills and animations beside it by relative path.

Zip the page's folder (``report/``: ``index.html`` and ``index_files/``) and mail it:
the page uses no CDN and no server, and its filters and sorting are plain JavaScript.
At most ``MAX_ANIMATED`` probes play an animation, the others show a still, so the
folder stays small for large runs (:mod:`~cam_callback.report.write`). The package is split by job:
:mod:`~cam_callback.report.rows` (what each card shows),
:mod:`~cam_callback.report.methods` (the methods table from ``evaluation.json``),
:mod:`~cam_callback.report.datamap` (the data map of the probes, an inline SVG),
:mod:`~cam_callback.report.gallery` (what each class looks for: evidence regions, inline),
:mod:`~cam_callback.report.assets` (style sheet and script),
:mod:`~cam_callback.report.page` (the HTML) and
:mod:`~cam_callback.report.write` (:func:`write_report`). Every name is
re-exported here, so ``cam_callback.report.write_report`` keeps working.

Example:
    >>> from cam_callback.report import write_report
    >>> write_report("runs/a")  # doctest: +SKIP
    PosixPath('runs/a/cam/report/index.html')
"""

from cam_callback.frames import target_rule
from cam_callback.report.assets import CSS, JS
from cam_callback.report.datamap import (
    DataPoint,
    datamap_legend,
    datamap_points,
    datamap_section,
    datamap_svg,
    legend_entries,
)
from cam_callback.report.gallery import (
    ClassGallery,
    EvidenceTile,
    class_galleries,
    gallery_data,
    gallery_section,
)
from cam_callback.report.groups import group_rows, groups_section, worst_group_note
from cam_callback.report.methods import methods_section, read_evaluation_table
from cam_callback.report.page import (
    FLAG_HELP,
    FLAG_LABELS,
    GENERATOR,
    card,
    flag_label,
    render_page,
    sortable,
    sparkline,
)
from cam_callback.report.rows import (
    badge_text,
    probe_rows,
    true_class_curve,
    weights_note,
)
from cam_callback.report.write import MAX_ANIMATED, animated_probes, last_frame_png, write_report

__all__ = [
    "CSS",
    "ClassGallery",
    "EvidenceTile",
    "class_galleries",
    "gallery_data",
    "gallery_section",
    "FLAG_HELP",
    "FLAG_LABELS",
    "MAX_ANIMATED",
    "DataPoint",
    "GENERATOR",
    "JS",
    "animated_probes",
    "badge_text",
    "card",
    "datamap_legend",
    "datamap_points",
    "datamap_section",
    "datamap_svg",
    "flag_label",
    "group_rows",
    "groups_section",
    "legend_entries",
    "last_frame_png",
    "methods_section",
    "probe_rows",
    "read_evaluation_table",
    "render_page",
    "sortable",
    "sparkline",
    "target_rule",
    "true_class_curve",
    "weights_note",
    "worst_group_note",
    "write_report",
]
