#!/usr/bin/env bash
# rbd-nbd-bench.sh - Cairn vs real Ceph 16: RBD image operations, `rbd bench`, and fio against a
# block device (Cairn over its NBD server, Ceph through librbd), same machine, one run.
#
#   bench/rbd-nbd-bench.sh              # RT=15: ~15 min (plus the release build and Ceph package install)
#   RT=5 CLONE_REPS=1 bench/rbd-nbd-bench.sh   # quick end-to-end check
#
# Both clusters: 1 mon + 3 OSDs on 127.0.0.1, pool `rbd` (32 PGs, size 3), client cache OFF on both
# sides (`[client] rbd cache = false`: Ceph's ceph-nocache.conf, and the same line appended to the
# cairn.conf that `cairn up` writes; both default to a write-back cache otherwise). Per system:
#  1. image operations (issue 3), every one timed:
#       rbd create rbd/p10g --size 10G ; rbd create rbd/p1g --size 1G
#       rbd import --no-progress rand1g.raw rbd/imp1g        (1 GiB of /dev/urandom, made once)
#       rbd snap create / snap protect  rbd/{p10g,p1g,imp1g}@s
#       rbd clone rbd/p10g@s rbd/c10g-N ; rbd clone rbd/p1g@s rbd/c1g-N ; rbd clone rbd/imp1g@s rbd/cd-N
#       rbd flatten --no-progress rbd/cd-1                   (copies 1 GiB of parent data)
#       rbd export rbd/cd-1 - | cmp - rand1g.raw              (not timed: checks import + flatten)
#     then `rbd bench` on rbd/bench1g (1 GiB, first filled by a 4M seq write):
#       rbd bench --io-type write|read --io-size 4K --io-threads 1|32 --io-pattern rand --io-total T rbd/bench1g
#  2. fio (issue 4) on rbd/fio1g (1 GiB, filled by a 4M sequential fio write first), RT s each, 1 job:
#       4K randwrite QD1/QD32, 4K randread QD1/QD32, 4M seq write/read QD16
#     Cairn: `cairn nbd serve --listen 127.0.0.1:PORT rbd/fio1g` + fio --ioengine=nbd --uri=nbd://127.0.0.1:PORT/rbd/fio1g
#     Ceph:  fio --ioengine=rbd --clientname=admin --pool=rbd --rbdname=fio1g   (librbd inside fio)
#     CPU: utime+stime of the mon/OSD (and mgr) processes from /proc/PID/stat before/after each run,
#     the NBD server's likewise, and fio's own (rusage of the child).
#     Then (unless SKIP_PERF=1) `perf record -g` of the OSDs (+ NBD server) during an extra 4K
#     randwrite QD32 run, top symbols into the report.
#  3. the raw disk: the same fio jobs with --ioengine=libaio --direct=1 on a 2 GiB file in bench/.work.
# Cairn first, then Ceph (up.sh --fresh … down.sh --purge); never both at once.
#
# Env: RT (15 s per fio job), CLONE_REPS (3), RBD_TOTAL_W1/W32/R1/R32 (--io-total of the 4 rbd bench
#      runs; rbd bench has no time limit, defaults give ~10 s on Ceph here), SKIP_CAIRN=1, SKIP_CEPH=1,
#      SKIP_DISK=1, SKIP_PERF=1, SKIP_BUILD=1, CEPH_REF (dir of up.sh/down.sh), CARGO_TARGET_DIR,
#      CEPH_ANCHOR_* (passed to up.sh/down.sh).
# Raw logs: bench/.work/rbd-nbd-<stamp>/ (gitignored). Output: bench/results/rbd-nbd-<date>.md.
set -euo pipefail

