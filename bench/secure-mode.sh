#!/usr/bin/env bash
# secure-mode.sh - the cost of on-wire encryption (ms_*_mode = secure) on the RADOS write path.
#
#   bench/secure-mode.sh                       # REPS=3 RT=20: ~15 min
#   REPS=1 RT=5 bench/secure-mode.sh           # quick check
#   BASELINE=/path/to/other/release/cairn bench/secure-mode.sh   # also run that binary in crc mode
#   CONFIGS="crc secure" bench/secure-mode.sh  # only these configurations (default: crc secure none)
#
# One release cluster (`cairn up --daemon --osds 3`, 1 mon, 127.0.0.1) in bench/.work/secure-mode-<stamp>,
# restarted between configurations (`cairn down --dir D`, edit D/cairn.conf, `cairn up --daemon --dir D`):
#   crc      the default: cephx, ms_*_mode = crc
#   secure   cephx, ms cluster mode = ms service mode = ms client mode = secure (every connection sealed)
#   none     auth_*_required = none, crc (the issue asks for the cost against auth none)
#   base     only with BASELINE=: crc, daemons and client run the BASELINE binary (e.g. the commit
#            before on-wire encryption, to show the crc path did not change)
# Each rep runs every configuration once, in an order rotated by one per rep (the machine is
# noisy: drift hits every configuration alike). Per configuration and rep, on fresh pools (32 PGs,
# size 3, application rbd, removed afterwards):
#   cairn rados bench -p w4k $RT write -b 4K -t 16 --no-cleanup
#   cairn rados bench -p w4m $RT write -b 4M -t 16 --no-cleanup
# Also the CPU time per op: the daemons' (from /proc/PID/stat) plus the bench client's (/usr/bin/time).
# Output: bench/results/secure-mode-<date>.md (tables: every rep, mean, percent vs crc and vs none),
# raw logs in bench/.work/secure-mode-<stamp>/ (gitignored).
set -euo pipefail

REPS=${REPS:-3}
RT=${RT:-20}
BASELINE=${BASELINE:-}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "REPS must be a positive integer" >&2; exit 2; }
[[ $RT =~ ^[1-9][0-9]*$ ]] || { echo "RT must be a positive integer (seconds)" >&2; exit 2; }

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
STAMP=$(date +%Y-%m-%d-%H%M%S)
DAY=$(date +%Y-%m-%d)
WORK=$BENCH/.work/secure-mode-$STAMP
D=$WORK/cluster
LOGS=$WORK/logs
mkdir -p "$LOGS" "$BENCH/results"
RESULT=$BENCH/results/secure-mode-$DAY.md
[[ -e $RESULT ]] && RESULT=$BENCH/results/secure-mode-$STAMP.md
TSV=$WORK/results.tsv
T_START=$(date +%s)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$WORK/run.log" >&2; }
die() { log "FAILED: $*"; exit 1; }

RUNNING=""
on_exit() {
  local rc=$?
  if [[ -n $RUNNING ]]; then "$RUNNING" down --dir "$D" >>"$LOGS/admin.log" 2>&1 || true; fi
  [[ $rc == 0 ]] || log "exit code $rc; raw logs in $WORK"
}
trap on_exit EXIT

read -r -a CONFIGS <<< "${CONFIGS:-crc secure none}"
[[ -n $BASELINE ]] && CONFIGS+=(base)
bin_of() { if [[ $1 == base ]]; then echo "$BASELINE"; else echo "$CAIRN"; fi; }

log "building Cairn (release)"
(cd "$ROOT" && cargo build --release -p cairn-cli) >"$LOGS/build.log" 2>&1 || die "cargo build failed"
[[ -z $BASELINE || -x $BASELINE ]] || die "BASELINE=$BASELINE is not an executable"

log "cairn up --daemon --osds 3 --dir $D"
RUNNING=$CAIRN
timeout 180 "$CAIRN" up --daemon --osds 3 --dir "$D" >"$LOGS/up.log" 2>&1 || die "cairn up failed"
cp "$D/cairn.conf" "$WORK/cairn.conf.crc"
export CAIRN_CONF=$D/cairn.conf

