/* pgqueue dashboard: live updates over Server-Sent Events, and the action buttons.
 *
 * Pages are rendered by the server; this script only keeps them current. Small changes (a
 * progress bar, a new log line) are painted in place; anything else re-fetches the page and swaps
 * its #live element, so the server's templates stay the one description of what a page shows.
 * A page fetched before the latest progress or log line arrived would undo them, so both are
 * remembered and painted again onto every swapped-in page.
 * Every URL is built from data-base (the router's own path), so any mount prefix works.
 */
"use strict";
(() => {
  const base = document.body.dataset.base;
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const indicator = document.getElementById("live-indicator");
  const byId = (id) => document.getElementById(id);

  function showLive(state, label) {
    indicator.dataset.state = state;
    indicator.querySelector(".label").textContent = label;
  }

  function toast(message) {
    const el = byId("toast");
    el.textContent = message;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  /* Times arrive in UTC; show them in the reader's time zone. */
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  function ago(at) {
    const seconds = (at - Date.now()) / 1000;
    const abs = Math.abs(seconds);
    if (abs < 5) return "just now";
    if (abs < 45) return relative.format(Math.round(seconds), "second");
    if (abs < 2700) return relative.format(Math.round(seconds / 60), "minute");
    if (abs < 79200) return relative.format(Math.round(seconds / 3600), "hour");
    return at.toLocaleString();
  }
  function humanize(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const at = new Date(el.getAttribute("datetime"));
      el.title = at.toLocaleString();
      const style = el.dataset.style;
      el.textContent = style === "clock" ? at.toLocaleTimeString()
        : style === "full" ? at.toLocaleString() : ago(at);
    }
  }

  /* Re-render: fetch this page again and swap its #live part. */
  let inFlight = null;
  let again = false;
  let timer = null;
  async function refresh() {
    if (inFlight) { again = true; return inFlight; }
    inFlight = (async () => {
      try {
        const response = await fetch(location.href, { cache: "no-store", credentials: "same-origin" });
        if (!response.ok) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("live");
        const current = byId("live");
        if (fresh && current) {
          current.replaceWith(fresh);
          humanize(fresh);
          repaint();
        }
      } catch (error) {
        /* The event stream's reconnect shows the outage; the next event refreshes again. */
      }
    })();
    await inFlight;
    inFlight = null;
    if (again) { again = false; await refresh(); }
  }
  function refreshSoon(delay) {
    if (timer === null) timer = setTimeout(() => { timer = null; refresh(); }, delay);
  }

  /* What the streams said since the page's last status change, painted onto any page. */
  const progressById = new Map();
  const logLines = new Map();

  function paintBar(bar, percent) {
    bar.querySelector(".progress-fill").style.width = `${percent}%`;
    bar.querySelector(".progress-label").textContent = `${Math.round(percent)}%`;
    bar.setAttribute("aria-valuenow", percent);
  }

  function showProgress(data) {
    progressById.set(String(data.id), data);
    repaint();
  }

  function repaint() {
    for (const [id, data] of progressById) {
      for (const holder of document.querySelectorAll(`[data-job-id="${id}"]`)) {
        const bar = holder.querySelector(".progress");
        if (bar) paintBar(bar, data.progress);
        const message = holder.querySelector("#progress-message");
        if (message) message.textContent = data.message || "";
      }
    }
    for (const line of logLines.values()) addLogLine(line);
  }

  /* A job's new status on its badge and progress bar, until the page is fetched again. */
  function paintStatus(holder, status) {
    if (!holder) return;
    for (const el of holder.querySelectorAll(".badge, .progress")) {
      el.className = el.className.replace(/\bstatus-\w+/, `status-${status}`);
    }
    const badge = holder.querySelector(".badge");
    if (badge) badge.textContent = status;
  }

  function addLogLine(line) {
    logLines.set(line.id, line);
    const list = byId("job-logs");
    if (!list || list.querySelector(`[data-log-id="${line.id}"]`)) return;
    const item = document.createElement("li");
    item.dataset.logId = line.id;
    item.className = "fresh";
    const time = document.createElement("time");
    time.setAttribute("datetime", line.at);
    time.dataset.style = "clock";
    const text = document.createElement("span");
    text.className = "log-message";
    text.textContent = line.message;
    item.append(time, text);
    list.append(item);
    humanize(item);
    byId("log-count").textContent = list.children.length;
    list.scrollTop = list.scrollHeight;
  }

  function listen(url, handlers) {
    const source = new EventSource(url, { withCredentials: true });
    source.onopen = () => showLive("live", "live");
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) showLive("error", "reconnecting");
    };
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => handle(JSON.parse(event.data), source));
    }
    return source;
  }

  /* A job's page: follow that job until it is final. */
  let jobSource = null;
  function watchJob() {
    const id = byId("live").dataset.jobId;
    if (jobSource) jobSource.close();
    jobSource = listen(`${base}jobs/${id}/events`, {
      progress: showProgress,
      log: addLogLine,
      status(job, source) {
        const live = byId("live");
        if (live.dataset.status !== job.status || live.dataset.attempts !== String(job.attempts)) {
          progressById.delete(String(job.id));
          paintStatus(live, job.status);
          refresh();
        }
        if (FINAL.has(job.status)) {
          source.close();
          showLive("idle", "finished");
        }
      },
    });
  }

  /* The overview and job lists: every job's progress and status, and the counts. */
  function watchAll() {
    listen(`${base}events`, {
      progress: showProgress,
      status(data) {
        progressById.delete(String(data.id));
        for (const row of document.querySelectorAll(`tr[data-job-id="${data.id}"]`)) {
          paintStatus(row, data.status);
        }
        refreshSoon(1000);
      },
      stats() { refreshSoon(300); },
    });
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || (button.dataset.confirm && !window.confirm(button.dataset.confirm))) return;
    button.disabled = true;
    try {
      // Bulk actions carry their filter as a JSON body and answer how many jobs they changed.
      const filter = button.dataset.body;
      const headers = { Accept: "application/json" };
      if (filter) headers["Content-Type"] = "application/json";
      const response = await fetch(button.dataset.action, {
        method: "POST", credentials: "same-origin", headers, body: filter || undefined,
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        toast(typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`);
      } else if (typeof body.count === "number") {
        toast(`${button.dataset.done || "Changed"} ${body.count} job${body.count === 1 ? "" : "s"}`);
      }
    } catch (error) {
      toast(`Request failed: ${error}`);
    }
    await refresh();
    if (byId("live")?.dataset.jobId && !FINAL.has(byId("live").dataset.status)) watchJob();
  });

  /* A queue's limits form: empty fields remove their limit. */
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-limits-action]");
    if (!form) return;
    event.preventDefault();
    const limits = {};
    for (const [name, value] of new FormData(form)) {
      limits[name] = value === "" ? null : Number(value);
    }
    if (limits.rate === null) delete limits.period;
    try {
      const response = await fetch(form.dataset.limitsAction, {
        method: "PUT", credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify(limits),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
        toast(detail || `${response.status} ${response.statusText}`);
        return;
      }
      location.reload();
    } catch (error) {
      toast(`Request failed: ${error}`);
    }
  });

  humanize(document);
  setInterval(() => humanize(document), 15000);
  if (byId("live")?.dataset.jobId) watchJob();
  else if (byId("live")) watchAll();
})();
