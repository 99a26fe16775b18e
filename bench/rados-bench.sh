#!/usr/bin/env bash
# rados-bench.sh - Cairn vs real Ceph 16, same `rados bench` commands, same machine, one run.
#
#   bench/rados-bench.sh                # REPS=2 RT=20: ~15 min (plus Ceph package install the first time)
#   REPS=1 RT=10 bench/rados-bench.sh   # quick check, ~6 min
#
# 1. builds Cairn (release), starts a fresh 1 mon + 3 OSD cluster in bench/.work/…/cairn, and per rep:
#    creates pools volumes + small (32 PGs, size 3), runs
#      rados bench -p volumes $RT write -b 4M -t 16 --no-cleanup ; seq -t 16 ; rand -t 16
#      rados bench -p small   $RT write -b 4K -t 16 --no-cleanup ; seq -t 16 ; rand -t 16
#    with `cairn rados …`, then removes both pools (Cairn has no `rados cleanup` yet); stops it.
# 2. brings up real Ceph with shared/tools/ceph-reference/up.sh --fresh (1 mon, 1 mgr, 3 BlueStore
#    OSDs, size 3, data dir outside the repo), runs the same commands with the real `rados`,
#    `rados -p … cleanup` after each rep, then down.sh --purge.
# 3. parses every summary into bench/results/rados-bench-<date>.md (Cairn, Ceph, Cairn/Ceph, every rep).
#
# Env: REPS (2), RT (20 s per run), SKIP_CAIRN=1 / SKIP_CEPH=1 (measure one side only),
#      CEPH_REF (dir of up.sh/down.sh, default <repo>/../shared/tools/ceph-reference), CARGO_TARGET_DIR,
#      CEPH_ANCHOR_* (passed through to up.sh/down.sh, see its README).
# Raw logs: bench/.work/rados-bench-<stamp>/ (gitignored). Never runs Cairn and Ceph at the same time.
set -euo pipefail

REPS=${REPS:-2}
RT=${RT:-20}
SKIP_CAIRN=${SKIP_CAIRN:-0}
SKIP_CEPH=${SKIP_CEPH:-0}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "REPS must be a positive integer" >&2; exit 2; }
[[ $RT =~ ^[1-9][0-9]*$ ]] || { echo "RT must be a positive integer (seconds)" >&2; exit 2; }

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
CEPH_REF=${CEPH_REF:-$(cd "$ROOT/.." && pwd)/shared/tools/ceph-reference}
CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
SYSPY=/usr/bin/python3          # not a pyenv shim: plain stdlib is all the report needs
STAMP=$(date +%Y-%m-%d-%H%M%S)
DAY=$(date +%Y-%m-%d)
WORK=$BENCH/.work/rados-bench-$STAMP
LOGS=$WORK/logs
CDIR=$WORK/cairn                # the Cairn cluster's dir (conf, data, daemon logs)
mkdir -p "$LOGS" "$BENCH/results"
RESULT=$BENCH/results/rados-bench-$DAY.md
[[ -e $RESULT ]] && RESULT=$BENCH/results/rados-bench-$STAMP.md
T_START=$(date +%s)

# Per-run timeouts: a hang must end the script, not stall it. seq/rand/write stop after RT
# seconds; the slack covers connection set-up and in-flight ops.
BENCH_TIMEOUT=$((RT * 3 + 120))
CLEANUP_TIMEOUT=900

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$WORK/run.log" >&2; }
die() { log "FAILED: $*"; exit 1; }

CAIRN_RUNNING=0
CEPH_RUNNING=0
CEPH_CONF_PATH=""
on_exit() {
  local rc=$?
  if [[ $CAIRN_RUNNING == 1 ]]; then
    log "stopping Cairn (exit path)"
    "$CAIRN" down --dir "$CDIR" >>"$WORK/run.log" 2>&1 || true
  fi
  if [[ $CEPH_RUNNING == 1 ]]; then
    # keep the data on failure (inspect it, then `down.sh --purge`)
    log "stopping Ceph (exit path; data kept, purge with $CEPH_REF/down.sh --purge)"
    "$CEPH_REF/down.sh" >>"$WORK/run.log" 2>&1 || true
  fi
  if [[ $rc != 0 ]]; then log "exit code $rc; raw logs in $WORK"; fi
}
trap on_exit EXIT