# configure CONFIG: stop the cluster, write its conf, start it with its binary.
configure() {
  local cfg=$1 bin
  bin=$(bin_of "$cfg")
  "$RUNNING" down --dir "$D" >>"$LOGS/admin.log" 2>&1 || die "cairn down"
  RUNNING=""
  case $cfg in
    crc|base) cp "$WORK/cairn.conf.crc" "$D/cairn.conf" ;;
    secure) sed 's/^\[global\]$/[global]\nms cluster mode = secure\nms service mode = secure\nms client mode = secure/' \
              "$WORK/cairn.conf.crc" > "$D/cairn.conf" ;;
    none) sed 's/required = cephx/required = none/' "$WORK/cairn.conf.crc" > "$D/cairn.conf" ;;
  esac
  RUNNING=$bin
  timeout 180 "$bin" up --daemon --dir "$D" >>"$LOGS/admin.log" 2>&1 || die "cairn up ($cfg) failed"
  if [[ $cfg == secure ]]; then  # really secure: a crc-only client is refused
    ! "$bin" -c "$WORK/cairn.conf.crc" -s >>"$LOGS/admin.log" 2>&1 || die "the secure cluster served a crc client"
  fi
}

wait_ok() {
  local bin=$1 h=""
  for _ in $(seq 240); do
    h=$("$bin" health 2>&1 || true)
    [[ $h == HEALTH_OK* ]] && return 0
    sleep 0.5
  done
  die "not HEALTH_OK 120 s after creating pools: $h"
}

