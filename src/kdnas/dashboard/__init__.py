"""A live page over a store, and the same views as one HTML file to share.

``kdnas dashboard STORE`` serves the page (``DashboardServer``) while another process writes
the store; ``kdnas report STORE --html FILE`` writes it once (``write_html_report``). Both read
through ``StoreView``, which opens the store read-only and never holds the writer up. The
charts are drawn in the browser by plotly.js, served from the installed ``plotly`` package
(the ``kdnas[dashboard]`` extra): nothing is fetched from the internet.

Nothing else in kdnas imports this package.
"""

from kdnas.dashboard._queries import GRID_COLUMNS, GridQuery, StoreView, rank_correlations
from kdnas.dashboard._server import (
    DashboardServer,
    PlottingLibraryMissing,
    plotly_script,
    write_html_report,
)

__all__ = [
    "GRID_COLUMNS",
    "DashboardServer",
    "GridQuery",
    "PlottingLibraryMissing",
    "StoreView",
    "plotly_script",
    "rank_correlations",
    "write_html_report",
]
