"""The sanity report: every method and metric on an offline workload (``make demo``).

Run ``python -m captum_ext.report --help``. Each section lives in its own module under
:mod:`captum_ext.report.sections` and returns a :class:`~captum_ext.report.context.Section`.
"""

from captum_ext.report.context import ReportContext, Section

__all__ = ["ReportContext", "Section"]