# ------------------------------------------------------------------ sanity
other_ceph=$(for n in ceph-osd ceph-mon ceph-mgr; do pgrep -x "$n" || true; done | paste -sd, -)
[[ -z $other_ceph ]] || die "Ceph daemons already running (pids $other_ceph): stop them first (never bench both at once)"
[[ $SKIP_CEPH == 1 || -x $CEPH_REF/up.sh ]] || die "no $CEPH_REF/up.sh (set CEPH_REF)"

# ------------------------------------------------------------------ machine block
{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- git commit: $(git -C "$ROOT" rev-parse --short HEAD) ($(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l) tracked files modified in the work tree when built: others edit concurrently)"
  echo "- nproc: $(nproc)"
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "- kernel: $(uname -r) ($(uname -m))"
  echo "- OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- disk (fs of bench/.work): $(df -h --output=source,size,avail "$WORK" | tail -1 | tr -s ' ')"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  # others' clusters (integration tests, dev clusters) share the 2 cores: say how many, and where
  others=$(pgrep -a cairn | grep -v -F "$CDIR" || true)
  if [[ -n $others ]]; then
    echo "- other cairn processes at start (not ours): $(wc -l <<<"$others"), conf files: $(grep -o -- '-c [^ ]*' <<<"$others" | cut -c4- | sort -u | paste -sd' ' -)"
  else
    echo "- other cairn processes at start (not ours): none"
  fi
  echo "- REPS=$REPS, RT=$RT s"
  echo
  echo '`free -g`:'
  echo
  echo '```'
  free -g
  echo '```'
} > "$WORK/machine.md"
cat "$WORK/machine.md" >&2
: > "$WORK/commands.md"

