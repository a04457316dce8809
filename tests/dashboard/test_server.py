"""The dashboard's HTTP server and ``kdnas dashboard`` / ``kdnas report`` commands: the API
answers, only the page's own assets are served, bad requests and inputs get one line."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from stores import FULL, LOW_KD, Row, write_run

from kdnas.cli import main
from kdnas.dashboard import DashboardServer, StoreView
from kdnas.store import SQLiteStore

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "search.sqlite"
    with SQLiteStore(path) as store:
        write_run(
            store,
            HOSTILE,
            [Row(0, LOW_KD, 0.3, 0.3, 10.0, 11.0), Row(0, FULL, 0.6, 0.5, 11.0, 15.0)],
        )
    return path


@pytest.fixture
def server(store_path: Path) -> Iterator[DashboardServer]:
    running = DashboardServer(StoreView(store_path), port=0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def get(server: DashboardServer, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_it_binds_this_machine_only_by_default(server: DashboardServer) -> None:
    assert server.server_address[0] == "127.0.0.1"


def test_the_api_answers_json(server: DashboardServer) -> None:
    status, headers, body = get(server, "/api/runs")
    assert status == 200 and headers["Content-Type"] == "application/json"
    (run,) = json.loads(body)
    assert run["run_id"] == HOSTILE and run["evaluations"] == 2
    status, _, body = get(server, "/api/evaluations?sort=valid_acc&desc=0&page_size=1")
    assert json.loads(body)["rows"][0]["valid_acc"] == pytest.approx(0.3)
    status, _, body = get(server, "/api/updates?since=1")
    assert [row["id"] for row in json.loads(body)["rows"]] == [2]


def test_the_first_view_comes_in_one_answer_warmed_up_before_it_is_asked(
    server: DashboardServer,
) -> None:
    server.warm_up().join(timeout=30)
    cached = server.view._first_view_cache
    assert cached is not None and cached[0] == 2  # computed before any request
    status, _, body = get(server, "/api/first")
    first = json.loads(body)
    assert status == 200 and first["latest"] == 2
    assert [run["run_id"] for run in first["runs"]] == [HOSTILE]
    assert first["incumbent"][HOSTILE]["evaluation"] == [2]
    assert [row["id"] for row in first["evaluations"]["rows"]] == [2, 1]  # newest first
    assert [bar["id"] for bar in first["workers"]] == [1, 2]
    # a newer evaluation makes a new first view, not the kept one
    with SQLiteStore(server.view.path) as writer:
        write_run(writer, "later", [Row(1, FULL, 0.7, 0.6, 16.0, 17.0)])
    assert json.loads(get(server, "/api/first")[2])["latest"] == 3


def test_bad_requests_get_one_clear_line(server: DashboardServer) -> None:
    status, _, body = get(server, "/api/evaluations?sort=nope")
    assert status == 400 and "unknown sort column 'nope'" in json.loads(body)["error"]
    status, _, body = get(server, "/api/evaluations?f.nope=1")
    assert status == 400 and "unknown filter 'nope'" in json.loads(body)["error"]
    assert get(server, "/api/evaluation?id=99")[0] == 404
    assert get(server, "/api/updates?since=x")[0] == 400


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/assets/../__init__.py",
        "/assets/%2e%2e/_server.py",
        "/assets/_queries.py",
        "/search.sqlite",
        "//etc/passwd",
    ],
)
def test_no_file_outside_its_assets_is_served(server: DashboardServer, path: str) -> None:
    status, _, body = get(server, path)
    assert status == 404 and b"no such page" in body


def test_the_assets_are_served_with_a_strict_policy(server: DashboardServer) -> None:
    status, headers, body = get(server, "/")
    assert status == 200 and b"assets/dashboard.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, _, body = get(server, "/assets/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000 and b"plotly.js" in body[:500]
    status, headers, _ = get(server, "/api/runs")
    assert headers["Cache-Control"] == "no-store"  # the store changes under the answers


def test_the_page_s_files_are_kept_by_the_browser_until_they_change(
    server: DashboardServer,
) -> None:
    status, headers, _ = get(server, "/assets/plotly.min.js")
    assert status == 200 and headers["Cache-Control"] == "no-cache" and headers["ETag"]
    request = urllib.request.Request(
        server.url + "assets/plotly.min.js", headers={"If-None-Match": headers["ETag"]}
    )
    with pytest.raises(urllib.error.HTTPError) as answer:  # urllib raises on a 304
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 304 and answer.value.read() == b""
    request = urllib.request.Request(server.url, headers={"If-None-Match": headers["ETag"]})
    with urllib.request.urlopen(request, timeout=10) as page:  # another file's tag: sent
        assert page.status == 200 and b"assets/dashboard.js" in page.read()


def test_the_report_inlines_everything_and_escapes_names(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report" / "store.html"
    assert main(["report", str(store_path), "--html", str(out)]) == 0
    page = out.read_text()
    assert "assets/" not in page.replace("assets/dashboard.js", "")  # nothing fetched
    assert 'src="' not in page.split("<body>")[1].split("<script>")[0]
    assert HOSTILE not in page  # only as \u003cimg ...\u003e inside the JSON
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in page


def test_commands_refuse_a_missing_store_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none.sqlite")
    assert main(["report", missing, "--html", str(tmp_path / "r.html")]) == 2
    assert main(["dashboard", missing]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("no store" in line for line in err)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_port_out_of_range_is_refused_in_one_line(
    store_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", str(store_path), "--port", port])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "expected a port 0-65535" in line


def test_a_host_option_warns_that_there_is_no_authentication(
    store_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DashboardServer, "serve_forever", lambda self: None)
    assert main(["dashboard", str(store_path), "--host", "127.0.0.1", "--port", "0"]) == 0
    captured = capsys.readouterr()
    assert "no authentication" in captured.err
    assert "http://127.0.0.1:" in captured.out


def test_without_plotly_the_command_says_how_to_install_it(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)
    assert main(["report", str(store_path), "--html", str(tmp_path / "r.html")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("kdnas report: error: ") and "pip install 'kdnas[dashboard]'" in line
    assert not (tmp_path / "r.html").exists()
