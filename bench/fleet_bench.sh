#!/usr/bin/env bash
# fleet_bench.sh BUILD_DIR - the fleet benchmark (issue 9 item 6; docs/BENCH.md): one run on
# this machine, every vendd figure printed beside a ceiling measured in the same run, as one
# table. `make bench` runs it through tools/run-bench; it is never part of `make test`.
#
# What it starts (all on 127.0.0.1, random free ports, in a fresh temporary directory, all
# stopped by PID at the end): a private mosquitto with deploy/mosquitto/prod.conf's queue
# settings (no TLS, no passwords, no persistence), the ceilings (bench/minpipe), vendd on a
# fresh SQLite file, and the load generators (bench/loadgen, bench/dispload, bench/httpload
# against bench/hello and vendd); for PostgreSQL a server (pg_ctl, stopped at the end), a
# fresh broker and database per instance count, and psql for the counters.
#
# Then, on PostgreSQL (issue 11): a private server initdb'd in the same directory (defaults
# kept: fsync and synchronous_commit on), for 1, 2 and 3 vendd instances on it and one broker
# (MQTT_SHARED_GROUP for more than one): the telemetry sweep from 1,000 machines and the
# dispense round trip with the triggers spread over the instances, the write lock sampled.
#
# Knobs (environment): BENCH_STEP_S (seconds per rate step, default 5), BENCH_HTTP_S (seconds
# per HTTP run, default 5), BENCH_DISPENSE_RATE (orders/s, default 1000), BENCH_DISPENSE_S
# (default 10), BENCH_KEEP=1 keeps the directory (logs, databases) and says where,
# BENCH_PARTS: all (default: SQLite, then PostgreSQL), sqlite (SQLite only), pg (PostgreSQL
# only), reads (only what needs no MQTT load generator: the fleet's registration, the
# dispense round trip, the HTTP reads and RSS, on SQLite); BENCH_PG_INSTANCES (default
# "1 2 3": the instance counts of the PostgreSQL part).
set -euo pipefail

if [[ $# -ne 1 || ! -d $1 ]]; then
    echo "usage: bench/fleet_bench.sh BUILD_DIR" >&2
    exit 64
fi
build=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/bench
vendd=$build/daemon/vendd
for b in "$bin/loadgen" "$bin/minpipe" "$bin/httpload" "$bin/hello" "$bin/dispload" "$vendd"; do
    if [[ ! -x $b ]]; then
        echo "fleet_bench: $b is missing; build first (make build)" >&2
        exit 1
    fi
done
for t in mosquitto sqlite3 curl; do
    if ! command -v "$t" >/dev/null && [[ ! -x /usr/sbin/$t ]]; then
        echo "fleet_bench: '$t' is not installed (tools/packages.txt)" >&2
        exit 1
    fi
done
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)

STEP_S=${BENCH_STEP_S:-5}
HTTP_S=${BENCH_HTTP_S:-5}
DISP_RATE=${BENCH_DISPENSE_RATE:-1000}
DISP_S=${BENCH_DISPENSE_S:-10}
FLEET=10000      # machines registered
SMALL=1000       # machines of the 1,000-machine runs (and of the ceilings)
DISP_MACHINES=200
DRAIN_MAX_S=30   # the longest wait for a step's backlog
HZ=$(getconf CLK_TCK)
T_START=${EPOCHREALTIME/./}

dir=$(mktemp -d "${TMPDIR:-/tmp}/fleet-bench-XXXXXX")
pids=()
lg_pids=()
lg_fds=()
lg_n=0

log() { printf 'fleet_bench: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

cleanup() {
    local p
    for fd in "${lg_fds[@]}"; do exec {fd}>&-; done
    [[ -n ${pgq_w:-} ]] && exec {pgq_w}>&- {pgq_r}<&-
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 30); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pg_stop
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $dir"
    else
        rm -rf -- "$dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_us() { echo "${EPOCHREALTIME/./}"; }

# utime + stime of a process in microseconds (0 once it is gone).
cpu_us() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    s=${s##*) }
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $s
    echo $(((${12} + ${13}) * 1000000 / HZ))
}

# cpu_us summed over a list of PIDs ("p1 p2 ..": several vendd instances).
cpus_us() {
    local p t=0
    for p in $1; do t=$((t + $(cpu_us "$p"))); done
    echo "$t"
}

# Nanoseconds the main threads of a list of processes ran, and waited for a core, summed.
sched_ns() {
    local p
    for p in $1; do cat "/proc/$p/schedstat" 2>/dev/null || echo 0 0; done |
        awk '{ r += $1; w += $2 } END { printf "%.0f %.0f\n", r, w }'
}

# The PostgreSQL server's CPU in microseconds: the postmaster with the children it reaped
# (cutime, cstime: backends that ended) plus every live child (backends, WAL writer,
# checkpointer, autovacuum); 0 without a server.
pg_cpu_us() {
    [[ -n ${pg_pid:-} ]] || {
        echo 0
        return
    }
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pg_pid" -v hz="$HZ" '
        { pid = $1; sub(/^.*\) /, "")
          if (pid == pm) t += $12 + $13 + $14 + $15; else if ($2 == pm) t += $12 + $13 }
        END { printf "%.0f\n", t * 1000000 / hz }' || true # a process gone between the listing and its read
}

# Busy and total jiffies of the whole box (every process, ours or not), from /proc/stat.
box_jiffies() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
# steal_jiffies: "steal, total" of the box. On a VM the hypervisor's other guests take it, and
# the ceilings fall with it: a run that lost 7.5 % of the box to it (200 % = both cores) held
# 60 % of a quiet run's broker rate.
steal_jiffies() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9 + 0, t }' /proc/stat
}
read -r STEAL0 STEALT0 < <(steal_jiffies)

# The value of key=value in a line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
# median A B C: the middle one of three numbers.
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

# fmt N: thousands separators.
fmt() { LC_ALL=C awk -v n="$1" 'BEGIN {
    s = sprintf("%.0f", n); neg = s ~ /^-/; if (neg) s = substr(s, 2)
    o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
    print (neg ? "-" : "") s o }'; }

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

# ---- the processes -------------------------------------------------------------------------

start_broker() {
    local prod queue try
    prod=$here/../deploy/mosquitto/prod.conf
    # prod.conf's queue and socket settings as they are today; sys_interval 1 (prod: 10) so a
    # step sees the broker's $SYS counters move.
    queue=$(grep -E '^(set_tcp_nodelay|max_inflight_messages|max_queued_messages|max_queued_bytes|message_size_limit)[[:space:]]' "$prod") ||
        die "cannot read the queue settings of $prod"
    # A port nobody listens on may still be some connection's local port (the load
    # generators hold thousands): then the bind fails, and another port is tried.
    for try in 1 2 3 4 5; do
        mport=$(free_port)
        printf '%s\n' "user $(id -un)" "listener $mport 127.0.0.1" 'allow_anonymous true' \
            'persistence false' 'sys_interval 1' "log_dest file $dir/mosquitto.log" \
            'log_type error' 'log_type warning' 'log_type notice' "$queue" >"$dir/mosquitto.conf"
        "$mosquitto_bin" -c "$dir/mosquitto.conf" >"$dir/mosquitto.stderr" 2>&1 &
        mpid=$!
        pids+=("$mpid")
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && return 0
            kill -0 "$mpid" 2>/dev/null || break
            sleep 0.05
        done
        log "mosquitto did not listen on port $mport (try $try): $(tail -n 2 "$dir/mosquitto.stderr" | tr '\n' ' ')"
        stop_pid "$mpid"
    done
    die "mosquitto did not start (log: $dir/mosquitto.log)"
}

