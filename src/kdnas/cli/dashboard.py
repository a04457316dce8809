"""``kdnas dashboard`` (a live page over a store) and ``kdnas report`` (the same views as one
HTML file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kdnas.cli import UsageError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``dashboard`` and ``report`` sub-commands to the ``kdnas`` parser."""
    parser = subparsers.add_parser(
        "dashboard",
        help="a live page over a store while a search writes it",
        description="Serve a page that follows a store: runs, incumbent over time, low vs "
        "full fidelity, every evaluation, workers. The store is opened read-only and never "
        "holds the search up. Needs the plotly package: pip install 'kdnas[dashboard]'.",
    )
    parser.add_argument("store", metavar="STORE", help="the SQLite store a search writes")
    parser.add_argument(
        "--port", type=_port, default=8765, help="port (default 8765; 0: any free)"
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1, this machine only; the page has no "
        "authentication)",
    )
    parser.set_defaults(func=run_dashboard)

    report = subparsers.add_parser(
        "report",
        help="write a store's views as one self-contained HTML file",
        description="Write the dashboard's views of a store, as they are now, to one HTML "
        "file that opens offline (plotly.js inlined). Needs: pip install 'kdnas[dashboard]'.",
    )
    report.add_argument("store", metavar="STORE", help="the SQLite store")
    report.add_argument("--html", type=Path, required=True, metavar="FILE", help="file to write")
    report.set_defaults(func=run_report)


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: the system picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return value


def _open(path: str) -> Any:
    from kdnas.dashboard import StoreView

    if not Path(path).is_file():
        raise UsageError(f"no store {path!r} (expected an SQLite file that a search writes)")
    return StoreView(path)


def _plotting_missing(command: str, error: Exception) -> int:
    """A missing optional dependency: the environment's failure (status 1), one line."""
    print(f"kdnas {command}: error: {error}", file=sys.stderr)
    return 1


def run_dashboard(args: argparse.Namespace) -> int:
    from kdnas.dashboard import DashboardServer, PlottingLibraryMissing

    view = _open(args.store)
    host = args.host or "127.0.0.1"
    if args.host is not None:
        print(
            f"warning: listening on {host}: the dashboard has no authentication; anyone who "
            f"can reach this address reads the store",
            file=sys.stderr,
        )
    try:
        server = DashboardServer(view, host=host, port=args.port)
    except PlottingLibraryMissing as error:
        return _plotting_missing("dashboard", error)
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{args.port} ({error.strerror})") from None
    print(f"kdnas dashboard of {view.path}: {server.url} (Ctrl+C stops)", flush=True)
    server.warm_up()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run_report(args: argparse.Namespace) -> int:
    from kdnas.dashboard import PlottingLibraryMissing, write_html_report

    view = _open(args.store)
    try:
        file = write_html_report(view, args.html)
    except PlottingLibraryMissing as error:
        return _plotting_missing("report", error)
    print(f"wrote {file}")
    return 0