# CPU time (clock ticks) the cluster's daemons have used so far.
daemon_ticks() {
  local t=0 f st
  for f in "$D"/run/*.pid; do
    read -r -a st < <(sed 's/^.*) //' "/proc/$(cat "$f")/stat")
    t=$((t + st[11] + st[12]))   # utime + stime
  done
  echo "$t"
}

# run CONFIG REP TEST ARGS… : one rados bench, its summary and the CPU it cost into the TSV.
run() {
  local cfg=$1 rep=$2 test=$3 bin out; shift 3
  bin=$(bin_of "$cfg")
  out=$LOGS/$cfg-r$rep-$test.log
  log "$cfg rep $rep $test (load $(cut -d' ' -f1 /proc/loadavg))"
  local t0
  t0=$(daemon_ticks)
  timeout -k 10 $((RT * 3 + 120)) /usr/bin/time -f 'client cpu: %U %S' "$bin" rados bench "$@" >"$out" 2>&1 \
    || die "$cfg $test failed: $(tail -5 "$out")"
  local daemon_s client_s ops bw iops lat
  daemon_s=$(awk -v a="$t0" -v b="$(daemon_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN {print (b - a) / hz}')
  client_s=$(awk '/^client cpu:/ {print $3 + $4}' "$out")
  ops=$(awk -F: '/^Total writes made/ {gsub(/ /,"",$2); print $2}' "$out")
  bw=$(awk -F: '/^Bandwidth \(MB\/sec\)/ {gsub(/ /,"",$2); print $2}' "$out")
  iops=$(awk -F: '/^Average IOPS/ {gsub(/ /,"",$2); print $2}' "$out")
  lat=$(awk -F: '/^Average Latency\(s\)/ {gsub(/ /,"",$2); print $2}' "$out")
  [[ -n $bw && -n $iops && -n $ops ]] || die "$cfg $test: no summary in $out"
  # CPU per op (daemons and the bench client, ms): includes the writes still in flight at the end.
  local cpu_ms
  cpu_ms=$(awk -v d="$daemon_s" -v c="$client_s" -v n="$ops" 'BEGIN {printf "%.3f", (d + c) * 1000 / n}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$rep" "$test" "$bw" "$iops" "$lat" "$cpu_ms" >> "$TSV"
  log "  -> $bw MB/s, $iops IOPS, avg latency $lat s, $cpu_ms ms CPU per op (daemons $daemon_s s, client $client_s s)"
}

printf 'config\trep\ttest\tMBps\tIOPS\tlat_s\tcpu_ms_per_op\n' > "$TSV"
n=${#CONFIGS[@]}
ORDER=""
for rep in $(seq "$REPS"); do
  for i in $(seq 0 $((n - 1))); do
    cfg=${CONFIGS[$(((i + rep - 1) % n))]}
    ORDER+="$cfg "
    configure "$cfg"
    bin=$(bin_of "$cfg")
    for p in w4k w4m; do
      "$bin" osd pool create "$p" 32 >>"$LOGS/admin.log" 2>&1 || die "pool create $p"
      "$bin" osd pool application enable "$p" rbd >>"$LOGS/admin.log" 2>&1 || die "application enable $p"
    done
    wait_ok "$bin"
    run "$cfg" "$rep" w4k -p w4k "$RT" write -b 4K -t 16 --no-cleanup
    run "$cfg" "$rep" w4m -p w4m "$RT" write -b 4M -t 16 --no-cleanup
    for p in w4k w4m; do
      "$bin" osd pool rm "$p" "$p" --yes-i-really-really-mean-it >>"$LOGS/admin.log" 2>&1 || die "pool rm $p"
    done
  done
  ORDER+="| "
done
"$RUNNING" down --dir "$D" >>"$LOGS/admin.log" 2>&1 || true
RUNNING=""
rm -rf "$D"/osd.* "$D"/mon.*

{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), wall time $(( ($(date +%s) - T_START) / 60 )) min"
  echo "- git commit: $(git -C "$ROOT" rev-parse --short HEAD) ($(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l) tracked files modified in the work tree)"
  echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); AES-NI: $(grep -qw aes /proc/cpuinfo && echo yes || echo no), PCLMULQDQ: $(grep -qw pclmulqdq /proc/cpuinfo && echo yes || echo no)"
  echo "- kernel: $(uname -r); memory: $(free -g | awk '/^Mem/ {print $2 " GiB total, " $7 " GiB available"}')"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- order of runs: $ORDER"
  echo "- REPS=$REPS RT=$RT CONFIGS=\"${CONFIGS[*]}\" BASELINE=${BASELINE:-none}"
} > "$WORK/machine.md"

/usr/bin/python3 - "$TSV" "$WORK/machine.md" "$RESULT" <<'EOF'
import sys, statistics
tsv, machine, result = sys.argv[1:]
rows = [l.rstrip('\n').split('\t') for l in open(tsv)][1:]
data = {}
for cfg, rep, test, bw, iops, lat, cpu in rows:
    data.setdefault((test, cfg), []).append((float(bw), float(iops), float(lat), float(cpu)))
cfgs = [c for c in ['crc', 'secure', 'none', 'base'] if any(k[1] == c for k in data)]
out = ["# On-wire encryption cost: `rados bench` writes, crc vs secure (generated by bench/secure-mode.sh)", ""]
out += open(machine).read().splitlines() + [""]
for test, metric, idx, unit in [('w4k', 'Average IOPS', 1, 'IOPS'), ('w4m', 'Bandwidth', 0, 'MB/s')]:
    out += [f"## {'4 KiB' if test == 'w4k' else '4 MiB'} write, -t 16: {metric} ({unit})", "",
            "| config | every rep | mean | vs crc | vs none |", "|---|---|---|---|---|"]
    means = {c: statistics.mean(v[idx] for v in data[(test, c)]) for c in cfgs}
    for c in cfgs:
        reps = " / ".join(f"{v[idx]:.0f}" if idx == 1 else f"{v[idx]:.1f}" for v in data[(test, c)])
        pct = lambda base: f"{(means[c] / means[base] - 1) * 100:+.1f} %" if base in means else "–"
        out.append(f"| {c} | {reps} | {means[c]:.1f} | {pct('crc')} | {pct('none')} |")
    out.append("")
    out += ["| config | avg latency (ms), every rep | CPU per op (ms, daemons + client), every rep | mean | vs crc |",
            "|---|---|---|---|---|"]
    cpu = {c: statistics.mean(v[3] for v in data[(test, c)]) for c in cfgs}
    for c in cfgs:
        lat = " / ".join(f"{v[2] * 1000:.1f}" for v in data[(test, c)])
        per = " / ".join(f"{v[3]:.3f}" for v in data[(test, c)])
        vs = f"{(cpu[c] / cpu['crc'] - 1) * 100:+.1f} %" if 'crc' in cpu else "–"
        out.append(f"| {c} | {lat} | {per} | {cpu[c]:.3f} | {vs} |")
    out.append("")
open(result, 'w').write("\n".join(out) + "\n")
print(result)
EOF
log "done: $RESULT"