# stop_pid PID: TERM, KILL after 3 s, reaped, and out of the cleanup's list.
stop_pid() {
    local p keep=()
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# start_vendd [DATABASE_URL CLIENT_ID LOG [VAR=VALUE..]]: vendd on a free port (hport, vpid);
# without arguments the SQLite run's.
start_vendd() {
    local url=${1:-sqlite:$dir/vendd.db} id=${2:-vendd-bench} vlog=${3:-$dir/vendd.log} try
    shift $(($# < 3 ? $# : 3))
    for try in 1 2 3; do # another port if the bind fails, as for the broker
        hport=$(free_port)
        (cd "$dir" && exec env -i PATH="$PATH" PORT="$hport" HOST=127.0.0.1 \
            DATABASE_URL="$url" MQTT_BROKER_URL="mqtt://127.0.0.1:$mport" \
            MQTT_CLIENT_ID="$id" "$@" "$vendd" >"$vlog" 2>&1) &
        vpid=$!
        pids+=("$vpid")
        for _ in $(seq 100); do
            curl -sf "127.0.0.1:$hport/health" 2>/dev/null | grep -q '"mqtt_connected":true' && return
            kill -0 "$vpid" 2>/dev/null || break
            sleep 0.1
        done
        log "vendd did not come up on port $hport (try $try): $(tail -n 3 "$vlog" | tr '\n' ' ')"
        stop_pid "$vpid"
    done
    die "vendd did not come up (log: $vlog)"
}

# ---- PostgreSQL: a private server in the bench's directory -------------------------------------

# The server's binaries as tests/support/pgcluster finds them: $PG_BINDIR, pg_config, the
# newest /usr/lib/postgresql/*/bin (Debian's postgresql package).
pg_bindir() {
    local b=${PG_BINDIR:-}
    [[ -z $b ]] && command -v pg_config >/dev/null && b=$(pg_config --bindir)
    # shellcheck disable=SC2012 # version-sorted directory names, as tests/support/pgcluster
    [[ -n $b && -x $b/initdb ]] || b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $b && -x $b/initdb && -x $b/pg_ctl ]] ||
        die "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql, or set PG_BINDIR"
    echo "$b"
}

# PostgreSQL refuses to run as root: then it runs as nobody, which owns its directory.
as_pg() {
    if [[ $(id -u) == 0 ]]; then runuser -u nobody -- "$@"; else "$@"; fi
}

# pg_start: initdb in $dir/pg, the server on a free loopback port with its socket there, with
# the defaults of initdb for durability (fsync on, synchronous_commit on, full_page_writes on):
# what a production server has. Sets pg_port, pg_pid (the postmaster), pg_durability.
pg_start() {
    pg_bin=$(pg_bindir)
    pgdir=$dir/pg
    mkdir -p "$pgdir"
    if [[ $(id -u) == 0 ]]; then
        chmod 711 "$dir" # nobody passes through to its own directory
        chown nobody "$pgdir"
    fi
    as_pg "$pg_bin/initdb" -D "$pgdir/data" -U vendd --auth=trust --encoding=UTF8 --no-locale \
        >"$pgdir/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$pgdir/initdb.log")"
    for _ in 1 2 3 4 5; do
        pg_port=$(free_port)
        if as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
            -o "-p $pg_port -k $pgdir -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
            pg_pid=$(head -1 "$pgdir/data/postmaster.pid")
            break
        fi
    done
    [[ -n ${pg_pid:-} ]] || die "PostgreSQL did not start: $(tail -n 5 "$pgdir/server.log")"
    # The disk's commit ceiling: fdatasync of one 8 kB write in the server's directory (the
    # WAL's disk), pg_test_fsync's first comparison (open_datasync, fdatasync, fsync, ...).
    pg_fsync=$(timeout 10 "$pg_bin/pg_test_fsync" -s 1 -f "$pgdir/fsync.test" 2>/dev/null |
        awk '$1 == "fdatasync" { printf "%.0f", $2; exit }' || true)
    rm -f "$pgdir/fsync.test"
    pg_durability=$(psql -XAtq -h "$pgdir" -p "$pg_port" -U vendd -d postgres -F ' ' -c \
        "SELECT name || '=' || setting FROM pg_settings WHERE name IN ('server_version', 'fsync',
         'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers',
         'wal_level', 'max_connections') ORDER BY name" | tr '\n' ' ')
}

pg_stop() {
    [[ -n ${pg_pid:-} ]] || return 0
    as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -m immediate -w stop >/dev/null 2>&1 || true
    pg_pid=''
}

pg_url() { echo "postgresql://vendd@/$1?host=$pgdir&port=$pg_port"; }

# pgq_open DB: one psql kept open on DB for the counters (a psql per poll would cost more
# than what it counts); pgq SQL answers one line.
pgq_open() {
    [[ -n ${pgq_w:-} ]] && exec {pgq_w}>&- {pgq_r}<&-
    [[ -n ${pgq_pid:-} ]] && stop_pid "$pgq_pid"
    rm -f "$dir/pgq.in" "$dir/pgq.out"
    mkfifo "$dir/pgq.in" "$dir/pgq.out"
    psql -XAtq -h "$pgdir" -p "$pg_port" -U vendd -d "$1" <"$dir/pgq.in" >"$dir/pgq.out" \
        2>>"$dir/psql.log" &
    pgq_pid=$!
    pids+=("$pgq_pid")
    exec {pgq_w}>"$dir/pgq.in" {pgq_r}<"$dir/pgq.out"
}
pgq() {
    local a
    echo "$1;" >&"$pgq_w"
    read -r -t 10 a <&"$pgq_r" || die "psql did not answer '$1' (log: $dir/psql.log)"
    echo "$a"
}
count_telemetry_pg() { pgq 'SELECT coalesce(max(id), 0) FROM telemetry'; }
# What the database has written so far: the WAL position, rows inserted, updated and deleted,
# WAL records, bytes and flushes (fdatasync of the WAL).
pg_writes() {
    pgq "SELECT pg_current_wal_lsn() || '|' ||
        (SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables) || '|' ||
        wal_records || '|' || wal_bytes || '|' || wal_sync FROM pg_stat_wal"
}
# pg_commits LSN0 LSN1: the commit records between two WAL positions (pg_walinspect, in the
# server's own database "postgres"): one per transaction that wrote; a read commits nothing.
pg_commits() {
    psql -XAtq -h "$pgdir" -p "$pg_port" -U vendd -d postgres -c "
        CREATE EXTENSION IF NOT EXISTS pg_walinspect;
        SELECT coalesce(sum(count), 0) FROM pg_get_wal_stats('$1', '$2', true)
        WHERE \"resource_manager/record_type\" = 'Transaction/COMMIT'" 2>>"$dir/psql.log" | tail -1
}