RT=${RT:-15}
CLONE_REPS=${CLONE_REPS:-3}
RBD_TOTAL_W1=${RBD_TOTAL_W1:-16M}
RBD_TOTAL_W32=${RBD_TOTAL_W32:-48M}
RBD_TOTAL_R1=${RBD_TOTAL_R1:-128M}
RBD_TOTAL_R32=${RBD_TOTAL_R32:-512M}
SKIP_CAIRN=${SKIP_CAIRN:-0}
SKIP_CEPH=${SKIP_CEPH:-0}
SKIP_DISK=${SKIP_DISK:-0}
SKIP_PERF=${SKIP_PERF:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
REPORT_ONLY=${REPORT_ONLY:-}     # a bench/.work/rbd-nbd-<stamp> dir: only rewrite the report from its logs
[[ $RT =~ ^[1-9][0-9]*$ ]] || { echo "RT must be a positive integer (seconds)" >&2; exit 2; }
[[ $CLONE_REPS =~ ^[1-9][0-9]*$ ]] || { echo "CLONE_REPS must be a positive integer" >&2; exit 2; }

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
CEPH_REF=${CEPH_REF:-$(cd "$ROOT/.." && pwd)/shared/tools/ceph-reference}
CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
SYSPY=/usr/bin/python3          # not a pyenv shim: plain stdlib is all the helpers need
STAMP=$(date +%Y-%m-%d-%H%M%S)
DAY=$(date +%Y-%m-%d)
WORK=$BENCH/.work/rbd-nbd-$STAMP
if [[ -n $REPORT_ONLY ]]; then
  WORK=$(cd "$REPORT_ONLY" && pwd)
  STAMP=${WORK##*/rbd-nbd-}
  DAY=${STAMP:0:10}
fi
LOGS=$WORK/logs
CDIR=$WORK/cairn                # the Cairn cluster's dir (conf, data, daemon logs)
CCONF=$CDIR/cairn.conf
RAW=$WORK/rand1g.raw            # 1 GiB of random data for `rbd import`
DISKFILE=$WORK/rawdisk.fio
NOCACHE=$WORK/ceph-nocache.conf # the Ceph conf plus [client] rbd cache = false
mkdir -p "$LOGS" "$BENCH/results"
RESULT=$BENCH/results/rbd-nbd-$DAY.md
[[ -e $RESULT && -z $REPORT_ONLY ]] && RESULT=$BENCH/results/rbd-nbd-$STAMP.md
T_START=$(date +%s)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$WORK/run.log" >&2; }
die() { log "FAILED: $*"; exit 1; }

CAIRN_RUNNING=0
CEPH_RUNNING=0
CEPH_DATA=""
NBD_PID=""
BG_PIDS=()
on_exit() {
  local rc=$?
  for p in "${BG_PIDS[@]}" $NBD_PID; do
    [[ -n $p && -d /proc/$p ]] && kill -TERM "$p" 2>/dev/null || true
  done
  if [[ $CAIRN_RUNNING == 1 ]]; then
    log "stopping Cairn (exit path)"
    "$CAIRN" down --dir "$CDIR" >>"$WORK/run.log" 2>&1 || true
  fi
  rm -rf "$CDIR"/osd.* "$CDIR"/mon.* 2>/dev/null || true   # data only; logs stay
  if [[ $CEPH_RUNNING == 1 ]]; then
    log "stopping Ceph (exit path): down.sh --purge, its logs copied to $LOGS/ceph-daemon-logs"
    [[ -n $CEPH_DATA && -d $CEPH_DATA/log ]] && cp -r "$CEPH_DATA/log" "$LOGS/ceph-daemon-logs" 2>/dev/null || true
    "$CEPH_REF/down.sh" --purge >>"$WORK/run.log" 2>&1 || true
  fi
  rm -f "$RAW" "$DISKFILE" "$WORK"/*.perf.data "$WORK"/*.perf.data.old
  if [[ $rc != 0 ]]; then log "exit code $rc; raw logs in $WORK"; fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ helpers
# measure.py OUT.json LABEL=PID,... -- CMD...: runs CMD; writes wall time, exit code, the CPU
# seconds (utime+stime) each listed process used meanwhile, and CMD's own CPU (rusage of children).
cat > "$WORK/measure.py" <<'PY'
import json, os, resource, subprocess, sys, time
out, spec = sys.argv[1], sys.argv[2]
cmd = sys.argv[sys.argv.index("--") + 1:]
TCK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
        f = s[s.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / TCK
    except (OSError, ValueError, IndexError):
        return None
pids = [x.split("=", 1) for x in spec.split(",") if "=" in x]
before = {l: cpu(p) for l, p in pids}
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
rc = subprocess.call(cmd)
wall = time.monotonic() - t0
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
after = {l: cpu(p) for l, p in pids}
used = {l: (after[l] - before[l]) if before[l] is not None and after[l] is not None else None for l, _ in pids}
json.dump({"cmd": cmd, "rc": rc, "wall": wall,
           "client_cpu": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), "cpu": used},
          open(out, "w"))
sys.exit(rc)
PY

# daemon pids as LABEL=PID,…: mon/osd (+ mgr on Ceph) from the pid files, plus our NBD server
PIDDIR=""
daemon_pids() {
  local f out=()
  if [[ -n $PIDDIR ]]; then
    for f in "$PIDDIR"/mon.*.pid "$PIDDIR"/mgr.*.pid "$PIDDIR"/osd.*.pid; do
      [[ -s $f ]] && out+=("$(basename "$f" .pid)=$(cat "$f")")
    done
  fi
  [[ -n $NBD_PID ]] && out+=("nbd=$NBD_PID")
  local IFS=,
  echo "${out[*]}"
}
osd_pids() {  # comma list of OSD pids (+ the NBD server), for perf
  local f out=()
  for f in "$PIDDIR"/osd.*.pid; do [[ -s $f ]] && out+=("$(cat "$f")"); done
  [[ -n $NBD_PID ]] && out+=("$NBD_PID")
  local IFS=,
  echo "${out[*]}"
}

# m SYS TAG TIMEOUT CMD…: one measured run -> $LOGS/SYS-TAG.log (output) + SYS-TAG.m.json
m() {
  local sys=$1 tag=$2 to=$3; shift 3
  local out=$LOGS/$sys-$tag.log rc=0
  local shown="$*"
  shown=${shown//$CAIRN/cairn}
  log "$sys $tag: $shown"
  printf '+ %s\n' "$*" > "$out"
  "$SYSPY" "$WORK/measure.py" "$LOGS/$sys-$tag.m.json" "$(daemon_pids)" -- timeout -k 10 "$to" "$@" >>"$out" 2>&1 || rc=$?
  printf '+ exit %s\n' "$rc" >> "$out"
  if [[ $rc != 0 ]]; then
    log "$sys $tag exited $rc (124 = timed out after $to s); output tail:"
    tail -15 "$out" >&2
    return "$rc"
  fi
  "$SYSPY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("  wall %.3f s, client cpu %.2f s, daemons %s" % (d["wall"], d["client_cpu"], {k: round(v, 2) for k, v in d["cpu"].items() if v is not None}))' "$LOGS/$sys-$tag.m.json" >&2
}

if [[ -z $REPORT_ONLY ]]; then   # (the measurements; REPORT_ONLY skips to the report)
# ------------------------------------------------------------------ sanity
other_ceph=$(for n in ceph-osd ceph-mon ceph-mgr; do pgrep -x "$n" || true; done | paste -sd, -)
if [[ $SKIP_CEPH != 1 && -n $other_ceph ]]; then
  die "Ceph daemons already running (pids $other_ceph; $(for p in ${other_ceph//,/ }; do tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null; echo; done | head -1)): they share up.sh's ports and the 2 cores; stop them first (never bench both at once)"
fi
[[ $SKIP_CEPH == 1 || -x $CEPH_REF/up.sh ]] || die "no $CEPH_REF/up.sh (set CEPH_REF)"
command -v fio >/dev/null || die "fio is not installed (apt-get install fio)"
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine (needs libnbd)"
HAVE_PERF=0
if [[ $SKIP_PERF != 1 ]]; then
  command -v perf >/dev/null && perf record -q -o /dev/null -- true >/dev/null 2>&1 && HAVE_PERF=1
  [[ $HAVE_PERF == 1 ]] || log "perf not usable (apt-get install linux-perf); skipping profiles"
fi

# ------------------------------------------------------------------ machine block
{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- git commit: $(git -C "$ROOT" rev-parse --short HEAD) ($(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l) tracked files modified in the work tree when built: others edit concurrently)"
  echo "- nproc: $(nproc)"
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "- kernel: $(uname -r) ($(uname -m))"
  echo "- OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- disk (fs of bench/.work): $(df -h --output=source,size,avail "$WORK" | tail -1 | tr -s ' ')"
  echo "- fio: $(fio --version), perf: $([[ $HAVE_PERF == 1 ]] && perf --version || echo 'not used')"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  others=$(pgrep -a cairn | grep -v -F "$CDIR" || true)
  if [[ -n $others ]]; then
    echo "- other cairn processes at start (not ours): $(wc -l <<<"$others")"
  else
    echo "- other cairn processes at start (not ours): none"
  fi
  echo "- RT=$RT s per fio job, CLONE_REPS=$CLONE_REPS, rbd bench --io-total: write t1 $RBD_TOTAL_W1, write t32 $RBD_TOTAL_W32, read t1 $RBD_TOTAL_R1, read t32 $RBD_TOTAL_R32"
  echo
  echo '`free -g`:'
  echo
  echo '```'
  free -g
  echo '```'
} > "$WORK/machine.md"
cat "$WORK/machine.md" >&2
: > "$WORK/versions.md"
: > "$WORK/setup.md"

if [[ $SKIP_CAIRN != 1 || $SKIP_CEPH != 1 ]]; then
  log "writing 1 GiB of /dev/urandom to $RAW (import source)"
  head -c 1G /dev/urandom > "$RAW"
fi

# ------------------------------------------------------------------ the measurements (both systems)
# RBD=(the rbd command of this system); FIO_ENGINE=(fio engine args); PIDDIR set by the phase.
sec_ctl() {
  local s=$1
  log "== $s: image operations"
  m "$s" create-10g 120 "${RBD[@]}" create rbd/p10g --size 10G || true
  m "$s" create-1g 120 "${RBD[@]}" create rbd/p1g --size 1G || true
  m "$s" import-1g 900 "${RBD[@]}" import --no-progress "$RAW" rbd/imp1g || true
  local img
  for img in p10g p1g imp1g; do
    m "$s" "snap-create-$img" 120 "${RBD[@]}" snap create "rbd/$img@s" || true
    m "$s" "snap-protect-$img" 120 "${RBD[@]}" snap protect "rbd/$img@s" || true
  done
  local i
  for i in $(seq "$CLONE_REPS"); do
    m "$s" "clone-10g-$i" 120 "${RBD[@]}" clone rbd/p10g@s "rbd/c10g-$i" || true
    m "$s" "clone-1g-$i" 120 "${RBD[@]}" clone rbd/p1g@s "rbd/c1g-$i" || true
    m "$s" "clone-1gdata-$i" 120 "${RBD[@]}" clone rbd/imp1g@s "rbd/cd-$i" || true
  done
  m "$s" flatten-1g 900 "${RBD[@]}" flatten --no-progress rbd/cd-1 || true
  # correctness, not timed: the flattened clone holds exactly the imported bytes
  local v
  if v=$(timeout 600 "${RBD[@]}" export --no-progress rbd/cd-1 - 2>>"$LOGS/$s-verify.log" | cmp - "$RAW" 2>&1); then
    echo "identical" > "$LOGS/$s-verify.txt"
  else
    echo "NOT identical or export failed: ${v:-see $s-verify.log}" > "$LOGS/$s-verify.txt"
  fi
  log "$s: flattened clone vs imported file: $(cat "$LOGS/$s-verify.txt")"
}

sec_rbdbench() {
  local s=$1
  log "== $s: rbd bench"
  "${RBD[@]}" create rbd/bench1g --size 1G >>"$LOGS/$s-admin.log" 2>&1 || { log "$s: rbd create rbd/bench1g failed"; return 1; }
  m "$s" rbdbench-write-4m-seq-t16 600 "${RBD[@]}" bench --io-type write --io-size 4M --io-threads 16 --io-total 1G --io-pattern seq rbd/bench1g || true
  m "$s" rbdbench-write-4k-t1 600 "${RBD[@]}" bench --io-type write --io-size 4K --io-threads 1 --io-total "$RBD_TOTAL_W1" --io-pattern rand rbd/bench1g || true
  m "$s" rbdbench-write-4k-t32 600 "${RBD[@]}" bench --io-type write --io-size 4K --io-threads 32 --io-total "$RBD_TOTAL_W32" --io-pattern rand rbd/bench1g || true
  m "$s" rbdbench-read-4k-t1 600 "${RBD[@]}" bench --io-type read --io-size 4K --io-threads 1 --io-total "$RBD_TOTAL_R1" --io-pattern rand rbd/bench1g || true
  m "$s" rbdbench-read-4k-t32 600 "${RBD[@]}" bench --io-type read --io-size 4K --io-threads 32 --io-total "$RBD_TOTAL_R32" --io-pattern rand rbd/bench1g || true
}

FIO_JOBS=(
  "randwrite-4k-qd1:--rw=randwrite --bs=4k --iodepth=1"
  "randwrite-4k-qd32:--rw=randwrite --bs=4k --iodepth=32"
  "randread-4k-qd1:--rw=randread --bs=4k --iodepth=1"
  "randread-4k-qd32:--rw=randread --bs=4k --iodepth=32"
  "write-4m-qd16:--rw=write --bs=4M --iodepth=16"
  "read-4m-qd16:--rw=read --bs=4M --iodepth=16"
)
# sec_fio SYS SIZE: fill, then every job; FIO_ENGINE set by the caller
sec_fio() {
  local s=$1 size=$2 spec tag args
  log "== $s: fio ($size target)"
  m "$s" fio-fill 900 fio --name=fill "${FIO_ENGINE[@]}" --rw=write --bs=4M --iodepth=16 --size="$size" \
    --output-format=json --output="$LOGS/$s-fio-fill.json" || return 1
  for spec in "${FIO_JOBS[@]}"; do
    tag=${spec%%:*}; args=${spec#*:}
    # shellcheck disable=SC2086
    m "$s" "fio-$tag" $((RT * 3 + 120)) fio --name="$tag" "${FIO_ENGINE[@]}" --size="$size" $args \
      --runtime="$RT" --time_based --output-format=json --output="$LOGS/$s-fio-$tag.json" || true
  done
}

# profile SYS: during an extra (unmeasured) 4K randwrite QD32 run, `perf record -g` of the OSDs
# (+ NBD server) and `perf stat` of their syscalls (fsync & co per client write)
PERF_SYSCALLS="fsync fdatasync sync_file_range pwrite64 pwritev pwritev2 write writev io_submit io_getevents io_uring_enter pread64 preadv read readv sendmsg sendto sendmmsg recvmsg recvfrom futex epoll_wait sched_yield"
profile() {
  local s=$1
  [[ $HAVE_PERF == 1 ]] || return 0
  log "== $s: perf record -g / perf stat -p <OSDs, NBD server> during fio 4K randwrite QD32 (not measured)"
  fio --name=perf-randwrite "${FIO_ENGINE[@]}" --size=1G --rw=randwrite --bs=4k --iodepth=32 \
    --runtime=$((RT + 6)) --time_based --output-format=json --output="$LOGS/$s-perf-fio.json" >"$LOGS/$s-perf-fio.log" 2>&1 &
  local fpid=$! spid ev events="context-switches,task-clock"
  BG_PIDS+=("$fpid")
  for ev in $PERF_SYSCALLS; do
    perf list "syscalls:sys_enter_$ev" 2>/dev/null | grep -q "sys_enter_$ev\b" && events+=",syscalls:sys_enter_$ev"
  done
  sleep 3
  local data=$WORK/$s.perf.data
  perf stat -x, -e "$events" -p "$(osd_pids)" -o "$LOGS/$s-perf-stat.csv" -- sleep "$RT" >/dev/null 2>&1 &
  spid=$!
  BG_PIDS+=("$spid")
  perf record -F 499 -g -p "$(osd_pids)" -o "$data" -- sleep "$RT" >"$LOGS/$s-perf-record.log" 2>&1 || log "$s: perf record failed (see $LOGS/$s-perf-record.log)"
  wait "$spid" || log "$s: perf stat failed"
  wait "$fpid" || true
  if [[ -s $data ]]; then
    perf report -i "$data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20 > "$LOGS/$s-perf-comm.txt" || true
    perf report -i "$data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.3 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -60 > "$LOGS/$s-perf-sym.txt" || true
    perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20 > "$LOGS/$s-perf-dso.txt" || true
    perf report -i "$data" --children --sort sym --stdio -g none --percent-limit 3 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -40 > "$LOGS/$s-perf-children.txt" || true
    log "$s: top self costs:"; head -8 "$LOGS/$s-perf-sym.txt" >&2
  fi
  rm -f "$data" "$data.old"
}

wait_port() {  # until something listens on 127.0.0.1:$1, max 30 s
  for _ in $(seq 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}

# ------------------------------------------------------------------ Cairn
cairn_failed() {  # print what a Cairn bug report needs, then stop
  log "Cairn failed: $*"
  for f in "$CDIR"/log/* "$LOGS/cairn-nbd.log"; do
    [[ -f $f ]] || continue
    echo "----- tail -30 $f" >&2
    tail -30 "$f" >&2
  done
  die "Cairn: $*"
}
cairn_wait_ok() {  # until HEALTH_OK (all PGs active+clean), max 120 s
  local h=""
  for _ in $(seq 240); do
    h=$("$CAIRN" -c "$CCONF" health 2>&1 || true)
    [[ $h == HEALTH_OK* ]] && return 0
    sleep 0.5
  done
  cairn_failed "not HEALTH_OK 120 s after creating the pool: $h"
}
cairn_phase() {
  echo "- load average before the Cairn phase: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/versions.md"
  if [[ $SKIP_BUILD != 1 ]]; then
    log "building Cairn (release)"
    local t0=$SECONDS
    (cd "$ROOT" && cargo build --release -p cairn-cli) >"$LOGS/cairn-build.log" 2>&1 \
      || { tail -30 "$LOGS/cairn-build.log" >&2; die "cargo build failed (see $LOGS/cairn-build.log)"; }
    log "build took $((SECONDS - t0)) s"
    echo "- cairn: $("$CAIRN" --version), built in $((SECONDS - t0)) s" >> "$WORK/versions.md"
  else
    echo "- cairn: $("$CAIRN" --version) (not rebuilt: SKIP_BUILD=1; binary from $(date -r "$CAIRN" '+%Y-%m-%d %H:%M'))" >> "$WORK/versions.md"
  fi
  "$CAIRN" rbd help >/dev/null 2>&1 || die "this cairn has no \`rbd\` command yet ($CAIRN rbd help fails)"

  log "cairn up --daemon --osds 3 --dir $CDIR"
  rm -rf "$CDIR"
  CAIRN_RUNNING=1
  timeout 180 "$CAIRN" up --daemon --osds 3 --dir "$CDIR" >"$LOGS/cairn-up.log" 2>&1 \
    || { cat "$LOGS/cairn-up.log" >&2; cairn_failed "cairn up failed"; }
  # Cairn's client cache has Ceph's defaults (rbd cache = true, writethrough until flush): off, as on Ceph
  printf '\n[client]\n# bench/rbd-nbd-bench.sh: no client write-back cache (as ceph-nocache.conf)\nrbd cache = false\n' >> "$CCONF"
  PIDDIR=$CDIR/run
  local C=("$CAIRN" -c "$CCONF")
  { "${C[@]}" osd pool create rbd 32 && "${C[@]}" osd pool application enable rbd rbd; } >>"$LOGS/cairn-admin.log" 2>&1 \
    || cairn_failed "osd pool create rbd"
  cairn_wait_ok
  "${C[@]}" rbd pool init rbd >>"$LOGS/cairn-admin.log" 2>&1 || true
  "${C[@]}" osd pool ls detail >>"$LOGS/cairn-admin.log" 2>&1 || true
  printf -- '- cairn: `cairn up --daemon --osds 3 --dir DIR`, then `[client] rbd cache = false` appended to DIR/cairn.conf, `cairn osd pool create rbd 32`, `cairn osd pool application enable rbd rbd`; rbd commands as `cairn -c DIR/cairn.conf rbd …`\n' >> "$WORK/setup.md"

  RBD=("$CAIRN" -c "$CCONF" rbd)
  sec_ctl cairn
  sec_rbdbench cairn

  "${RBD[@]}" create rbd/fio1g --size 1G >>"$LOGS/cairn-admin.log" 2>&1 || cairn_failed "rbd create rbd/fio1g"
  local port
  port=$("$SYSPY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log "cairn nbd serve --listen 127.0.0.1:$port rbd/fio1g"
  "$CAIRN" -c "$CCONF" nbd serve --listen "127.0.0.1:$port" rbd/fio1g >"$LOGS/cairn-nbd.log" 2>&1 &
  NBD_PID=$!
  wait_port "$port" || cairn_failed "nbd server not listening on $port"
  printf -- '- cairn NBD: `cairn -c DIR/cairn.conf nbd serve --listen 127.0.0.1:PORT rbd/fio1g` (one process for all fio jobs; exclusive lock on the image)\n' >> "$WORK/setup.md"
  FIO_ENGINE=(--ioengine=nbd "--uri=nbd://127.0.0.1:$port/rbd/fio1g")
  sec_fio cairn 1G || cairn_failed "fio fill through NBD"
  profile cairn
  kill -TERM "$NBD_PID" 2>/dev/null || true
  for _ in $(seq 20); do [[ -d /proc/$NBD_PID ]] || break; sleep 0.5; done
  NBD_PID=""

  { "${C[@]}" -s; "${C[@]}" df; } >>"$LOGS/cairn-admin.log" 2>&1 || true
  du -sh "$CDIR" >>"$LOGS/cairn-admin.log" 2>&1 || true
  log "cairn down"
  "$CAIRN" down --dir "$CDIR" >>"$LOGS/cairn-admin.log" 2>&1 || cairn_failed "cairn down failed"
  CAIRN_RUNNING=0
  PIDDIR=""
  for _ in $(seq 30); do pgrep -f -- "-c $CCONF" >/dev/null || break; sleep 1; done
  ! pgrep -f -- "-c $CCONF" >/dev/null || die "Cairn daemons of $CDIR still running after cairn down"
  rm -rf "$CDIR"/osd.* "$CDIR"/mon.*
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
  local t0=$SECONDS conf
  CEPH_RUNNING=1
  "$CEPH_REF/up.sh" --fresh >"$LOGS/ceph-up.log" 2>&1 || { tail -40 "$LOGS/ceph-up.log" >&2; die "up.sh failed (see $LOGS/ceph-up.log)"; }
  log "up.sh took $((SECONDS - t0)) s"
  conf=$(sed -n 's/^export CEPH_CONF=//p' "$LOGS/ceph-up.log" | tail -1)
  [[ -f $conf ]] || die "could not find CEPH_CONF in up.sh output"
  CEPH_DATA=$(dirname "$conf")
  PIDDIR=$CEPH_DATA/run
  export CEPH_CONF=$conf
  if grep -q '^\[client\]' "$conf"; then
    sed 's/^\[client\]$/[client]\nrbd cache = false/' "$conf" > "$NOCACHE"
  else
    { cat "$conf"; printf '\n[client]\nrbd cache = false\n'; } > "$NOCACHE"
  fi
  echo "- ceph: $(ceph --version 2>/dev/null | head -1), BlueStore, up.sh took $((SECONDS - t0)) s" >> "$WORK/versions.md"
  local C="timeout 60 ceph --connect-timeout 20"
  { $C osd pool create rbd 32 32 replicated && $C osd pool application enable rbd rbd && $C osd pool set rbd size 3 \
    && rbd pool init rbd; } >>"$LOGS/ceph-admin.log" 2>&1 || die "ceph: creating pool rbd"
  ceph_wait_ok
  $C osd pool ls detail >>"$LOGS/ceph-admin.log" 2>&1 || true
  printf -- '- ceph: `%s/up.sh --fresh` (1 mon, 1 mgr, 3 BlueStore OSDs on 10 GiB sparse files, cephx; it also creates pools images/volumes/vms/backups, idle here), `ceph osd pool create rbd 32 32 replicated`, `ceph osd pool application enable rbd rbd`, `rbd pool init rbd`; rbd commands as `rbd -c ceph-nocache.conf …` (up.sh'"'"'s ceph.conf plus `[client] rbd cache = false`), fio with `CEPH_CONF=ceph-nocache.conf`; at the end `down.sh --purge`\n' "$CEPH_REF" >> "$WORK/setup.md"

  RBD=(rbd -c "$NOCACHE")
  sec_ctl ceph
  sec_rbdbench ceph
  rbd -c "$NOCACHE" create rbd/fio1g --size 1G >>"$LOGS/ceph-admin.log" 2>&1 || die "ceph: rbd create rbd/fio1g"
  export CEPH_CONF=$NOCACHE   # fio's rbd engine reads $CEPH_CONF
  FIO_ENGINE=(--ioengine=rbd --clientname=admin --pool=rbd --rbdname=fio1g --invalidate=0)
  sec_fio ceph 1G || die "ceph: fio fill"
  profile ceph
  export CEPH_CONF=$conf
  { $C -s; $C df; } >>"$LOGS/ceph-admin.log" 2>&1 || true
  log "Ceph: down.sh --purge"
  cp -r "$CEPH_DATA/log" "$LOGS/ceph-daemon-logs" 2>/dev/null || true
  "$CEPH_REF/down.sh" --purge >>"$LOGS/ceph-admin.log" 2>&1 || die "down.sh failed"
  CEPH_RUNNING=0
  PIDDIR=""
}

# ------------------------------------------------------------------ raw disk
disk_phase() {
  echo "- load average before the raw-disk phase: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/versions.md"
  PIDDIR=""
  FIO_ENGINE=(--ioengine=libaio --direct=1 "--filename=$DISKFILE")
  sec_fio disk 2G || log "raw disk fio fill failed"
  # the durable-write floor: what a replica's fdatasync-per-write costs on this disk
  m disk fio-randwrite-4k-qd1-fdatasync $((RT * 3 + 120)) fio --name=randwrite-4k-qd1-fdatasync --ioengine=psync \
    --direct=1 --filename="$DISKFILE" --size=2G --rw=randwrite --bs=4k --iodepth=1 --fdatasync=1 \
    --runtime="$RT" --time_based --output-format=json --output="$LOGS/disk-fio-randwrite-4k-qd1-fdatasync.json" || true
  rm -f "$DISKFILE"
  printf -- '- raw disk: the same fio jobs with `--ioengine=libaio --direct=1 --filename=bench/.work/…/rawdisk.fio --size=2G` (same filesystem as both clusters'"'"' data), plus one 4K randwrite QD1 with `--ioengine=psync --fdatasync=1`\n' >> "$WORK/setup.md"
}

[[ $SKIP_CAIRN == 1 ]] || cairn_phase
[[ $SKIP_CEPH == 1 ]] || ceph_phase
[[ $SKIP_DISK == 1 ]] || disk_phase
rm -f "$RAW"
echo $(( $(date +%s) - T_START )) > "$WORK/elapsed"
fi   # REPORT_ONLY

# ------------------------------------------------------------------ report
ELAPSED=$(cat "$WORK/elapsed" 2>/dev/null || echo 0)
log "writing $RESULT"
"$SYSPY" - "$WORK" "$RT" "$ELAPSED" "$RESULT" "$CAIRN" "$CCONF" "$NOCACHE" "$CLONE_REPS" \
  "$RBD_TOTAL_W1" "$RBD_TOTAL_W32" "$RBD_TOTAL_R1" "$RBD_TOTAL_R32" <<'PY'
import json, os, re, statistics, sys

(work, rt, elapsed, result, cairn_bin, cconf, nocache, clone_reps,
 tw1, tw32, tr1, tr32) = sys.argv[1:13]
elapsed, clone_reps = int(elapsed), int(clone_reps)
logs = os.path.join(work, "logs")
SYS = ("cairn", "ceph")
GiB = 1 << 30

def mj(sys_, tag):
    p = os.path.join(logs, f"{sys_}-{tag}.m.json")
    if not os.path.exists(p):
        return None
    d = json.load(open(p))
    return d

def ok(d):
    return d is not None and d.get("rc") == 0

def wall(sys_, tag):
    d = mj(sys_, tag)
    return d["wall"] if ok(d) else None

def groups(d):
    """daemon CPU seconds by kind: osd, mon, mgr, nbd"""
    out = {}
    if not d:
        return out
    for label, v in d["cpu"].items():
        if v is None:
            continue
        k = label.split(".")[0]
        out[k] = out.get(k, 0.0) + v
    return out

def daemon_cpu(d):  # mon + OSDs (the storage daemons; mgr reported separately)
    g = groups(d)
    return g.get("osd", 0.0) + g.get("mon", 0.0) if d else None

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

def r(x):
    return "–" if x is None else f"{x:.2f}"

def f(x, nd=None):
    if x is None:
        return "–"
    if nd is not None:
        return f"{x:.{nd}f}"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"

def secs(x):
    return "–" if x is None else (f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s")

def med(vs):
    vs = [v for v in vs if v is not None]
    return statistics.median(vs) if vs else None

def read(name):
    p = os.path.join(work, name)
    return open(p).read().strip() if os.path.exists(p) else ""

def err_tail(sys_, tag):
    p = os.path.join(logs, f"{sys_}-{tag}.log")
    if not os.path.exists(p):
        return None
    lines = [l for l in open(p, errors="replace").read().splitlines() if l and not l.startswith("+ ")]
    return lines[-1][:160] if lines else None

def shown(cmd):
    c = list(cmd)
    if c[:1] == ["timeout"]:
        c = c[4:]
    s = " ".join(c)
    s = s.replace(f"{cairn_bin} -c {cconf}", "cairn -c cairn.conf").replace(cairn_bin, "cairn")
    s = s.replace(nocache, "ceph-nocache.conf").replace(cconf, "cairn.conf").replace(work + "/", "")
    s = re.sub(r"--output=\S+", "--output=…", s)
    return s

failures = []

L = []
first = read("machine.md").splitlines()[0][len("- date: "):] if read("machine.md") else "?"
L.append(f"# RBD images, `rbd bench` and fio over NBD: Cairn vs Ceph 16.2.15 on this machine ({first})")
L.append("")
L.append("Produced by `bench/rbd-nbd-bench.sh` (see `bench/README.md`); raw logs were in "
         f"`bench/.work/{os.path.basename(work)}/` (not committed). Script wall time: {elapsed // 60} min {elapsed % 60} s.")
L.append("")
L.append("**This machine is noisy** (2 vCPUs shared with other work, cluster and client on the same cores, a "
         "virtio disk that is probably host-cached): absolute numbers move by tens of percent between runs. "
         "**Quote the Cairn/Ceph ratios**, measured back to back on the same hardware, not the absolute figures. "
         "One run per test (CLI timings: every sample shown, ratio of medians). Nothing here passes or fails.")
L.append("")
L.append("**Client cache: off on both sides.** Ceph 16's librbd defaults to `rbd cache = true` "
         "(writearound/writeback: writes acknowledged before the OSDs have them); Cairn's client cache has the same "
         "defaults (`rbd cache = true`, `rbd cache writethrough until flush = true`). Here Ceph's clients use "
         "`ceph-nocache.conf` (`[client] rbd cache = false`) and Cairn's `cairn.conf` gets the same `[client] rbd cache = false`, "
         "so every acknowledged write is on all 3 replicas on both systems. Cairn's fio path has one more hop "
         "(fio → NBD over loopback TCP → `cairn nbd serve` → OSDs) than Ceph's (fio with librbd inside → OSDs).")
L.append("")

SUMMARY_AT = len(L)
# ---------------------------------------------------------------- section 1: image operations
CTL = [
    ("create 10 GiB image", ["create-10g"]),
    ("create 1 GiB image", ["create-1g"]),
    ("import 1 GiB (urandom file)", ["import-1g"]),
    ("snap create (10 GiB, 1 GiB empty, 1 GiB full)", ["snap-create-p10g", "snap-create-p1g", "snap-create-imp1g"]),
    ("snap protect (same three)", ["snap-protect-p10g", "snap-protect-p1g", "snap-protect-imp1g"]),
    ("clone of the 10 GiB image (empty)", [f"clone-10g-{i}" for i in range(1, clone_reps + 1)]),
    ("clone of a 1 GiB image (empty)", [f"clone-1g-{i}" for i in range(1, clone_reps + 1)]),
    ("clone of the 1 GiB image with 1 GiB of data", [f"clone-1gdata-{i}" for i in range(1, clone_reps + 1)]),
    ("flatten a clone of 1 GiB of data", ["flatten-1g"]),
]
L.append("## 1. Image operations (issue 3)")
L.append("")
L.append("Wall time of the CLI process (connect, do, exit), every sample; Cairn/Ceph of the medians (< 1: Cairn faster).")
L.append("")
L.append("| Operation | Cairn | Ceph | Cairn/Ceph |")
L.append("|---|---|---|---|")
for title, tags in CTL:
    cells = {}
    for s in SYS:
        vs = [wall(s, t) for t in tags]
        for t, v in zip(tags, vs):
            if v is None and mj(s, t) is not None:
                failures.append((s, t, err_tail(s, t)))
        cells[s] = (vs, med(vs))
    extra = ""
    def cell(s):
        vs, mv = cells[s]
        if all(v is None for v in vs):
            return "failed" if any(mj(s, t) for t in tags) else "–"
        txt = ", ".join(secs(v) for v in vs)
        if tags[0] in ("import-1g", "flatten-1g") and mv:
            txt += f" ({1024 / mv:.0f} MiB/s)"
        return txt
    L.append(f"| {title} | {cell('cairn')} | {cell('ceph')} | **{r(ratio(cells['cairn'][1], cells['ceph'][1]))}** |")
L.append("")
ver = {s: (open(os.path.join(logs, f"{s}-verify.txt")).read().strip() if os.path.exists(os.path.join(logs, f"{s}-verify.txt")) else "–") for s in SYS}
L.append(f"Check (not timed): `rbd export rbd/cd-1 - | cmp - rand1g.raw` after the flatten — Cairn: {ver['cairn']}; Ceph: {ver['ceph']}.")
L.append("")
# size independence
c10, c1 = med([wall("cairn", f"clone-10g-{i}") for i in range(1, clone_reps + 1)]), med([wall("cairn", f"clone-1g-{i}") for i in range(1, clone_reps + 1)])
cd = med([wall("cairn", f"clone-1gdata-{i}") for i in range(1, clone_reps + 1)])
if c10 and c1:
    L.append(f"Cairn clone, median: 10 GiB parent {secs(c10)}, 1 GiB parent {secs(c1)}, 1 GiB parent full of data {secs(cd)} "
             f"→ 10 GiB / 1 GiB = {c10 / c1:.2f} (size-independent if ≈ 1).")
    L.append("")

# ---------------------------------------------------------------- section 1b: rbd bench
RX = re.compile(r"elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)\s+bytes/sec:\s*([\d.]+)\s*([KMGT]i?B)?", re.I)
UNIT = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1e3, "MB": 1e6, "GB": 1e9}
def size_bytes(s):
    m_ = re.fullmatch(r"(\d+)([KMGT]?)", s.upper())
    return int(m_.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m_.group(2)]
def rbdbench(s, tag, io_size, total):
    d = mj(s, tag)
    if not ok(d):
        if d is not None:
            failures.append((s, tag, err_tail(s, tag)))
        return None
    text = open(os.path.join(logs, f"{s}-{tag}.log"), errors="replace").read()
    ms = RX.findall(text)
    if ms:
        el, ops, opsps, bps, unit = ms[-1]
        res = {"ops": int(ops), "iops": float(opsps), "mibs": float(bps) * UNIT.get(unit or None, 1) / (1 << 20), "src": "summary"}
    else:  # no Ceph-style summary line: from io-total and the wall time
        ops = size_bytes(total) // size_bytes(io_size)
        res = {"ops": ops, "iops": ops / d["wall"], "mibs": size_bytes(total) / d["wall"] / (1 << 20), "src": "wall"}
    res["wall"] = d["wall"]
    res["dcpu"] = daemon_cpu(d)
    res["ccpu"] = d["client_cpu"]
    res["per10k"] = res["dcpu"] / (res["ops"] / 1e4) if res["ops"] else None
    return res
RB = [
    ("rbdbench-write-4m-seq-t16", "write 4M seq, 16 threads (fills the image)", "4M", "1G"),
    ("rbdbench-write-4k-t1", "write 4K rand, 1 thread", "4K", tw1),
    ("rbdbench-write-4k-t32", "write 4K rand, 32 threads", "4K", tw32),
    ("rbdbench-read-4k-t1", "read 4K rand, 1 thread", "4K", tr1),
    ("rbdbench-read-4k-t32", "read 4K rand, 32 threads", "4K", tr32),
]
L.append("### `rbd bench` on a 1 GiB image (`rbd/bench1g`)")
L.append("")
L.append("`rbd bench --io-type <write|read> --io-size <4M|4K> --io-threads <n> --io-pattern <seq|rand> --io-total <T> rbd/bench1g` "
         "(`rbd bench` has no time limit; the totals give ~10 s on Ceph here). IOPS and MiB/s from rbd bench's own summary line "
         "(`elapsed: … ops: … ops/sec: … bytes/sec: …`); daemon CPU = utime+stime of the mon and the 3 OSDs during the run, "
         "per 10k ops = CPU-seconds per 10,000 I/Os (= cores busy per 10k IOPS).")
L.append("")
L.append("| Test | io-total | Cairn IOPS | Ceph IOPS | Cairn/Ceph | Cairn MiB/s | Ceph MiB/s | daemon CPU-s per 10k ops Cairn / Ceph | Cairn/Ceph |")
L.append("|---|---|---|---|---|---|---|---|---|")
rbres = {}
for tag, title, sz, tot in RB:
    c, e = rbdbench("cairn", tag, sz, tot), rbdbench("ceph", tag, sz, tot)
    rbres[tag] = (c, e)
    g = lambda x, k: None if x is None else x[k]
    L.append(f"| {title} | {tot} | {f(g(c, 'iops'))} | {f(g(e, 'iops'))} | **{r(ratio(g(c, 'iops'), g(e, 'iops')))}** | "
             f"{f(g(c, 'mibs'))} | {f(g(e, 'mibs'))} | {f(g(c, 'per10k'))} / {f(g(e, 'per10k'))} | {r(ratio(g(c, 'per10k'), g(e, 'per10k')))} |")
L.append("")
srcs = {x["src"] for pair in rbres.values() for x in pair if x}
if "wall" in srcs:
    L.append("(Where a run printed no `elapsed: … ops/sec:` line, IOPS = io-total / io-size / wall time of the process.)")
    L.append("")

# ---------------------------------------------------------------- section 2: fio
def fio(s, tag):
    p = os.path.join(logs, f"{s}-fio-{tag}.json")
    d = mj(s, f"fio-{tag}")
    if not os.path.exists(p) or not ok(d):
        if d is not None and not ok(d):
            failures.append((s, f"fio-{tag}", err_tail(s, f"fio-{tag}")))
        return None
    txt = open(p).read()
    try:
        j = json.loads(txt[txt.index("{"):])["jobs"][0]
    except (ValueError, KeyError, IndexError):
        return None
    kind = "write" if j["write"]["total_ios"] > j["read"]["total_ios"] else "read"
    x = j[kind]
    pct = x["clat_ns"].get("percentile", {})
    ios = j["read"]["total_ios"] + j["write"]["total_ios"]
    nbytes = j["read"]["io_bytes"] + j["write"]["io_bytes"]
    g = groups(d)
    res = {
        "iops": x["iops"], "mibs": x["bw_bytes"] / (1 << 20),
        "p50": pct.get("50.000000", 0) / 1e3, "p99": pct.get("99.000000", 0) / 1e3,  # µs
        "ios": ios, "gib": nbytes / GiB, "wall": d["wall"],
        "dcpu": daemon_cpu(d) if s != "disk" else None, "mgr": g.get("mgr"), "nbd": g.get("nbd"),
        "fcpu": d["client_cpu"],
    }
    if res["dcpu"] is not None:
        res["per_gib"] = res["dcpu"] / res["gib"] if res["gib"] else None
        res["per10k"] = res["dcpu"] / (ios / 1e4) if ios else None
        stack = res["dcpu"] + (res["nbd"] or 0) + res["fcpu"]
        res["stack"] = stack
        res["stack_per10k"] = stack / (ios / 1e4) if ios else None
        res["stack_per_gib"] = stack / res["gib"] if res["gib"] else None
    return res

FIO = [
    ("randwrite-4k-qd1", "4K randwrite QD1", "iops"),
    ("randwrite-4k-qd32", "4K randwrite QD32", "iops"),
    ("randread-4k-qd1", "4K randread QD1", "iops"),
    ("randread-4k-qd32", "4K randread QD32", "iops"),
    ("write-4m-qd16", "4M seq write QD16", "mibs"),
    ("read-4m-qd16", "4M seq read QD16", "mibs"),
]
fr = {tag: {s: fio(s, tag) for s in ("cairn", "ceph", "disk")} for tag, _, _ in FIO}
fill = {s: fio(s, "fill") for s in ("cairn", "ceph", "disk")}
sync1 = fio("disk", "randwrite-4k-qd1-fdatasync")

L.append("## 2. fio against a block device (issue 4)")
L.append("")
L.append(f"1 job, {rt} s time-based per test, 1 GiB image filled first by a 4M sequential fio write. "
         "Cairn: `cairn nbd serve --listen 127.0.0.1:PORT rbd/fio1g` and fio's `nbd` engine "
         "(`--ioengine=nbd --uri=nbd://127.0.0.1:PORT/rbd/fio1g`). Ceph: fio's `rbd` engine "
         "(`--ioengine=rbd --clientname=admin --pool=rbd --rbdname=fio1g --invalidate=0`, `CEPH_CONF=ceph-nocache.conf`): "
         "Debian's fio 3.33 has both engines, so no rbd-nbd/kernel nbd is involved (there is no /dev/nbd* in this container anyway). "
         "Raw disk: the same jobs with `--ioengine=libaio --direct=1` on a 2 GiB file in the same filesystem as both clusters' data.")
L.append("")
L.append("### Throughput (4K: IOPS, 4M: MiB/s)")
L.append("")
L.append("| Test | Cairn (NBD) | Ceph (librbd) | Cairn/Ceph | raw disk | Cairn/raw | Ceph/raw |")
L.append("|---|---|---|---|---|---|---|")
for tag, title, k in FIO:
    c, e, dk = (fr[tag][s] and fr[tag][s][k] for s in ("cairn", "ceph", "disk"))
    unit = "IOPS" if k == "iops" else "MiB/s"
    L.append(f"| {title} ({unit}) | {f(c)} | {f(e)} | **{r(ratio(c, e))}** | {f(dk)} | {r(ratio(c, dk))} | {r(ratio(e, dk))} |")
if sync1:
    L.append(f"| raw disk only: 4K randwrite QD1, psync + fdatasync per write | | | | {f(sync1['iops'])} | | |")
if any(fill.values()):
    L.append(f"| fill: 4M seq write QD16, {{1 GiB image, 2 GiB raw file}} (MiB/s) | {f(fill['cairn'] and fill['cairn']['mibs'])} | "
             f"{f(fill['ceph'] and fill['ceph']['mibs'])} | {r(ratio(fill['cairn'] and fill['cairn']['mibs'], fill['ceph'] and fill['ceph']['mibs']))} | "
             f"{f(fill['disk'] and fill['disk']['mibs'])} | | |")
L.append("")
L.append("### Completion latency (fio clat percentiles)")
L.append("")
def us(x):
    if x is None:
        return "–"
    return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"
L.append("| Test | p50 Cairn | p50 Ceph | Cairn/Ceph | p99 Cairn | p99 Ceph | Cairn/Ceph | raw p50 / p99 |")
L.append("|---|---|---|---|---|---|---|---|")
for tag, title, k in FIO:
    c, e, dk = (fr[tag][s] for s in ("cairn", "ceph", "disk"))
    g = lambda x, kk: None if x is None else x[kk]
    L.append(f"| {title} | {us(g(c, 'p50'))} | {us(g(e, 'p50'))} | {r(ratio(g(c, 'p50'), g(e, 'p50')))} | "
             f"{us(g(c, 'p99'))} | {us(g(e, 'p99'))} | {r(ratio(g(c, 'p99'), g(e, 'p99')))} | {us(g(dk, 'p50'))} / {us(g(dk, 'p99'))} |")
L.append("")
L.append("### CPU cost")
L.append("")
L.append("Daemon CPU = utime+stime (from `/proc/PID/stat` before/after each fio run) of the storage daemons: Cairn's mon + 3 OSDs "
         "(pid files in DIR/run/), Ceph's ceph-mon + 3 ceph-osd (pid files in the data dir's run/; ceph-mgr shown separately, not in the ratio). "
         "Client side: Cairn's `cairn nbd serve` process (it does librbd's job) and fio itself (Ceph's fio has librbd inside; rusage of the fio process). "
         "Per 10k IOs = CPU-seconds per 10,000 I/Os, which equals the cores kept busy per 10k IOPS.")
L.append("")
L.append("| Test | daemons CPU-s Cairn / Ceph (Ceph mgr) | Cairn NBD server CPU-s | fio CPU-s Cairn / Ceph | daemon CPU-s per GiB Cairn / Ceph | Cairn/Ceph | daemon CPU-s per 10k IOs Cairn / Ceph | Cairn/Ceph | whole stack per 10k IOs Cairn / Ceph | Cairn/Ceph |")
L.append("|---|---|---|---|---|---|---|---|---|---|")
for tag, title, k in FIO:
    c, e = fr[tag]["cairn"], fr[tag]["ceph"]
    g = lambda x, kk: None if x is None else x.get(kk)
    L.append(f"| {title} | {f(g(c, 'dcpu'))} / {f(g(e, 'dcpu'))} ({f(g(e, 'mgr'))}) | {f(g(c, 'nbd'))} | {f(g(c, 'fcpu'))} / {f(g(e, 'fcpu'))} | "
             f"{f(g(c, 'per_gib'))} / {f(g(e, 'per_gib'))} | **{r(ratio(g(c, 'per_gib'), g(e, 'per_gib')))}** | "
             f"{f(g(c, 'per10k'))} / {f(g(e, 'per10k'))} | **{r(ratio(g(c, 'per10k'), g(e, 'per10k')))}** | "
             f"{f(g(c, 'stack_per10k'))} / {f(g(e, 'stack_per10k'))} | {r(ratio(g(c, 'stack_per10k'), g(e, 'stack_per10k')))} |")
L.append("")
L.append("Cores busy during each run (CPU-s / wall s; the machine has 2):")
L.append("")
L.append("| Test | Cairn daemons | Cairn NBD server | Cairn fio | Cairn total | Ceph daemons (+mgr) | Ceph fio (librbd) | Ceph total |")
L.append("|---|---|---|---|---|---|---|---|")
for tag, title, k in FIO:
    c, e = fr[tag]["cairn"], fr[tag]["ceph"]
    def cores(x, kk):
        return None if x is None or x.get(kk) is None else x[kk] / x["wall"]
    ct = None if c is None else (c["dcpu"] + (c["nbd"] or 0) + c["fcpu"]) / c["wall"]
    et = None if e is None else (e["dcpu"] + (e["mgr"] or 0) + e["fcpu"]) / e["wall"]
    eda = None if e is None else (e["dcpu"] + (e["mgr"] or 0)) / e["wall"]
    L.append(f"| {title} | {f(cores(c, 'dcpu'), 2)} | {f(cores(c, 'nbd'), 2)} | {f(cores(c, 'fcpu'), 2)} | {f(ct, 2)} | "
             f"{f(eda, 2)} | {f(cores(e, 'fcpu'), 2)} | {f(et, 2)} |")
L.append("")

# ---------------------------------------------------------------- profile
def perf_lines(s, kind, n):
    p = os.path.join(logs, f"{s}-perf-{kind}.txt")
    if not os.path.exists(p):
        return []
    return [l.rstrip() for l in open(p, errors="replace") if l.strip()][:n]
if perf_lines("cairn", "sym", 1) or perf_lines("ceph", "sym", 1):
    L.append("## Profile during 4K randwrite QD32")
    L.append("")
    L.append(f"`perf record -F 499 -g -p <OSD pids>,<NBD server pid> -- sleep {rt}` during an extra, unmeasured fio 4K randwrite QD32 run; "
             "`perf report --no-children --sort dso,sym` (self time, share of the samples in those processes; kernel symbols included).")
    L.append("")
    for s, name in (("cairn", "Cairn (3 OSDs + NBD server)"), ("ceph", "Ceph (3 ceph-osd; Debian's binaries, no debug symbols)")):
        sym = perf_lines(s, "sym", 25)
        if not sym:
            continue
        L.append(f"{name}, by thread name:")
        L.append("")
        L.append("```")
        L.extend(perf_lines(s, "comm", 10))
        L.append("```")
        L.append("")
        L.append("by shared object:")
        L.append("")
        L.append("```")
        L.extend(perf_lines(s, "dso", 8))
        L.append("```")
        L.append("")
        L.append("top symbols (self):")
        L.append("")
        L.append("```")
        L.extend(sym)
        L.append("```")
        L.append("")

def perf_stat(s):
    p = os.path.join(logs, f"{s}-perf-stat.csv")
    out = {}
    if not os.path.exists(p):
        return out
    for line in open(p, errors="replace"):
        parts = line.strip().split(",")
        if len(parts) >= 3 and not line.startswith("#"):
            try:
                out[parts[2].replace("syscalls:sys_enter_", "")] = float(parts[0])
            except ValueError:
                pass
    return out
def perf_fio_ops(s):
    p = os.path.join(logs, f"{s}-perf-fio.json")
    try:
        txt = open(p).read()
        j = json.loads(txt[txt.index("{"):])["jobs"][0]["write"]
        return j["iops"]
    except (OSError, ValueError, KeyError, IndexError):
        return None
ps = {s: perf_stat(s) for s in SYS}
pio = {s: perf_fio_ops(s) for s in SYS}
if any(ps.values()):
    L.append(f"Events of the same processes over the same {rt} s (`perf stat -e context-switches,task-clock,syscalls:sys_enter_… -p …`), "
             "per client write (fio's average IOPS of that run × the window; approximate):")
    L.append("")
    L.append(f"| Event | Cairn per write | Ceph per write |")
    L.append("|---|---|---|")
    L.append(f"| (client 4K writes/s in that run) | {f(pio['cairn'])} | {f(pio['ceph'])} |")
    names = []
    for s in SYS:
        for k in ps[s]:
            if k not in names:
                names.append(k)
    for k in names:
        vals = []
        for s in SYS:
            v = ps[s].get(k)
            if k == "task-clock":
                v = None if v is None else v / 1e3  # msec -> CPU-seconds
                vals.append(None if v is None or not pio[s] else v / (pio[s] * int(rt)) * 1e6)
            else:
                vals.append(None if v is None or not pio[s] else v / (pio[s] * int(rt)))
        if all(v is None or v < 0.005 for v in vals):
            continue
        label = "task-clock (CPU-µs per write)" if k == "task-clock" else k
        L.append(f"| {label} | {f(vals[0])} | {f(vals[1])} |")
    L.append("")

# ---------------------------------------------------------------- summary (inserted after the intro)
def gv(x, k):
    return None if x is None else x.get(k)
S = ["## Summary (ratio = Cairn/Ceph; each row says which way is better)", "",
     "| Measurement | Cairn | Ceph | Cairn/Ceph |", "|---|---|---|---|"]
for title, tags in CTL:
    if tags[0] in ("create-10g", "import-1g", "snap-create-p10g", "flatten-1g") or tags[0].startswith("clone-10g"):
        cm, em = med([wall("cairn", t) for t in tags]), med([wall("ceph", t) for t in tags])
        S.append(f"| {title} (median wall time; < 1 = Cairn faster) | {secs(cm)} | {secs(em)} | {r(ratio(cm, em))} |")
for tag, title, sz, tot in RB[1:]:
    c, e = rbres[tag]
    S.append(f"| rbd bench {title} (IOPS) | {f(gv(c, 'iops'))} | {f(gv(e, 'iops'))} | **{r(ratio(gv(c, 'iops'), gv(e, 'iops')))}** |")
for tag, title, k in FIO:
    c, e = fr[tag]["cairn"], fr[tag]["ceph"]
    unit = "IOPS" if k == "iops" else "MiB/s"
    S.append(f"| fio {title} ({unit}; Cairn over NBD, Ceph librbd) | {f(gv(c, k))} | {f(gv(e, k))} | **{r(ratio(gv(c, k), gv(e, k)))}** |")
for tag, title, k in FIO:
    c, e = fr[tag]["cairn"], fr[tag]["ceph"]
    S.append(f"| fio {title}: daemon CPU-s per 10k IOs (< 1 = Cairn cheaper) | {f(gv(c, 'per10k'))} | {f(gv(e, 'per10k'))} | {r(ratio(gv(c, 'per10k'), gv(e, 'per10k')))} |")
S.append("")
L[SUMMARY_AT:SUMMARY_AT] = S

L.append("## What limits Cairn here")
L.append("")
L.append("(not generated: written by hand from the CPU tables and the profile above after a run)")
L.append("")

if failures:
    L.append("## Failures")
    L.append("")
    seen = set()
    for s, t, msg in failures:
        if (s, t) in seen:
            continue
        seen.add((s, t))
        L.append(f"- {s} `{t}`: {msg or 'see the log'}")
    L.append("")

L.append("## Commands")
L.append("")
L.append("| Test | Cairn | Ceph | raw disk |")
L.append("|---|---|---|---|")
tags = []
for fn in os.listdir(logs):
    mm = re.match(r"(cairn|ceph|disk)-(.+)\.m\.json$", fn)
    if mm and mm.group(2) not in tags:
        tags.append(mm.group(2))
def order(t):
    flat = [tg for _, tgs in CTL for tg in tgs] + [x[0] for x in RB] + ["fio-fill"] + [f"fio-{x[0]}" for x in FIO]
    return flat.index(t) if t in flat else len(flat)
for t in sorted(tags, key=lambda t: (order(t), t)):
    if re.search(r"-(\d+)$", t) and not t.endswith("-1"):
        continue
    cells = []
    for s in ("cairn", "ceph", "disk"):
        d = mj(s, t)
        cells.append(("`" + shown(d["cmd"]) + "`") if d else "–")
    L.append(f"| {t} | {cells[0]} | {cells[1]} | {cells[2]} |")
L.append("")
L.append("Cluster set-up:")
L.append("")
L.append(read("setup.md"))
L.append("")
L.append("Both clusters: 1 mon + 3 OSDs on 127.0.0.1, size 3, pool `rbd` with 32 PGs, failure domain osd; "
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
