"""From runs to docs/performance.md: the how-to, the machine, the method, every table, the
correctness checks and the issue's targets, met or not by how much."""

from __future__ import annotations

from bench.results import BenchResult
from bench.tables import (
    closed_table,
    correctness,
    glance_table,
    level_label,
    markdown_table,
    noise,
    open_table,
    server_table,
    soak_table,
)
from bench.verdicts import evaluate

HOW_TO_RUN = """\
```bash
make bench                                   # the full comparison; writes docs/performance.md
.venv/bin/python -m bench --quick --out /tmp/performance.md   # a smoke run of about a minute
.venv/bin/python -m bench --peers            # also the Portkey gateway and the LiteLLM proxy
.venv/bin/python -m bench --workers-compare  # also the router on Postgres with --workers 2
make soak                                    # the soak from a fresh database: its own section below
```

Durations and levels: `--duration S` (each closed-loop run, default 10), `--open-duration S`
(each open-loop run, default 60), `--reps N` (default 3), `--connections 1,8,64`,
`--rates 500,1000,2000`, `--warmup S`; `--retry-noisy CORES` repeats a run once when other
work on the machine took more than that many cores during it (default 1, 0 never);
`--postgres-url` names the Postgres server (default
`postgresql://postgres@127.0.0.1:5432/postgres`); `--from-raw FILE` renders the report again
from a run's raw figures without measuring. The harness installs nginx and wrk
with apt-get when they are missing (as root; the system nginx is never configured or started),
creates and drops its own Postgres database `router_bench_<random>`, and starts and stops every
process itself on loopback ports. The peers are installed into `tools/bench/.cache/` (gitignored):
`npm install @portkey-ai/gateway` and a virtual environment with `litellm[proxy]`; a peer that
cannot be installed or started is reported as not run, and the rest of the run goes on. Raw
figures of every run are kept in `tools/bench/.cache/runs/`."""

METHOD = """\
- **Upstream.** Every target calls the same benchmark agent: nginx (one worker, not pinned)
  answering `200 {"ok":true}` at once (`/v1/chat/completions` answers a minimal OpenAI chat
  completion for the peers). *nginx (direct)* is a second instance of it, as a target.
- **Placement.** The load generator runs on CPU 0 and the system under test on CPU 1
  (`taskset`); the upstream nginx and Postgres are not pinned and share both cores. The router
  runs as `router-service serve --workers 1` with its production defaults (`LOG_LEVEL=INFO`, one
  JSON log line per signal and per agent call, written to /dev/null); the routing file sends
  every signal to the one agent `bench` in `first_success` mode.
- **Closed loop.** wrk, one thread, C connections, each sending its next request when the last
  is answered; `tools/bench/post.lua` sends a small JSON signal with a unique `sender_id` (so every
  request is a new signal with its own `log_id`) and counts 2xx answers and duplicates.
- **Open loop.** The project's load generator (`run_load`, on uvloop): request *i* is due at
  *i*/rate whatever the server does and its latency runs from that intended time (no
  coordinated omission); the signal mix of `router-service load` with no duplicates (bodies of
  20 B to 6 kB). The first/last-window p50 are over the requests due in the first and in the
  last window of the run. At most 1,024 requests are outstanding: when the target cannot keep
  up, the requests due beyond that are dropped and counted (*dropped + errors*), and the
  latency of the others settles near 1,024 / throughput. The peers are measured in closed loop
  only (they take chat requests).
- **Server cost.** CPU is utime + stime of the server process and its children (from
  `/proc/<pid>/stat`) during the run, divided by the requests it handled; Postgres CPU is that of
  the Postgres backends serving the router's pool, which is not part of the router's figure
  (best effort: a backend that closed during the run is not counted, so when the pool churns,
  as it does when the router is overloaded, the figure is missing or too low).
  Peak RSS is VmHWM. *Overhead* is the router's own `router_overhead_seconds` histogram (total
  minus the agent call) and *server p50* its `router_latency_seconds`, both for that run alone
  (the difference of two scrapes), as quantiles interpolated within buckets like Prometheus'
  `histogram_quantile`; the end-to-end p50 beside them is what the load generator saw.
- **Peers.** The Portkey gateway runs as `node build/start-server.js --headless` (production
  mode) and is sent `x-portkey-provider: openai` with `x-portkey-custom-host` pointing at the
  upstream's `/v1`; the LiteLLM proxy runs with `--num_workers 1`, a master key, and one model
  `openai/bench` whose `api_base` is the upstream's `/v1`. Both get a small OpenAI chat request.
  Neither writes anything durable per request, while the router classifies, claims a row in its
  database before calling the agent and records the outcome after it: the comparison is of
  what a caller waits for, not of equal work.
- **Correctness.** After each router run the rows added to `signals` must equal the 2xx
  answers; a request that was in flight when the load stopped may or may not have been recorded,
  and so may one answered with an error after its claim (a 503 `database_unavailable` under
  overload: the row stays and the sweeper finishes it), so the rows may exceed the 2xx answers by
  at most the requests without a 2xx ("not 2xx"). No 2xx answer may be a duplicate.
- **Noise.** Around every run the harness also reads the whole machine's CPU time from
  `/proc/stat`; what the benchmark's own processes (the target, the load generator, the
  upstream, the router's Postgres backends, the harness) did not use is *other load*, in cores,
  shown beside each figure. Steal time is what the hypervisor took.
- **Repetitions.** The targets are interleaved (A B C A B C …): each repetition starts every
  target afresh, warms it up, then runs every closed-loop and open-loop level. Figures are
  medians with the range (min to max) over repetitions."""