# loadgen --control: connected once per sweep and fed through FIFOs. libmosquitto 2.0.11 holds
# three descriptors per client (its socket and a socketpair it writes a wake-up byte to), so
# the fleet is split over as many processes as the open-file limit needs; each publishes its
# share of the rate.
lg_start() {
    local n=$1 per k i first cnt fd
    per=$((($(ulimit -n) - 100) / 3))
    k=$(((n + per - 1) / per))
    lg_pids=() lg_fds=() lg_n=$k
    for ((i = 0; i < k; i++)); do
        first=$((1 + i * n / k))
        cnt=$(((i + 1) * n / k - i * n / k))
        rm -f "$dir/lg$i.in" "$dir/lg$i.out"
        mkfifo "$dir/lg$i.in"
        "$bin/loadgen" --port "$mport" --machines "$cnt" --first "$first" --qos 1 --window 10 \
            --control <"$dir/lg$i.in" >"$dir/lg$i.out" 2>>"$dir/loadgen.log" &
        lg_pids+=("$!")
        pids+=("$!")
        exec {fd}>"$dir/lg$i.in"
        lg_fds+=("$fd")
    done
    for ((i = 0; i < k; i++)); do
        for _ in $(seq 1200); do
            grep -q ready "$dir/lg$i.out" && break
            kill -0 "${lg_pids[$i]}" 2>/dev/null || die "loadgen died (log: $dir/loadgen.log)"
            sleep 0.05
        done
        grep -q ready "$dir/lg$i.out" || die "loadgen did not connect its clients"
        log "$(tail -1 "$dir/lg$i.out")"
    done
}

