"""The sanity report: every method and metric on an offline workload (``make demo``).

Run ``python -m captum_ext_report --help``. Each section lives in its own module under
:mod:`captum_ext_report.sections` and returns a :class:`~captum_ext_report.context.Section`.
"""

from captum_ext_report.context import ReportContext, Section

__all__ = ["ReportContext", "Section"]