# run_bench SYSTEM REP TEST CMD… : runs one measurement into $LOGS/SYSTEM-rREP-TEST.log
run_bench() {
  local sys=$1 rep=$2 test=$3; shift 3
  local out=$LOGS/$sys-r$rep-$test.log rc=0
  log "$sys rep $rep $test: $*"
  local shown=${*/#$CAIRN/cairn}   # the binary's path is noise in the report
  printf '+ %s\n' "$*" > "$out"
  if [[ $rep == 1 ]]; then printf -- '- %s: `%s`\n' "$sys" "$shown" >> "$WORK/commands.md"; fi
  local t0=$SECONDS
  timeout -k 10 "$BENCH_TIMEOUT" "$@" >>"$out" 2>&1 || rc=$?
  printf '+ exit %s after %s s\n' "$rc" "$((SECONDS - t0))" >> "$out"
  if [[ $rc != 0 ]]; then
    log "$sys $test exited $rc (124 = timed out after $BENCH_TIMEOUT s); output tail:"
    tail -25 "$out" >&2
    return "$rc"
  fi
  if ! grep -q '^Bandwidth (MB/sec):' "$out"; then
    log "$sys $test: exit 0 but no summary in the output; tail:"
    tail -25 "$out" >&2
    return 1
  fi
  grep -E '^(Bandwidth \(MB/sec\)|Average IOPS|Average Latency\(s\)|Max latency\(s\)):' "$out" | tr -s ' ' | paste -sd' ' - >&2
}

# ------------------------------------------------------------------ Cairn
cairn_failed() {  # print what a Cairn bug report needs, then stop
  log "Cairn failed: $*"
  for f in "$CDIR"/log/*; do
    [[ -f $f ]] || continue
    echo "----- tail -30 $f" >&2
    tail -30 "$f" >&2
  done
  die "Cairn: $*"
}
cairn_wait_ok() {  # until HEALTH_OK (all PGs active+clean), max 120 s
  local h=""
  for _ in $(seq 240); do
    h=$("$CAIRN" health 2>&1 || true)
    [[ $h == HEALTH_OK* ]] && return 0
    sleep 0.5
  done
  cairn_failed "not HEALTH_OK 120 s after creating pools: $h"
}
cairn_phase() {
  echo "- load average before the Cairn phase: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/versions.md"
  log "building Cairn (release)"
  local t0=$SECONDS
  (cd "$ROOT" && cargo build --release -p cairn-cli) >"$LOGS/cairn-build.log" 2>&1 \
    || { tail -30 "$LOGS/cairn-build.log" >&2; die "cargo build failed (see $LOGS/cairn-build.log)"; }
  log "build took $((SECONDS - t0)) s"
  echo "- cairn: $("$CAIRN" --version), built in $((SECONDS - t0)) s" >> "$WORK/versions.md"

  log "cairn up --daemon --osds 3 --dir $CDIR"
  rm -rf "$CDIR"
  CAIRN_RUNNING=1
  timeout 180 "$CAIRN" up --daemon --osds 3 --dir "$CDIR" >"$LOGS/cairn-up.log" 2>&1 \
    || { cat "$LOGS/cairn-up.log" >&2; cairn_failed "cairn up failed"; }
  export CAIRN_CONF=$CDIR/cairn.conf
  printf -- '- cairn: `cairn up --daemon --osds 3 --dir %s`; per rep `cairn osd pool create volumes 32`, `cairn osd pool create small 32`, `cairn osd pool application enable <pool> rbd`; after each rep both pools are removed (`cairn osd pool rm <pool> <pool> --yes-i-really-really-mean-it`; no `rados cleanup` in Cairn yet)\n' "$CDIR" >> "$WORK/setup.md"

  for rep in $(seq "$REPS"); do
    for p in volumes small; do
      "$CAIRN" osd pool create "$p" 32 >>"$LOGS/cairn-admin.log" 2>&1 || cairn_failed "osd pool create $p"
      "$CAIRN" osd pool application enable "$p" rbd >>"$LOGS/cairn-admin.log" 2>&1 || cairn_failed "application enable $p"
    done
    cairn_wait_ok
    "$CAIRN" osd pool ls detail >>"$LOGS/cairn-admin.log" 2>&1 || true
    run_bench cairn "$rep" w4m "$CAIRN" rados bench -p volumes "$RT" write -b 4M -t 16 --no-cleanup || cairn_failed "4M write"
    run_bench cairn "$rep" s4m "$CAIRN" rados bench -p volumes "$RT" seq -t 16 || cairn_failed "4M seq"
    run_bench cairn "$rep" r4m "$CAIRN" rados bench -p volumes "$RT" rand -t 16 || cairn_failed "4M rand"
    run_bench cairn "$rep" w4k "$CAIRN" rados bench -p small "$RT" write -b 4K -t 16 --no-cleanup || cairn_failed "4K write"
    run_bench cairn "$rep" s4k "$CAIRN" rados bench -p small "$RT" seq -t 16 || cairn_failed "4K seq"
    run_bench cairn "$rep" r4k "$CAIRN" rados bench -p small "$RT" rand -t 16 || cairn_failed "4K rand"
    { "$CAIRN" -s; "$CAIRN" df; } >>"$LOGS/cairn-admin.log" 2>&1 || true
    for p in volumes small; do
      "$CAIRN" osd pool rm "$p" "$p" --yes-i-really-really-mean-it >>"$LOGS/cairn-admin.log" 2>&1 || cairn_failed "osd pool rm $p"
    done
  done
  du -sh "$CDIR" >>"$LOGS/cairn-admin.log" 2>&1 || true
  log "cairn down"
  "$CAIRN" down --dir "$CDIR" >>"$LOGS/cairn-admin.log" 2>&1 || cairn_failed "cairn down failed"
  CAIRN_RUNNING=0
  # the daemons must be gone before Ceph starts
  for _ in $(seq 30); do pgrep -f -- "-c $CDIR/cairn.conf" >/dev/null || break; sleep 1; done
  ! pgrep -f -- "-c $CDIR/cairn.conf" >/dev/null || die "Cairn daemons of $CDIR still running after cairn down"
  rm -rf "$CDIR"/osd.* "$CDIR"/mon.*   # data only; logs stay for inspection
}

# ------------------------------------------------------------------ Ceph
ceph_wait_ok() {
  local h=""
  for _ in $(seq 60); do
    h=$(timeout 30 ceph --connect-timeout 20 health 2>&1 || true)
    [[ $h == HEALTH_OK* ]] && return 0
    sleep 2
  done
  die "Ceph not HEALTH_OK after 120 s: $h"
}
ceph_phase() {
  echo "- load average before the Ceph phase: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/versions.md"
  log "Ceph: $CEPH_REF/up.sh --fresh (installs packages if missing; ~40 s to HEALTH_OK)"
  local t0=$SECONDS
  CEPH_RUNNING=1
  "$CEPH_REF/up.sh" --fresh >"$LOGS/ceph-up.log" 2>&1 || { tail -40 "$LOGS/ceph-up.log" >&2; die "up.sh failed (see $LOGS/ceph-up.log)"; }
  log "up.sh took $((SECONDS - t0)) s"
  CEPH_CONF_PATH=$(sed -n 's/^export CEPH_CONF=//p' "$LOGS/ceph-up.log" | tail -1)
  [[ -f $CEPH_CONF_PATH ]] || die "could not find CEPH_CONF in up.sh output"
  export CEPH_CONF=$CEPH_CONF_PATH
  echo "- ceph: $(ceph --version 2>/dev/null | head -1), BlueStore, up.sh took $((SECONDS - t0)) s" >> "$WORK/versions.md"
  local C="timeout 60 ceph --connect-timeout 20"
  # up.sh created volumes (32 PGs, size 3, rbd); small is ours
  $C osd pool ls | grep -qx volumes || { $C osd pool create volumes 32 32 replicated && $C osd pool application enable volumes rbd; } >>"$LOGS/ceph-admin.log" 2>&1
  $C osd pool ls | grep -qx small || { $C osd pool create small 32 32 replicated && $C osd pool application enable small rbd; } >>"$LOGS/ceph-admin.log" 2>&1
  for p in volumes small; do $C osd pool set "$p" size 3 >>"$LOGS/ceph-admin.log" 2>&1; done
  ceph_wait_ok
  $C osd pool ls detail >>"$LOGS/ceph-admin.log" 2>&1 || true
  printf -- '- ceph: `%s/up.sh --fresh` (creates `volumes`, 32 PGs, size 3, application rbd); `ceph osd pool create small 32 32 replicated`, `ceph osd pool application enable small rbd`; after each rep `rados -p volumes cleanup`, `rados -p small cleanup`; at the end `down.sh --purge`\n' "$CEPH_REF" >> "$WORK/setup.md"

  for rep in $(seq "$REPS"); do
    ceph_wait_ok
    run_bench ceph "$rep" w4m rados bench -p volumes "$RT" write -b 4M -t 16 --no-cleanup || die "ceph 4M write"
    run_bench ceph "$rep" s4m rados bench -p volumes "$RT" seq -t 16 || die "ceph 4M seq"
    run_bench ceph "$rep" r4m rados bench -p volumes "$RT" rand -t 16 || die "ceph 4M rand"
    run_bench ceph "$rep" w4k rados bench -p small "$RT" write -b 4K -t 16 --no-cleanup || die "ceph 4K write"
    run_bench ceph "$rep" s4k rados bench -p small "$RT" seq -t 16 || die "ceph 4K seq"
    run_bench ceph "$rep" r4k rados bench -p small "$RT" rand -t 16 || die "ceph 4K rand"
    { $C -s; $C df; } >>"$LOGS/ceph-admin.log" 2>&1 || true
    log "ceph cleanup rep $rep"
    for p in volumes small; do
      timeout "$CLEANUP_TIMEOUT" rados -p "$p" cleanup >>"$LOGS/ceph-admin.log" 2>&1 || die "rados -p $p cleanup"
    done
  done
  log "Ceph: down.sh --purge"
  "$CEPH_REF/down.sh" --purge >>"$LOGS/ceph-admin.log" 2>&1 || die "down.sh failed"
  CEPH_RUNNING=0
}

: > "$WORK/versions.md"; : > "$WORK/setup.md"
[[ $SKIP_CAIRN == 1 ]] || cairn_phase
[[ $SKIP_CEPH == 1 ]] || ceph_phase

# ------------------------------------------------------------------ report
ELAPSED=$(( $(date +%s) - T_START ))
log "writing $RESULT"
"$SYSPY" - "$WORK" "$REPS" "$RT" "$ELAPSED" "$RESULT" <<'PY'
import os, re, sys

work, reps, rt, elapsed, result = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
logs = os.path.join(work, "logs")
FIELDS = {
    "bw": r"^Bandwidth \(MB/sec\):\s*([0-9.]+)",
    "iops": r"^Average IOPS:\s*([0-9.]+)",
    "lat": r"^Average Latency\(s\):\s*([0-9.]+)",
    "maxlat": r"^Max latency\(s\):\s*([0-9.]+)",
    "time": r"^Total time run:\s*([0-9.]+)",
    "ops": r"^Total (?:writes|reads) made:\s*([0-9]+)",
}
TESTS = [  # id, title, headline metric
    ("w4m", "4 MiB write (`volumes`, -t 16)", "bw"),
    ("s4m", "4 MiB seq read (`volumes`, -t 16)", "bw"),
    ("r4m", "4 MiB rand read (`volumes`, -t 16)", "bw"),
    ("w4k", "4 KiB write (`small`, -t 16)", "iops"),
    ("s4k", "4 KiB seq read (`small`, -t 16)", "iops"),
    ("r4k", "4 KiB rand read (`small`, -t 16)", "iops"),
]
LABEL = {"bw": "Bandwidth (MB/s)", "iops": "Average IOPS", "lat": "Avg latency (ms)",
         "maxlat": "Max latency (ms)", "time": "Total time run (s)", "ops": "Ops completed"}

def parse(sys_, rep, test):
    p = os.path.join(logs, f"{sys_}-r{rep}-{test}.log")
    if not os.path.exists(p):
        return None
    text = open(p, errors="replace").read()
    out = {}
    for k, rx in FIELDS.items():
        m = re.search(rx, text, re.M)
        if m:
            v = float(m.group(1))
            out[k] = v * 1000 if k in ("lat", "maxlat") else v
    return out or None

def fmt(v, k):
    if v is None:
        return "–"
    if k in ("lat", "maxlat"):
        return f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    if k in ("bw",):
        return f"{v:.1f}"
    if k == "time":
        return f"{v:.1f}"
    return f"{v:.0f}"

def runs(sys_, test, k):
    vals = []
    for r in range(1, reps + 1):
        d = parse(sys_, r, test)
        vals.append(d.get(k) if d else None)
    return vals

def mean(vs):
    vs = [v for v in vs if v is not None]
    return sum(vs) / len(vs) if vs else None

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

def rfmt(x):
    return "–" if x is None else f"{x:.2f}"

def cell(vs, k):
    return " / ".join(fmt(v, k) for v in vs)

def read(name):
    p = os.path.join(work, name)
    return open(p).read().strip() if os.path.exists(p) else ""

L = []
L.append(f"# `rados bench`: Cairn vs Ceph 16.2.15 on this machine ({read('machine.md').splitlines()[0][len('- date: '):]})")
L.append("")
L.append("Produced by `bench/rados-bench.sh` (see `bench/README.md`); raw logs were in "
         f"`bench/.work/{os.path.basename(work)}/` (not committed). Script wall time: {elapsed // 60} min {elapsed % 60} s.")
L.append("")
L.append("**This machine is noisy** (2 vCPUs shared with other work, cluster and client on the same cores, a "
         "virtio disk that is probably host-cached): absolute numbers move by tens of percent between runs. "
         "**Quote the Cairn/Ceph ratios**, measured back to back on the same hardware, not the absolute figures. "
         "These are measurements, not timed tests: nothing here passes or fails.")
L.append("")
L.append("Cells show every rep (`run1 / run2 / …`). Ratio = Cairn/Ceph of the per-system means, "
         "per-rep ratios in brackets; for bandwidth/IOPS > 1 means Cairn is faster, for latency < 1 means Cairn is faster. "
         "`rados bench` \"MB\" are MiB. `seq` stops early once every object of the preceding write has been read, "
         "so its time run is shown as well.")
L.append("")
L.append("## Summary (headline metric, mean of reps)")
L.append("")
L.append("| Test | Metric | Cairn | Ceph | Cairn/Ceph |")
L.append("|---|---|---|---|---|")
for tid, title, k in TESTS:
    c, e = runs("cairn", tid, k), runs("ceph", tid, k)
    L.append(f"| {title} | {LABEL[k]} | {cell(c, k)} | {cell(e, k)} | **{rfmt(ratio(mean(c), mean(e)))}** |")
L.append("")
for tid, title, k in TESTS:
    L.append(f"## {title}")
    L.append("")
    L.append("| Metric | Cairn | Ceph | Cairn/Ceph |")
    L.append("|---|---|---|---|")
    other = "iops" if k == "bw" else "bw"
    for m in (k, other, "lat", "maxlat", "time", "ops"):
        c, e = runs("cairn", tid, m), runs("ceph", tid, m)
        per = [rfmt(ratio(a, b)) for a, b in zip(c, e)]
        rr = rfmt(ratio(mean(c), mean(e)))
        if reps > 1:
            rr += f" ({' / '.join(per)})"
        L.append(f"| {LABEL[m]} | {cell(c, m)} | {cell(e, m)} | {rr} |")
    L.append("")
L.append("## Commands")
L.append("")
L.append(read("commands.md"))
L.append("")
L.append("Cluster set-up:")
L.append("")
L.append(read("setup.md"))
L.append("")
L.append("Both clusters: 1 mon + 3 OSDs on 127.0.0.1, size 3, 32 PGs per pool, failure domain osd; "
         "Cairn and Ceph never ran at the same time.")
L.append("")
L.append("## Machine")
L.append("")
L.append(read("machine.md"))
L.append("")
L.append(read("versions.md"))
L.append("")
open(result, "w").write("\n".join(L))
open(os.path.join(work, "results.md"), "w").write("\n".join(L))
PY
log "done in $ELAPSED s: $RESULT (raw logs: $WORK)"
cat "$RESULT"
