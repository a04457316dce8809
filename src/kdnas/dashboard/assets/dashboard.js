// The kdnas dashboard page. Two modes: live (served by `kdnas dashboard`, reads the JSON API
// and asks every POLL_MS for the evaluations newer than the newest it has) and report (a file
// written by `kdnas report --html`, whose data lie in the element #kdnas-snapshot).
// Every name from the store reaches the page through textContent, never as markup; names in
// charts go through plotText, since plotly reads a few HTML-like tags in its labels.
//
// First view: the page asks for its data (one request, api/first) while the browser
// downloads plotly.js (about 5 MB, preloaded), shows the overview and the grid as soon as the
// data arrive, then runs plotly.js (a second or more of the page's only thread, so not
// before the overview is shown) and draws the incumbent charts. The other charts are drawn
// when their tab opens; an update redraws only the charts in sight and marks the others to
// be drawn when shown.
"use strict";

(function () {
  const POLL_MS = 1000;
  const TIMELINE_LIMIT = 2000;
  const snapshotElement = document.getElementById("kdnas-snapshot");
  const snapshot = snapshotElement ? JSON.parse(snapshotElement.textContent) : null;
  const state = {
    latest: 0,
    incumbent: {},
    workers: [],
    grid: { page: 0, pageSize: 50, sort: "id", desc: true, filters: {} },
    columns: [],
    view: "overview",
    seen: new Set(),
    // Charts whose data changed since they were last drawn (drawn when their tab shows).
    stale: new Set(["incumbent", "workers"]),
    plotly: false,
  };

  // plotly.js: inlined before this script in the report; on the live page preloaded by
  // the page's head and run from here (loadPlotly) once the overview is shown.
  function loadPlotly() {
    return new Promise((resolve, reject) => {
      if (window.Plotly) {
        resolve();
        return;
      }
      const script = document.createElement("script");
      script.src = document.getElementById("plotly-js").getAttribute("href");
      script.addEventListener("load", () => resolve());
      script.addEventListener("error", () => reject(new Error("plotly.js did not load")));
      document.body.append(script);
    }).then(() => {
      state.plotly = true;
      plotlyRan();
    });
  }

  // Resolved once plotly.js has run (a tab opened before then draws after it).
  let plotlyRan;
  const plotlyReady = new Promise((resolve) => {
    plotlyRan = resolve;
  });

  // ---------------------------------------------------------------- helpers

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  // Plotly turns <b>, <br>, <a ...> in labels into markup: the store's names are shown as
  // the characters they are.
  function plotText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function number(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toFixed(digits === undefined ? 3 : digits);
  }

  function clock(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  async function api(path) {
    const response = await fetch(path, { cache: "no-store" });
    const payload = await response.json();
    if (!response.ok) throw new Error(payload.error || response.statusText);
    return payload;
  }

  function isHigh(row) {
    return row.part === 1 && row.method === "nokd";
  }

  // ---------------------------------------------------------------- overview

  function renderRuns(runs) {
    const container = document.getElementById("runs");
    container.replaceChildren();
    if (!runs.length) container.append(element("p", "The store holds no run yet.", "note"));
    for (const run of runs) {
      const card = element("div", null, "run");
      card.dataset.runId = run.run_id;
      card.append(element("h3", run.run_id));
      const fields = element("dl");
      const best = run.best;
      const budget = run.budget_evaluations ? " / " + run.budget_evaluations : " (no budget known)";
      const seconds = run.seconds;
      const entries = [
        ["status", run.status],
        ["evaluations", run.evaluations + budget + " (" + run.ok + " ok)"],
        [
          seconds.teacher_shared ? "seconds: teachers (all saved beside the store)" : "seconds: teacher",
          seconds.teacher === null || seconds.teacher === undefined ? "–" : number(seconds.teacher, 1),
        ],
        ["seconds: low fidelity", number(seconds.low, 1)],
        ["seconds: full fidelity", number(seconds.full, 1)],
        ["best architecture", best ? best.arch : "none at full fidelity yet"],
        ["its accuracy", best ? "valid " + number(best.valid_acc) + ", test " + number(best.test_acc) : "–"],
        ["last evaluation ended", clock(run.last_finished_at)],
        ["fingerprint", run.fingerprint],
        ["kdnas version", run.package_version],
      ];
      for (const [name, value] of entries) {
        fields.append(element("dt", name), element("dd", value));
      }
      card.append(fields);
      if (run.warnings.length) {
        const list = element("ul");
        for (const warning of run.warnings) list.append(element("li", warning, "warning"));
        card.append(element("h4", "warnings"), list);
      }
      const details = element("details");
      details.append(element("summary", "settings"), element("pre", JSON.stringify(run.settings, null, 2)));
      card.append(details);
      container.append(card);
    }
  }

  // ---------------------------------------------------------------- incumbent

  function renderIncumbent() {
    const byWall = [];
    const byCount = [];
    for (const [runId, series] of Object.entries(state.incumbent)) {
      const name = plotText(runId);
      for (const [key, dash, what] of [["valid_acc", "solid", "valid"], ["test_acc", "dash", "test"]]) {
        const common = { y: series[key], mode: "lines+markers", line: { shape: "hv", dash: dash }, name: name + " " + what };
        byWall.push(Object.assign({ x: series.wall_s }, common));
        byCount.push(Object.assign({ x: series.evaluation }, common));
      }
    }
    const layout = (title) => ({
      xaxis: { title: { text: title } },
      yaxis: { title: { text: "accuracy" } },
      margin: { t: 30 },
      legend: { orientation: "h", y: -0.25 },
    });
    Plotly.react("chart-incumbent-wall", byWall, layout("wall seconds since the run's first evaluation"));
    Plotly.react("chart-incumbent-evaluations", byCount, layout("evaluations"));
  }

  // Extends the incumbent series with new rows (in commit order), as the server would.
  function extendIncumbent(rows) {
    for (const row of rows) {
      let series = state.incumbent[row.run];
      if (!series) {
        series = { wall_s: [], evaluation: [], valid_acc: [], test_acc: [], count: 0, tail: false, best: null, origin: row.started_at };
        state.incumbent[row.run] = series;
      }
      series.count += 1;
      const wall = (row.finished_at || series.origin) - series.origin;
      const better = row.status === "ok" && isHigh(row) && row.valid_acc !== null && (series.best === null || row.valid_acc > series.best);
      if (series.tail) {
        for (const key of ["wall_s", "evaluation", "valid_acc", "test_acc"]) series[key].pop();
        series.tail = false;
      }
      if (better) series.best = row.valid_acc;
      if (series.best === null) continue;
      const last = series.valid_acc.length - 1;
      series.wall_s.push(wall);
      series.evaluation.push(series.count);
      series.valid_acc.push(better ? row.valid_acc : series.valid_acc[last]);
      series.test_acc.push(better ? row.test_acc : series.test_acc[last]);
      series.tail = !better;
    }
  }

  // ---------------------------------------------------------------- fidelities

  function renderFidelities(views) {
    const table = document.getElementById("fidelity-table");
    table.replaceChildren();
    const head = element("tr");
    for (const name of ["run", "low fidelity", "pairs", "Spearman", "95 % interval", "Kendall", "95 % interval"]) {
      head.append(element("th", name));
    }
    table.append(head);
    const interval = (ci) => (ci ? "[" + number(ci[0], 2) + ", " + number(ci[1], 2) + "]" : "–");
    const traces = [];
    for (const view of views) {
      const row = element("tr");
      for (const value of [view.run_id, view.fidelity, view.n, number(view.spearman, 2), interval(view.spearman_ci), number(view.kendall, 2), interval(view.kendall_ci)]) {
        row.append(element("td", value));
      }
      table.append(row);
      traces.push({
        x: view.low_valid_acc,
        y: view.full_test_acc,
        text: view.archs.map(plotText),
        mode: "markers",
        type: "scatter",
        name: plotText(view.run_id + " " + view.fidelity + " (Spearman " + number(view.spearman, 2) + ")"),
      });
    }
    if (!views.length) {
      const row = element("tr");
      row.append(element("td", "No low-fidelity results yet."));
      table.append(row);
    }
    Plotly.react("chart-fidelities", traces, {
      xaxis: { title: { text: "low-fidelity validation accuracy" } },
      yaxis: { title: { text: "full-data test accuracy" } },
      margin: { t: 30 },
      legend: { orientation: "h", y: -0.25 },
    });
  }

  // ---------------------------------------------------------------- evaluations grid

  const SHOWN = { valid_acc: 3, test_acc: 3, seconds: 1 };

  function cell(column, value) {
    if (column in SHOWN) return number(value, SHOWN[column]);
    if (column === "started_at" || column === "finished_at") return clock(value);
    return value === null || value === undefined ? "–" : value;
  }

  function buildGridHead(columns) {
    const head = document.querySelector("#grid thead");
    if (state.columns.length) return;
    state.columns = columns;
    const names = element("tr");
    const filters = element("tr", null, "filters");
    for (const column of columns) {
      const th = element("th", column);
      th.dataset.column = column;
      th.addEventListener("click", () => {
        state.grid.desc = state.grid.sort === column ? !state.grid.desc : true;
        state.grid.sort = column;
        state.grid.page = 0;
        loadGrid();
      });
      names.append(th);
      const td = element("td");
      const input = element("input");
      input.dataset.column = column;
      input.placeholder = "filter";
      input.addEventListener("change", () => {
        state.grid.filters[column] = input.value;
        state.grid.page = 0;
        loadGrid();
      });
      td.append(input);
      filters.append(td);
    }
    head.append(names, filters);
  }

  function renderGrid(page) {
    buildGridHead(page.columns);
    const body = document.querySelector("#grid tbody");
    body.replaceChildren();
    for (const row of page.rows) {
      const tr = element("tr", null, "row");
      tr.dataset.id = row.id;
      if (state.seen.size && !state.seen.has(row.id)) tr.classList.add("new");
      for (const column of page.columns) tr.append(element("td", cell(column, row[column])));
      tr.addEventListener("click", () => showDetail(row));
      body.append(tr);
    }
    for (const row of page.rows) state.seen.add(row.id);
    const first = page.total ? page.page * page.page_size + 1 : 0;
    const last = Math.min(page.total, (page.page + 1) * page.page_size);
    const sorted = state.grid.sort + (state.grid.desc ? " descending" : " ascending");
    document.getElementById("page-text").textContent = "rows " + first + "–" + last + " of " + page.total + ", sorted by " + sorted;
    document.getElementById("previous").disabled = page.page === 0;
    document.getElementById("next").disabled = last >= page.total;
  }

  async function showDetail(row) {
    const panel = document.getElementById("detail");
    panel.replaceChildren(element("h3", "evaluation " + row.id));
    let entry = row;
    if (!snapshot) {
      try {
        entry = await api("api/evaluation?id=" + encodeURIComponent(row.id));
      } catch (error) {
        panel.append(element("p", String(error), "warning"));
        return;
      }
    }
    const fields = element("dl");
    const entries = [
      ["run", entry.run_id || entry.run],
      ["architecture", entry.arch_key || entry.arch],
      ["description", entry.description || "(open the live page for the description)"],
      ["parameters", entry.params === undefined ? "–" : entry.params],
      ["multiply-adds", entry.multiply_adds === undefined ? "–" : entry.multiply_adds],
      ["valid / test accuracy", number(entry.valid_acc) + " / " + number(entry.test_acc)],
      ["seconds", number(entry.seconds, 1)],
      ["status", entry.status],
      ["worker", entry.worker],
    ];
    for (const [name, value] of entries) fields.append(element("dt", name), element("dd", value === null ? "–" : value));
    panel.append(fields);
  }

  // The report holds the newest 500 rows; it sorts, filters and pages them here.
  function localPage() {
    const grid = state.grid;
    let rows = snapshot.evaluations.rows.filter((row) =>
      Object.entries(grid.filters).every(([column, text]) => !text || String(row[column]).includes(text)),
    );
    rows = rows.slice().sort((a, b) => {
      const x = a[grid.sort];
      const y = b[grid.sort];
      const order = x === y ? a.id - b.id : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1;
      return grid.desc ? -order : order;
    });
    return {
      total: rows.length,
      page: grid.page,
      page_size: grid.pageSize,
      columns: snapshot.evaluations.columns,
      rows: rows.slice(grid.page * grid.pageSize, (grid.page + 1) * grid.pageSize),
    };
  }

  async function loadGrid() {
    if (snapshot) {
      renderGrid(localPage());
      return;
    }
    const grid = state.grid;
    const query = new URLSearchParams({ page: grid.page, page_size: grid.pageSize, sort: grid.sort, desc: grid.desc ? "1" : "0" });
    for (const [column, text] of Object.entries(grid.filters)) if (text) query.set("f." + column, text);
    try {
      renderGrid(await api("api/evaluations?" + query.toString()));
    } catch (error) {
      document.getElementById("page-text").textContent = String(error);
    }
  }

  // ---------------------------------------------------------------- workers

  // One line trace per worker, each evaluation a thick segment from its start to its end
  // (null between segments): one SVG path per worker, where a bar chart made one per bar.
  function renderWorkers() {
    const byWorker = {};
    for (const bar of state.workers) {
      if (bar.started_at === null || bar.finished_at === null) continue;
      const key = bar.worker;
      byWorker[key] = byWorker[key] || { x: [], y: [], text: [] };
      const entry = byWorker[key];
      const label = plotText(bar.run_id + " #" + bar.id + " 1/" + bar.part + " " + bar.method + " " + bar.status);
      entry.x.push(new Date(bar.started_at * 1000).toISOString(), new Date(bar.finished_at * 1000).toISOString(), null);
      entry.y.push(plotText(key), plotText(key), null);
      entry.text.push(label, label, null);
    }
    const traces = Object.entries(byWorker).map(([worker, entry]) => ({
      type: "scatter",
      mode: "lines",
      x: entry.x,
      y: entry.y,
      line: { width: 14 },
      connectgaps: false,
      hovertext: entry.text,
      hoverinfo: "text",
      name: plotText(worker),
    }));
    Plotly.react("chart-workers", traces, {
      xaxis: { type: "date", title: { text: "time (UTC)" } },
      yaxis: { type: "category", automargin: true },
      margin: { t: 30 },
      showlegend: false,
    });
  }

  // ---------------------------------------------------------------- views and updates

  const DRAW = { incumbent: renderIncumbent, workers: renderWorkers };

  // Draws a view's charts if their data changed since last drawn (and plotly.js has run).
  function draw(view) {
    if (!state.plotly || !state.stale.has(view)) return false;
    state.stale.delete(view);
    DRAW[view]();
    return true;
  }

  function show(view) {
    state.view = view;
    for (const button of document.querySelectorAll("#tabs button")) {
      button.classList.toggle("active", button.dataset.view === view);
    }
    for (const section of document.querySelectorAll("section")) {
      section.hidden = section.id !== "view-" + view;
    }
    if (!draw(view)) {
      // plotly sizes a chart drawn while hidden to its default: resize on show.
      for (const chart of document.querySelectorAll("#view-" + view + " .chart")) {
        if (chart.data) Plotly.Plots.resize(chart);
      }
    }
    if (view === "fidelities" && !snapshot) {
      Promise.all([api("api/fidelities"), plotlyReady])
        .then(([views]) => renderFidelities(views))
        .catch((error) => setLive("fidelities: " + error.message));
    }
  }

  function setLive(text) {
    document.getElementById("live").textContent = text;
  }

  async function poll() {
    try {
      const update = await api("api/updates?since=" + state.latest);
      if (update.rows.length) {
        state.latest = update.latest;
        extendIncumbent(update.rows);
        state.workers = state.workers.concat(
          update.rows.map((row) => ({ id: row.id, run_id: row.run, worker: row.worker, started_at: row.started_at, finished_at: row.finished_at, part: row.part, method: row.method, status: row.status })),
        ).slice(-TIMELINE_LIMIT);
        state.stale.add("incumbent");
        state.stale.add("workers");
        draw(state.view);
        renderRuns(await api("api/runs"));
        await loadGrid();
        if (state.view === "fidelities") renderFidelities(await api("api/fidelities"));
      }
      setLive("live: " + state.latest + " evaluations read, checked " + new Date().toLocaleTimeString());
    } catch (error) {
      setLive("live: the server does not answer (" + error.message + ")");
    }
    window.setTimeout(poll, POLL_MS);
  }

  async function start() {
    for (const button of document.querySelectorAll("#tabs button")) {
      button.addEventListener("click", () => show(button.dataset.view));
    }
    document.getElementById("previous").addEventListener("click", () => {
      state.grid.page = Math.max(0, state.grid.page - 1);
      loadGrid();
    });
    document.getElementById("next").addEventListener("click", () => {
      state.grid.page += 1;
      loadGrid();
    });
    const first = snapshot || (await api("api/first"));
    document.getElementById("store").textContent = first.store;
    state.latest = first.latest;
    if (snapshot) {
      setLive("report written " + clock(snapshot.written_at) + " UTC (" + snapshot.latest + " evaluations; the grid holds the newest 500)");
    }
    renderRuns(first.runs);
    state.incumbent = first.incumbent;
    state.workers = first.workers;
    if (snapshot) {
      renderGrid(localPage());
    } else {
      renderGrid(first.evaluations);
    }
    performance.mark("kdnas-overview");
    // Let the browser paint the overview (next frame) before plotly.js takes the thread.
    await new Promise((resolve) => window.requestAnimationFrame(() => window.setTimeout(resolve, 0)));
    await loadPlotly();
    draw("incumbent");
    draw(state.view); // a tab opened while plotly.js loaded
    performance.mark("kdnas-first-view");
    document.body.dataset.ready = "1";
    if (snapshot) {
      renderFidelities(snapshot.fidelities);
      return;
    }
    // The fidelities (a bootstrap, seconds on a large store) are asked for after the first
    // view, so the server has them ready when their tab opens.
    api("api/fidelities")
      .then((views) => state.view === "fidelities" && renderFidelities(views))
      .catch(() => {});
    poll();
  }

  start();
})();