# lg_cmd KIND RATE SECONDS: every loadgen its share at once; prints one combined line.
lg_cmd() {
    local i before=() after sent=0 acked=0 rate=0 lag=0 line
    for ((i = 0; i < lg_n; i++)); do
        before+=("$(wc -l <"$dir/lg$i.out")")
    done
    for ((i = 0; i < lg_n; i++)); do
        echo "pub $1 $(((i + 1) * $2 / lg_n - i * $2 / lg_n)) $3" >&"${lg_fds[$i]}"
    done
    for ((i = 0; i < lg_n; i++)); do
        for _ in $(seq $((($3 + 40) * 20))); do
            after=$(wc -l <"$dir/lg$i.out")
            [[ $after -gt ${before[$i]} ]] && break
            sleep 0.05
        done
        [[ $after -gt ${before[$i]} ]] || die "loadgen did not finish 'pub $*'"
        line=$(tail -1 "$dir/lg$i.out")
        sent=$((sent + $(kv "$line" sent)))
        acked=$((acked + $(kv "$line" acked)))
        rate=$((rate + $(kv "$line" rate)))
        lag=$(awk -v a="$lag" -v b="$(kv "$line" lag_max_ms)" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "loadgen: sent=$sent acked=$acked rate=$rate lag_max_ms=$lag"
}

lg_cpu_us() {
    local p t=0
    for p in "${lg_pids[@]}"; do t=$((t + $(cpu_us "$p"))); done
    echo "$t"
}

lg_stop() {
    local i fd
    for ((i = 0; i < lg_n; i++)); do
        fd=${lg_fds[$i]}
        echo quit >&"$fd"
        exec {fd}>&-
    done
    for ((i = 0; i < lg_n; i++)); do
        wait "${lg_pids[$i]}" 2>/dev/null || true
    done
    lg_fds=() lg_n=0
}

# ---- counters: what a target has durably done ------------------------------------------------

count_minpipe() { tail -1 "$dir/minpipe.out" | sed -n 's/.* rows=\([0-9]*\).*/\1/p'; }
count_telemetry() { sqlite3 -readonly "$dir/vendd.db" 'SELECT coalesce(max(id), 0) FROM telemetry'; }
metric() {
    curl -s "127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}
count_status() { echo $(($(metric vendd_status_updates_total) - $(metric vendd_ingest_batch_lost_total))); }

# ---- one step and a sweep ----------------------------------------------------------------------

# Wait until the counter stops moving (what an earlier step left has landed).
quiet() {
    local a b
    a=$($sw_count)
    for _ in $(seq $((DRAIN_MAX_S * 4))); do
        sleep 0.3
        b=$($sw_count)
        [[ $a == "$b" ]] && return
        a=$b
    done
}

# step RATE: publish at RATE for STEP_S seconds, wait for the counter; sets st_*.
step() {
    local rate=$1 c0 t0 cpu0 bcpu0 lcpu0 box0 line c last=-1 t_pub t_prog t_now t_reached=0 wall
    quiet
    c0=$($sw_count)
    cpu0=$(cpus_us "$sw_pid")
    dcpu0=$(pg_cpu_us)
    bcpu0=$(cpu_us "$mpid")
    lcpu0=$(lg_cpu_us)
    read -r box0 boxt0 < <(box_jiffies)
    read -r run0 wait0 < <(sched_ns "$sw_pid")
    t0=$(now_us)
    line=$(lg_cmd "$sw_kind" "$rate" "$STEP_S")
    t_pub=$(now_us)
    t_prog=$t_pub
    st_sent=$(kv "$line" sent)
    st_rate=$(kv "$line" rate)
    st_lag=$(kv "$line" lag_max_ms)
    while :; do
        c=$(($($sw_count) - c0))
        t_now=$(now_us)
        if ((c >= st_sent)); then
            t_reached=$t_now
            break
        fi
        if ((c != last)); then
            last=$c
            t_prog=$t_now
        fi
        ((t_now - t_prog > 2000000 || t_now - t_pub > DRAIN_MAX_S * 1000000)) && break
        sleep 0.1
    done
    st_stored=$c
    st_loss=$((st_sent > c ? st_sent - c : 0))
    st_drain_ms=$((t_reached > 0 ? (t_reached - t_pub) / 1000 : -1))
    wall=$(($(now_us) - t0))
    st_cpu_us=$(($(cpus_us "$sw_pid") - cpu0))
    st_cpu_pct=$((st_cpu_us * 100 / wall))
    st_db_us=$(($(pg_cpu_us) - dcpu0))
    st_db_pct=$((st_db_us * 100 / wall))
    st_broker_pct=$((($(cpu_us "$mpid") - bcpu0) * 100 / wall))
    st_lg_pct=$((($(lg_cpu_us) - lcpu0) * 100 / wall))
    read -r box1 boxt1 < <(box_jiffies)
    st_box_pct=$(((box1 - box0) * 200 / (boxt1 - boxt0 > 0 ? boxt1 - boxt0 : 1)))
    st_other_pct=$((st_box_pct - st_cpu_pct - st_db_pct - st_broker_pct - st_lg_pct))
    ((st_other_pct < 0)) && st_other_pct=0
    # The target's main thread: running, waiting for a core (others took it), the rest off
    # a core (blocked: fdatasync, or idle once drained).
    read -r run1 wait1 < <(sched_ns "$sw_pid")
    st_run_pct=$(((run1 - run0) / 10 / wall))
    st_wait_pct=$(((wait1 - wait0) / 10 / wall))
    st_off_pct=$((100 - st_run_pct - st_wait_pct))
    ((st_off_pct < 0)) && st_off_pct=0
    st_held=0
    if ((st_loss == 0 && st_drain_ms >= 0 && st_drain_ms <= 1000)) &&
        awk -v a="$st_rate" -v r="$rate" 'BEGIN { exit !(a >= 0.97 * r) }'; then
        st_held=1
    fi
    log "$(printf '%-22s offered %7s/s achieved %7s/s sent %8s stored %8s loss %6s drain %5s ms; CPU %%: %s %3d (thread: run %3d wait %3d off %3d)%s broker %3d loadgen %3d others %3d -> %s' \
        "$sw_name" "$(fmt "$rate")" "$(fmt "$st_rate")" "$(fmt "$st_sent")" "$(fmt "$st_stored")" \
        "$(fmt "$st_loss")" "$st_drain_ms" "$sw_target" "$st_cpu_pct" "$st_run_pct" \
        "$st_wait_pct" "$st_off_pct" "${pg_pid:+ postgres $st_db_pct}" "$st_broker_pct" \
        "$st_lg_pct" "$st_other_pct" "$([[ $st_held == 1 ]] && echo held || echo 'NOT held')")"
}

# step, repeated once if it did not hold while other processes took more than 30% of the box.
step_once() {
    step "$1"
    if ((!st_held && st_other_pct > 30)); then
        log "repeating the step: other processes used ${st_other_pct}% of the box"
        step "$1"
    fi
    others_sum=$((others_sum + st_other_pct))
    others_n=$((others_n + 1))
}
others_sum=0
others_n=0

# The sentence for the first step that did not hold.
why() {
    local w=''
    if ! awk -v a="$st_rate" -v r="$1" 'BEGIN { exit !(a >= 0.97 * r) }'; then
        w="the publisher reached only $(fmt "$st_rate")/s (lag ${st_lag} ms); "
    fi
    if ((st_loss > 0)); then
        w+="$(fmt "$st_loss") of $(fmt "$st_sent") lost; "
    elif ((st_drain_ms > 1000)); then
        w+="backlog, drained $((st_drain_ms / 100))00 ms after the last publish; "
    fi
    w+="CPU (100% = a core, $(nproc) cores): $sw_target ${st_cpu_pct}% ($sw_thread waited for a core ${st_wait_pct}%, off a core ${st_off_pct}%)${pg_pid:+, postgres server ${st_db_pct}%}, broker ${st_broker_pct}%, loadgen ${st_lg_pct}%, other processes ${st_other_pct}%"
    echo "at $(fmt "$1")/s: $w"
}

# sweep NAME KIND COUNTER PIDS TARGET START: doubling from START until a step does not hold,
# then bisections until the held and the failed rate are within 5 % of each other (at most
# five): two bisections left a grid of a quarter of the doubling, 5,000/s between 20,000 and
# 40,000, coarser than what separates vendd from its ceiling. PIDS: the target's processes (several vendd instances: their sum).
# Sets sw_best (highest held rate, 0 if none), sw_cpu_msg_us (CPU per message at it,
# microseconds, 2 decimals; sw_db_msg_us the PostgreSQL server's), sw_fail_* and sw_why (the
# lowest step that did not hold).
sweep() {
    sw_name=$1 sw_kind=$2 sw_count=$3 sw_pid=$4 sw_target=$5
    local r=$6 lo=0 hi=0
    sw_thread='its thread'
    [[ $sw_pid == *' '* ]] && sw_thread='their main threads, summed,'
    sw_best=0 sw_cpu_msg_us=0 sw_db_msg_us=0 sw_why='never failed up to the largest step' sw_fail_loss=0 sw_fail_sent=0
    for _ in 1 2 3 4 5 6; do
        step_once "$r"
        if ((st_held)); then
            lo=$r
            sw_best=$r
            sw_cpu_msg_us=$(awk -v c="$st_cpu_us" -v n="$st_stored" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
            sw_db_msg_us=$(awk -v c="$st_db_us" -v n="$st_stored" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
            r=$((r * 2))
        else
            hi=$r
            sw_why=$(why "$r")
            sw_fail_loss=$st_loss sw_fail_sent=$st_sent
            break
        fi
    done
    ((hi == 0)) && return
    for _ in 1 2 3 4 5; do
        (((hi - lo) * 20 <= lo)) && break
        r=$((((lo + hi) / 2 + 50) / 100 * 100))
        ((r <= lo || r >= hi)) && break
        step_once "$r"
        if ((st_held)); then
            lo=$r
            sw_best=$r
            sw_cpu_msg_us=$(awk -v c="$st_cpu_us" -v n="$st_stored" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
            sw_db_msg_us=$(awk -v c="$st_db_us" -v n="$st_stored" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
        else
            hi=$r
            sw_why=$(why "$r")
            sw_fail_loss=$st_loss sw_fail_sent=$st_sent
        fi
    done
}

# ---- the dispense round trip ---------------------------------------------------------------------

# dispense DB "HTTP_PORTS" "VENDD_PIDS" ID_PREFIX: dispload at DISP_RATE orders/s over 200
# machines answering at once; if that rate is not sustained, half of it, then a quarter. DB is
# the SQLite file or the PostgreSQL URL dispload polls; several ports and PIDs: instances on
# one database, triggers spread over them. Sets disp_done, disp_rate, p50, p99, completed,
# orders, disp_done_rate, disp_notes, disp_why; with PostgreSQL also disp_writes (what the
# database wrote per order).
dispense() {
    local db=$1 ports=$2 vpids=$3 prefix=$4 rate disp_out c0 d0 t0 summary rt late cmd r2c ans
    local sustained nots pflags=() poll w0='' w1 p
    for p in $ports; do pflags+=(--http-port "$p"); done
    poll=100
    # A PostgreSQL query costs the server far more than a read of the SQLite file: every
    # 0.5 ms, so the poller takes little of the two cores the database and vendd need.
    [[ $db == postgres* ]] && poll=500
    disp_done=0 disp_notes='' disp_writes='' disp_lock=''
    for rate in "$DISP_RATE" $((DISP_RATE / 2)) $((DISP_RATE / 4)); do
        ((rate < 1)) && break
        disp_out=$dir/dispload-$prefix$rate.out
        [[ $db == postgres* ]] && w0=$(pg_writes)
        c0=$(cpus_us "$vpids")
        d0=$(pg_cpu_us)
        t0=$(now_us)
        "$bin/dispload" "${pflags[@]}" --mqtt-port "$mport" --db "$db" --poll-us "$poll" \
            --machines "$DISP_MACHINES" --rate "$rate" --seconds "$DISP_S" --id-prefix "$prefix$rate-" \
            >"$disp_out" 2>>"$dir/dispload.log" &
        dl_pid=$!
        pids+=("$dl_pid")
        # PostgreSQL, the first rate: the write lock sampled while the triggers run (the
        # orders are created first, untimed).
        if [[ $db == postgres* && $rate == "$DISP_RATE" ]]; then
            while kill -0 "$dl_pid" 2>/dev/null && ! grep -q 'dispload: created' "$disp_out"; do
                sleep 0.05
            done
            lock_sample_start "$DISP_S"
        fi
        wait "$dl_pid" || true
        stop_pid "$dl_pid"
        if [[ $db == postgres* && $rate == "$DISP_RATE" ]]; then
            lock_sample_read
            disp_lock="at $(fmt "$rate")/s: $lock_text"
        fi
        disp_vendd_pct=$((($(cpus_us "$vpids") - c0) * 100 / ($(now_us) - t0)))
        disp_db_pct=$((($(pg_cpu_us) - d0) * 100 / ($(now_us) - t0)))
        while read -r l; do log "$l"; done <"$disp_out"
        summary=$(grep 'dispload: orders=' "$disp_out" || true)
        rt=$(grep 'dispload: round_trip' "$disp_out" || true)
        late=$(grep 'dispload: late' "$disp_out" || true)
        [[ -z $summary || -z $rt ]] && continue
        disp_rate=$rate
        p50=$(kv "$rt" p50_ms) p99=$(kv "$rt" p99_ms)
        completed=$(kv "$summary" completed) orders=$(kv "$summary" orders)
        disp_done_rate=$(kv "$summary" done_rate)
        cmd=$(grep 'dispload: command_at_machine' "$disp_out")
        r2c=$(grep 'dispload: result_to_commit' "$disp_out")
        ans=$(grep 'dispload: trigger_answer' "$disp_out")
        disp_why="trigger answer p50 $(kv "$ans" p50_ms) / p99 $(kv "$ans" p99_ms) ms; command at the machine p50 $(kv "$cmd" p50_ms) / p99 $(kv "$cmd" p99_ms) ms; result -> commit seen p50 $(kv "$r2c" p50_ms) / p99 $(kv "$r2c" p99_ms) ms; driver late p99 $(kv "$late" p99_ms) ms; vendd CPU ${disp_vendd_pct}%${pg_pid:+, postgres server ${disp_db_pct}%} (order creation included)"
        if [[ -n $w0 ]]; then
            sleep 2 # the server's statistics are flushed about once a second
            w1=$(pg_writes)
            disp_writes=$(awk -v a="$w0" -v b="$w1" -v n="$orders" -v c="$(pg_commits "${w0%%|*}" "${w1%%|*}")" 'BEGIN {
                split(a, x, "|"); split(b, y, "|")
                printf "%.1f commits, %.1f rows written, %.1f WAL records (%.0f bytes), %.2f WAL flushes",
                    c / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n, (y[4] - x[4]) / n, (y[5] - x[5]) / n }')
        fi
        # Sustained: every order completed, completions kept pace with the schedule, and the
        # driver never waited more than 5 ms for one of its 16 connections (vendd answered
        # triggers as fast as they came).
        sustained=0
        if [[ $completed == "$orders" ]] &&
            awk -v d="$disp_done_rate" -v r="$rate" -v l="$(kv "$late" p99_ms)" \
                'BEGIN { exit !(d >= 0.97 * r && l <= 5) }'; then
            sustained=1
        fi
        disp_done=1
        ((sustained)) && break
        nots="$(fmt "$rate")/s not sustained: vendd completed $(fmt "$disp_done_rate") orders/s, round trip p50 $p50 / p99 $p99 ms, trigger answer p99 $(kv "$ans" p99_ms) ms"
        disp_notes+="${disp_notes:+; }$nots"
        log "dispense at $nots; trying half the rate"
    done
}

# lock_sample_start SECONDS: in the background, a loop in the server that looks at pg_locks
# every 10 ms for SECONDS: how often vendd's write lock (db_pg.c's advisory lock, taken by
# db_begin) was held, and how many transactions waited for it on average (only transactions
# of other instances can wait: one vendd has one connection). lock_sample_read waits for the
# loop and sets lock_text (not in a subshell: wait needs the sampler's parent).
lock_sample_start() {
    psql -XAtq -h "$pgdir" -p "$pg_port" -U vendd -d postgres -c "DO \$\$
        DECLARE h bigint := 0; w bigint := 0; x bigint; y bigint;
        BEGIN
            FOR i IN 1..$(($1 * 100)) LOOP
                PERFORM pg_sleep(0.01);
                SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)
                    INTO x, y FROM pg_locks WHERE locktype = 'advisory';
                h := h + x; w := w + y;
            END LOOP;
            RAISE NOTICE 'locks % % %', $(($1 * 100)), h, w;
        END \$\$" >"$dir/locks.out" 2>&1 &
    lock_pid=$!
    pids+=("$lock_pid")
}
lock_sample_read() {
    wait "$lock_pid" 2>/dev/null || true
    stop_pid "$lock_pid"
    lock_text=$(awk '/NOTICE:  locks/ && $3 > 0 { printf "write lock held in %.0f%% of %d samples (10 ms apart), %.2f transactions waiting for it on average", 100 * $4 / $3, $3, $5 / $3 }' "$dir/locks.out")
    [[ -n $lock_text ]] || lock_text="write lock not sampled (see $dir/locks.out)"
}

# register N PORT: machines vm00001.. with slots 1 and 2 through the API, as the SQLite run.
register() {
    local line
    awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++) printf "POST /api/machines {\"id\":\"vm%05d\"}\n", i }' \
        >"$dir/register-$1.txt"
    awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++) {
        printf "PUT /api/machines/vm%05d/slots/1 {\"product_name\":\"Cola\",\"price\":5000,\"capacity\":1000,\"current_stock\":1000}\n", i
        printf "PUT /api/machines/vm%05d/slots/2 {\"product_name\":\"Tea\",\"price\":4000,\"capacity\":10,\"current_stock\":10}\n", i } }' \
        >"$dir/slots-$1.txt"
    line=$("$bin/httpload" --port "$2" --conns 16 --requests "$dir/register-$1.txt") ||
        die "registration failed: $line"
    log "registered $1 machines: $line"
    line=$("$bin/httpload" --port "$2" --conns 16 --requests "$dir/slots-$1.txt") ||
        die "slot set-up failed: $line"
    log "created $(($1 * 2)) slots: $line"
}

# The PostgreSQL part (issue 11 items 4 and 5): for 1, 2 and 3 vendd instances on one private
# PostgreSQL server and one broker, a fresh database and a fresh broker each time (no session
# of an earlier run queues anything), 1,000 machines registered, the telemetry sweep from them,
# then the dispense round trip with its triggers spread over the instances. One instance runs
# with plain subscriptions, as a single vendd is configured; several with MQTT_SHARED_GROUP.
pg_part() {
    local n i db url vpids ports cap note lim r a b c o d d1
    command -v psql >/dev/null || die "'psql' is not installed (tools/packages.txt)"
    pg_start
    log "PostgreSQL on port $pg_port, $pg_durability; the disk's fdatasync: ${pg_fsync:-?}/s (pg_test_fsync, one 8 kB write)"
    for n in $PG_INSTANCES; do
        db=vendd$n
        psql -XAtq -h "$pgdir" -p "$pg_port" -U vendd -d postgres -c "CREATE DATABASE $db" ||
            die "cannot create database $db"
        url=$(pg_url "$db")
        start_broker
        vpids='' ports='' pg_note[n]=''
        for ((i = 1; i <= n; i++)); do
            if ((n == 1)); then
                start_vendd "$url" "vendd-pg$n-$i" "$dir/vendd-pg$n-$i.log"
            else
                start_vendd "$url" "vendd-pg$n-$i" "$dir/vendd-pg$n-$i.log" MQTT_SHARED_GROUP=bench
                # shellcheck disable=SC2016 # a literal $share
                grep -qF 'Subscribed to $share/bench/vm/+/telemetry' "$dir/vendd-pg$n-$i.log" ||
                    pg_note[n]="not run: this vendd does not subscribe to \$share/bench/vm/+/telemetry with MQTT_SHARED_GROUP=bench (no several-instance support; log: $(tail -2 "$dir/vendd-pg$n-$i.log" | tr '\n' ' '))"
            fi
            vpids+="${vpids:+ }$vpid" ports+="${ports:+ }$hport"
        done
        if [[ -z ${pg_note[n]} ]]; then
            register "$SMALL" "${ports%% *}"
            pgq_open "$db"
            lg_start "$SMALL"
            sweep "pg telemetry x$n" telemetry count_telemetry_pg "$vpids" "vendd x$n" \
                $((${pg_best[1]:-0} > 0 ? ${pg_best[1]:-0} / 2 / 100 * 100 : 1000))
            pg_best[n]=$sw_best pg_why[n]=$sw_why pg_cpu[n]=$sw_cpu_msg_us pg_dbcpu[n]=$sw_db_msg_us
            # At the lowest rate that did not hold: how busy the write lock was.
            if ((sw_fail_sent > 0)); then
                lock_sample_start "$STEP_S"
                step $((sw_fail_sent / STEP_S))
                lock_sample_read
                pg_tlock[n]="at $(fmt $((sw_fail_sent / STEP_S)))/s again: $lock_text"
                log "pg telemetry x$n: ${pg_tlock[n]}"
            fi
            lg_stop
            dispense "$url" "$ports" "$vpids" "p$n-"
            pg_dlock[n]=$disp_lock
            log "pg dispense x$n: ${pg_dlock[n]}"
            pg_disp_done[n]=$disp_done
            if ((disp_done)); then
                pg_disp[n]="$disp_rate|$p50|$p99|$completed|$orders|$disp_done_rate"
                pg_disp_why[n]=$disp_why pg_disp_notes[n]=$disp_notes pg_writes[n]=$disp_writes
            fi
        fi
        for i in $vpids; do stop_pid "$i"; done
        stop_pid "$mpid"
    done
    pg_stop

    row "PostgreSQL ($pg_durability): what follows" '' '' '' '' \
        "a private server initdb'd in the bench's directory, defaults kept; vendd's write transactions serialized by one advisory lock (db_pg.c db_begin), held through the commit's WAL flush; this disk's fdatasync of one 8 kB write: ${pg_fsync:-?}/s (pg_test_fsync)"
    lim="2 cores shared by every vendd, the postgres server, the broker and the load generators: says little of a many-core box"
    for n in $PG_INSTANCES; do
        if [[ -n ${pg_note[n]} ]]; then
            row "$n vendd instances on one PostgreSQL and one broker" 'not run' '' '' '' "${pg_note[n]}"
            continue
        fi
        if ((n == 1)); then
            cap='' note=''
            [[ -n ${t1_best:-} ]] && cap="SQLite vendd $(fmt "$t1_best")" && note=$(ratio "${pg_best[1]}" "$t1_best")
            row "PostgreSQL: vendd telemetry ingest, $(fmt "$SMALL") machines (lossless rows/s)" \
                "$(fmt "${pg_best[1]}")" "$cap" "$note" '' "${pg_why[1]}; ${pg_tlock[1]:-}"
            cap='' note=''
            [[ -n ${t1_cpu:-} ]] && cap="SQLite vendd $(ms "$t1_cpu")" && note=$(ratio "${pg_cpu[1]}" "$t1_cpu")
            row '  vendd CPU per telemetry message (PostgreSQL)' "$(ms "${pg_cpu[1]}")" "$cap" "$note" \
                '' "plus the postgres server's $(ms "${pg_dbcpu[1]}") per row (all its processes), at the lossless rate"
            if ((pg_disp_done[1])); then
                IFS='|' read -r r a b c o d <<<"${pg_disp[1]}"
                row "PostgreSQL: dispense round trip p50, $(fmt "$r") orders/s over $DISP_MACHINES machines" \
                    "$a ms" '' '' '<= 1 ms' "due time of the trigger -> result committed (PostgreSQL polled every 0.5 ms); $c of $o completed; ${pg_disp_notes[1]:-sustained at the target rate}; ${pg_dlock[1]}"
                row '  dispense round trip p99 (PostgreSQL)' "$b ms" '' '' '<= 5 ms' "${pg_disp_why[1]}"
                row '  database writes per order (PostgreSQL)' "${pg_writes[1]%% commits*} commits" '' '' '' \
                    "${pg_writes[1]}; per order over the run: its creation, trigger, command, result, and what vendd did meanwhile (WAL commit records by pg_walinspect, pg_stat_user_tables, pg_stat_wal)"
            else
                row 'PostgreSQL: dispense round trip' 'failed' '' '' '' "see $dir/dispload.log"
            fi
            continue
        fi
        row "$n vendd instances (MQTT_SHARED_GROUP): telemetry, $(fmt "$SMALL") machines (lossless rows/s)" \
            "$(fmt "${pg_best[n]}")" "1 instance $(fmt "${pg_best[1]:-0}")" "$(ratio "${pg_best[n]}" "${pg_best[1]:-0}")" '' \
            "${pg_why[n]}; ${pg_tlock[n]:-}; vendd CPU $(ms "${pg_cpu[n]}") + postgres $(ms "${pg_dbcpu[n]}") per row; $lim"
        if ((pg_disp_done[n])); then
            IFS='|' read -r r a b c o d <<<"${pg_disp[n]}"
            IFS='|' read -r _ _ _ _ _ d1 <<<"${pg_disp[1]:-|||||0}"
            row "$n instances: dispense, triggers spread over them (orders/s completed; round trip p50 / p99)" \
                "$(fmt "$d") at $(fmt "$r")/s; $a / $b ms" "1 instance $(fmt "$d1")/s" "$(ratio "$d" "$d1")" '' \
                "$c of $o completed; ${pg_disp_notes[n]:-sustained at the target rate}; ${pg_disp_why[n]}; ${pg_dlock[n]}; writes per order: ${pg_writes[n]}; $lim"
        else
            row "$n instances: dispense" 'failed' '' '' '' "see $dir/dispload.log"
        fi
    done
}

# ---- the table ---------------------------------------------------------------------------------

rows=()
# Fields joined by the unit separator: read splits on it without merging empty fields.
row() { rows+=("$1"$'\x1f'"$2"$'\x1f'"$3"$'\x1f'"$4"$'\x1f'"$5"$'\x1f'"$6"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.3f ms", u / 1000 }'; }

print_table() {
    local r s1 t1
    printf '\nfleet benchmark %s, %s cores, %s; %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" \
        "$(git -C "$here" describe --always --dirty 2>/dev/null || echo 'no git')" \
        "load average $load1 at the start"
    printf 'other processes took on average %s%% of the box (200%% = both cores) during the %s rate steps\n' \
        "$((others_n > 0 ? others_sum / others_n : 0))" "$others_n"
    read -r s1 t1 < <(steal_jiffies)
    printf 'the hypervisor withheld (steal) %s%% of the box over the whole run (counted in the above)\n' \
        "$(awk -v s=$((s1 - STEAL0)) -v t=$((t1 - STEALT0)) 'BEGIN { printf "%.1f", (t > 0 ? 200 * s / t : 0) }')"
    printf '| %s | %s | %s | %s | %s | %s |\n' figure value 'ceiling (same run)' ratio target \
        'limit hit and why'
    printf '|---|---|---|---|---|---|\n'
    for r in "${rows[@]}"; do
        IFS=$'\x1f' read -r a b c d e f <<<"$r"
        printf '| %s | %s | %s | %s | %s | %s |\n' "$a" "$b" "$c" "$d" "$e" "$f"
    done
}

# ---- the run -------------------------------------------------------------------------------------

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < FLEET + 500)); then
    die "needs $((FLEET + 500)) open files per process for $FLEET MQTT clients; ulimit -Hn is $(ulimit -Hn)"
fi
read -r load1 _ </proc/loadavg
log "$(nproc) cores, load average $load1 before the start (other work on the box skews every figure); directory $dir"
[[ ${load1%%.*} -ge 1 ]] && log "warning: the box is busy before the benchmark starts (load $load1)"

PARTS=${BENCH_PARTS:-all}
PG_INSTANCES=${BENCH_PG_INSTANCES:-1 2 3}
declare -a pg_best pg_why pg_cpu pg_dbcpu pg_tlock pg_dlock pg_disp pg_disp_done pg_disp_why \
    pg_disp_notes pg_writes pg_note
case $PARTS in
all | reads | sqlite) ;;
pg)
    pg_part
    log "total time $((($(now_us) - T_START) / 1000000)) s"
    print_table
    exit 0
    ;;