def _targets_section(result: BenchResult) -> list[str]:
    verdicts = evaluate(result)
    rows = [[v.target, v.goal, v.measured, v.outcome] for v in verdicts]
    met = sum(v.met is True for v in verdicts)
    missed = sum(v.met is False for v in verdicts)
    lines = [
        f"{met} met, {missed} not met, {len(verdicts) - met - missed} not measured. "
        "Each value is the median over the repetitions.",
        "",
    ]
    return lines + markdown_table(["system", "target", "measured", "outcome"], rows)


def _not_run(result: BenchResult) -> list[str]:
    lines = [f"- {t.label}: not run: {t.not_run}" for t in result.targets if t.not_run]
    for session in result.sessions:
        if session.error:
            label = result.label(session.target)
            lines.append(f"- {label}, repetition {session.rep}: {session.error}")
        for run in session.runs:
            if run.error:
                where = level_label(run.mode, run.level)
                lines.append(f"- {result.label(run.target)}, rep {run.rep}, {where}: {run.error}")
    return lines or ["Nothing failed."]


def render(result: BenchResult) -> str:
    plan = result.plan
    quick = " (`--quick`: tiny durations, for the test suite; not figures to quote)"
    passed, checks = correctness(result)
    targets = [f"- **{t.label}** — {t.placement}" for t in result.targets if not t.not_run]
    sections = [
        [
            "# Performance",
            "",
            "Generated by `python -m bench` (`make bench`); do not edit by hand.",
        ],
        ["## How to run", "", HOW_TO_RUN],
        [
            "## This run" + (quick if result.quick else ""),
            "",
            f"- started {result.started}, took {result.elapsed_s / 60:.1f} min: `{result.command}`",
            f"- {plan.reps} repetition(s); closed loop {plan.duration_s} s per run at "
            f"{', '.join(map(str, plan.connections))} connections; open loop "
            f"{plan.open_duration_s:g} s per run at "
            f"{', '.join(f'{r:,.0f}' for r in plan.rates)} req/s",
            *(f"- {note}" for note in result.notes),
            "",
            "Targets:",
            "",
            *targets,
        ],
        ["## At a glance", "", *glance_table(result)],
        ["## Machine", "", *markdown_table(["", ""], [list(row) for row in result.machine])],
        ["## Method", "", METHOD],
        ["## Closed loop (wrk)", "", *closed_table(result)],
        ["## Open loop (fixed rate, the project's load generator)", "", *open_table(result)],
        ["## Server cost per run", "", *server_table(result)],
    ]
    soak = soak_table(result)
    if len(soak) > 2:
        sections.append(["## Memory over a second run at the top rate", "", *soak])
    sections += [
        ["## Correctness", "", *checks],
        ["## Noise", "", *noise(result)],
        ["## Targets", "", *_targets_section(result)],
        ["## Not run and errors", "", *_not_run(result)],
    ]
    del passed
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