*) die "BENCH_PARTS must be all, sqlite, reads or pg" ;;
esac
start_broker
log "mosquitto on port $mport: $(grep -E '^(set_tcp|max_|message_size)' "$dir/mosquitto.conf" | tr '\n' ' ')(from prod.conf), no TLS, no persistence"

# 1. Ceilings, 1,000 publishers: the broker alone, then the minimal pipeline.
if [[ $PARTS != reads ]]; then
lg_start "$SMALL"
"$bin/minpipe" --port "$mport" >"$dir/minpipe.out" 2>>"$dir/minpipe.log" &
sub_pid=$!
pids+=("$sub_pid")
for _ in $(seq 100); do grep -q ready "$dir/minpipe.out" 2>/dev/null && break; sleep 0.05; done
sweep 'broker raw QoS1' telemetry count_minpipe "$sub_pid" subscriber 10000
raw_best=$sw_best raw_why=$sw_why
kill -TERM "$sub_pid"
wait "$sub_pid" 2>/dev/null || true

"$bin/minpipe" --port "$mport" --db "$dir/minpipe.db" >"$dir/minpipe.out" 2>>"$dir/minpipe.log" &
sub_pid=$!
pids+=("$sub_pid")
for _ in $(seq 100); do grep -q ready "$dir/minpipe.out" 2>/dev/null && break; sleep 0.05; done
sweep 'minimal pipeline' telemetry count_minpipe "$sub_pid" minpipe 10000
pipe_best=$sw_best pipe_why=$sw_why pipe_cpu=$sw_cpu_msg_us
kill -TERM "$sub_pid"
wait "$sub_pid" 2>/dev/null || true
rm -f "$dir"/minpipe.db*

row "broker raw QoS 1 rate ($SMALL publishers -> 1 subscriber, lossless msg/s)" "$(fmt "$raw_best")" \
    '(ceiling)' '' '' "$raw_why"
row 'minimal MQTT -> SQLite pipeline (lossless rows/s)' "$(fmt "$pipe_best")" \
    "broker raw $(fmt "$raw_best")" "$(ratio "$pipe_best" "$raw_best")" '(ceiling)' "$pipe_why"
fi

# 2. vendd, 10,000 machines registered through the API.
start_vendd
awk -v n="$FLEET" 'BEGIN { for (i = 1; i <= n; i++) printf "POST /api/machines {\"id\":\"vm%05d\"}\n", i }' \
    >"$dir/register.txt"
awk -v n="$FLEET" 'BEGIN { for (i = 1; i <= n; i++) {
    printf "PUT /api/machines/vm%05d/slots/1 {\"product_name\":\"Cola\",\"price\":5000,\"capacity\":1000,\"current_stock\":1000}\n", i
    printf "PUT /api/machines/vm%05d/slots/2 {\"product_name\":\"Tea\",\"price\":4000,\"capacity\":10,\"current_stock\":10}\n", i } }' \
    >"$dir/slots.txt"
line=$("$bin/httpload" --port "$hport" --conns 16 --requests "$dir/register.txt") ||
    die "registration failed: $line"
log "registered $FLEET machines: $line"
reg_rate=$(kv "$line" rate)
line=$("$bin/httpload" --port "$hport" --conns 16 --requests "$dir/slots.txt") ||
    die "slot set-up failed: $line"
log "created $((FLEET * 2)) slots: $line"
slot_rate=$(kv "$line" rate)
rss_registered=$(awk '/^VmRSS/ { print $2 }' "/proc/$vpid/status")

# 3. Telemetry from 1,000 machines (the same 1,000 connections as the ceilings).
if [[ $PARTS != reads ]]; then
sweep "telemetry $SMALL machines" telemetry count_telemetry "$vpid" vendd 2000
t1_best=$sw_best t1_why=$sw_why t1_cpu=$sw_cpu_msg_us t1_loss=$sw_fail_loss t1_sent=$sw_fail_sent
lg_stop

# 4. Telemetry and status from 10,000 machines.
lg_start "$FLEET"
sweep "telemetry $FLEET machines" telemetry count_telemetry "$vpid" vendd \
    $((t1_best > 0 ? t1_best / 2 / 100 * 100 : 1000))
t10_best=$sw_best t10_why=$sw_why t10_cpu=$sw_cpu_msg_us t10_loss=$sw_fail_loss t10_sent=$sw_fail_sent
sweep "status $FLEET machines" status count_status "$vpid" vendd \
    $((t10_best > 0 ? t10_best / 100 * 100 : 2000))
s_best=$sw_best s_why=$sw_why s_cpu=$sw_cpu_msg_us s_loss=$sw_fail_loss s_sent=$sw_fail_sent
lg_stop

for n in "$SMALL" "$FLEET"; do
    if [[ $n == "$SMALL" ]]; then b=$t1_best w=$t1_why c=$t1_cpu l=$t1_loss s=$t1_sent; else
        b=$t10_best w=$t10_why c=$t10_cpu l=$t10_loss s=$t10_sent; fi
    row "vendd telemetry ingest, $(fmt "$n") machines (lossless rows/s)" "$(fmt "$b")" \
        "pipeline $(fmt "$pipe_best")" "$(ratio "$b" "$pipe_best")" '>= 0.90' "$w"
    row "  loss at the step above" "$(fmt "$l") of $(fmt "$s")" '' '' '0 (at the lossless rate)' \
        'broker queue: max_queued_messages 100000, so a short overload queues instead of dropping'
    row "  vendd CPU per telemetry message ($(fmt "$n") machines)" "$(ms "$c")" \
        "pipeline $(ms "$pipe_cpu")" "$(ratio "$c" "$pipe_cpu")" '<= 0.040 ms' \
        'utime+stime of vendd over the lossless step and its drain / rows stored'
done
row "vendd status ingest, $(fmt "$FLEET") machines (lossless msg/s)" "$(fmt "$s_best")" \
    "pipeline $(fmt "$pipe_best")" "$(ratio "$s_best" "$pipe_best")" '>= 0.90' "$s_why"
row '  loss at the step above' "$(fmt "$s_loss") of $(fmt "$s_sent")" '' '' '0' \
    "dropped by the broker past max_queued_messages of vendd's dispense session, the one results travel in; CPU per status message $(ms "$s_cpu") at the lossless rate"
fi

# 5. Dispense round trip: DISP_RATE orders/s over 200 machines answering at once; if that
# rate is not sustained, half of it, then a quarter. Three runs, one after the other on the
# same vendd (their orders add up), as the HTTP reads: one run of 10 s moved by half on
# this box from one run to the next. The medians of the runs' p50 and p99, every run shown.
disp_runs=() disp_p50s=() disp_p99s=() disp_rates=() disp_all_done=1
for prefix in bd be bf; do
    dispense "$dir/vendd.db" "$hport" "$vpid" "$prefix"
    if ((!disp_done)); then
        disp_all_done=0
        break
    fi
    disp_p50s+=("$p50") disp_p99s+=("$p99") disp_rates+=("$disp_rate")
    disp_runs+=("p50 $p50 / p99 $p99 ms at $(fmt "$disp_rate")/s, $completed of $orders completed${disp_notes:+ ($disp_notes)}")
done
if ((disp_all_done)); then
    # Each run falls back to a lower rate on its own: a median over runs at different rates
    # says so in its label.
    if [[ ${disp_rates[0]} == "${disp_rates[1]}" && ${disp_rates[1]} == "${disp_rates[2]}" ]]; then
        disp_label="$(fmt "$disp_rate") orders/s over $DISP_MACHINES machines (median of 3 runs)"
    else
        disp_label="over $DISP_MACHINES machines (median of 3 runs NOT at one rate: $(fmt "${disp_rates[0]}"), $(fmt "${disp_rates[1]}"), $(fmt "${disp_rates[2]}") orders/s)"
    fi
    row "dispense round trip p50, $disp_label" \
        "$(median "${disp_p50s[@]}") ms" '' '' '<= 1 ms' \
        "due time of POST /api/dispense/trigger -> result committed (SQLite polled every 0.1 ms); runs: $(IFS=';'; echo "${disp_runs[*]}")"
    row '  dispense round trip p99 (median of 3 runs)' "$(median "${disp_p99s[@]}") ms" '' '' '<= 5 ms' \
        "last run: $disp_why"
else
    row 'dispense round trip' 'failed' '' '' '' "see $dir/dispload.log"
fi

# 6. HTTP reads beside the hello-world, interleaved, three times each; medians.
awk -v n="$FLEET" 'BEGIN { for (i = 1; i <= n; i++) printf "/api/stock/vm%05d\n", i }' >"$dir/stock.txt"
sqlite3 -readonly "$dir/vendd.db" "SELECT '/api/orders/' || id FROM orders WHERE status = 'COMPLETED' LIMIT 10000" \
    >"$dir/orders.txt"
[[ -s $dir/orders.txt ]] || echo "/api/orders/bd$DISP_RATE-0000001" >"$dir/orders.txt"
"$bin/hello" --port 0 >"$dir/hello.out" 2>&1 &
hello_pid=$!
pids+=("$hello_pid")
for _ in $(seq 100); do grep -q port "$dir/hello.out" 2>/dev/null && break; sleep 0.05; done
hello_port=$(awk '{ print $3 }' "$dir/hello.out")
h_hello=() h_stock=() h_orders=()
for i in 1 2 3; do
    l=$("$bin/httpload" --port "$hello_port" --seconds "$HTTP_S" --path /) || true
    h_hello+=("$(kv "$l" rate)")
    log "hello run $i: $l"
    l=$("$bin/httpload" --port "$hport" --seconds "$HTTP_S" --paths "$dir/stock.txt") || true
    h_stock+=("$(kv "$l" rate)")
    log "GET /api/stock/{machine} run $i: $l"
    c0=$(cpu_us "$vpid")
    l=$("$bin/httpload" --port "$hport" --seconds "$HTTP_S" --paths "$dir/orders.txt") || true
    h_orders+=("$(kv "$l" rate)")
    log "GET /api/orders/{id} run $i: $l"
done
hm=$(median "${h_hello[@]}") sm=$(median "${h_stock[@]}") om=$(median "${h_orders[@]}")
row 'libmicrohttpd hello-world, vendd threading mode (req/s, median of 3)' "$(fmt "$hm")" '(ceiling)' \
    '' '' "httpload: 64 keep-alive connections, one thread, on the same 2 cores; runs ${h_hello[*]}"
row 'GET /api/stock/{machine} (req/s, median of 3)' "$(fmt "$sm")" "hello $(fmt "$hm")" \
    "$(ratio "$sm" "$hm")" '>= 0.50' "$FLEET machines in turn, 2 slots each; runs ${h_stock[*]}"
row 'GET /api/orders/{id} (req/s, median of 3)' "$(fmt "$om")" "hello $(fmt "$hm")" \
    "$(ratio "$om" "$hm")" '>= 0.50' "completed dispense orders in turn; runs ${h_orders[*]}"

# 7. RSS with 10,000 machines known, after everything above and what an operator may ask:
# GET /api/machines with default arguments, then every page of it at the largest page size,
# and the largest page of the other lists.
api_get() { curl -s -o "$dir/api.out" -w '%{http_code}' "127.0.0.1:$hport$1"; }
asked="GET /api/machines: $(api_get /api/machines)"
cursor='' pages=0
while ((pages < 100)); do
    code=$(api_get "/api/machines?limit=500${cursor:+&cursor=$cursor}")
    pages=$((pages + 1))
    cursor=$(sed -n 's/.*"next_cursor":"\([^"]*\)".*/\1/p' "$dir/api.out")
    [[ $code == 200 && -n $cursor ]] || break
done
asked+=", $pages page(s) of ?limit=500: $code"
for p in '/api/orders?limit=500' '/api/machines/vm00001/telemetry?limit=500' \
    '/api/dispense/logs/vm00001?limit=500' '/api/alerts' '/api/refunds?status=all&limit=500' \
    /metrics; do
    asked+=", ${p#/api/}: $(api_get "$p")"
done
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$vpid/status")
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$vpid/status")
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
row "vendd peak RSS (VmHWM), $(fmt "$FLEET") machines registered" "$(mb "$hwm")" '' '' '<= 32 MB' \
    "VmRSS now $(mb "$rss"), after registration $(mb "$rss_registered"); after every run above and ($asked; HTTP statuses)"

log "machine registration: $(fmt "$reg_rate") POST /api/machines/s, $(fmt "$slot_rate") PUT slots/s (16 connections)"

# 8. PostgreSQL, 1 to 3 instances: SQLite's vendd and broker stopped first (neither may take
# the cores, nor keep a session the broker queues for).
if [[ $PARTS == all ]]; then
    stop_pid "$vpid"
    stop_pid "$hello_pid"
    stop_pid "$mpid"
    pg_part
fi
log "total time $((($(now_us) - T_START) / 1000000)) s"
print_table
