#!/usr/bin/env bash
# it_vmsim.sh - vmsim (firmware/port/host) against a real mosquitto on a random loopback port:
# a dispense drops, a repeated command is answered from the journal without a second motor
# run, the retained status is ONLINE with "settle":true, and a crash after STARTED
# (--crash-after-start) is reported as POWER_LOSS by the next start, from the kv file.
# The other fault modes: a door opened mid-run (--door-open-rate), a machine gone silent
# (--silent-after, woken by SIGUSR1 or --silent-ms), a lost broker (--lose-broker-every).
# Usage: it_vmsim.sh path/to/vmsim
set -euo pipefail

VMSIM=${1:?usage: it_vmsim.sh path/to/vmsim}
ID=VM01
tmp=$(mktemp -d "${TMPDIR:-/tmp}/it_vmsim.XXXXXX")
broker_pid='' logger_pid='' vm_pid=''

cleanup() {
    local p
    for p in $vm_pid $logger_pid $broker_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "it_vmsim: FAIL: $*" >&2
    for f in vmsim{,2,3,4,5,6,7}.log sub.log mosquitto.log; do
        [[ -f $tmp/$f ]] && { echo "--- $f" >&2; tail -n 30 "$tmp/$f" >&2; }
    done
    exit 1
}

# wait_for FILE ERE COUNT: until FILE has COUNT lines matching ERE (10 s at most).
wait_for() {
    local i
    for ((i = 0; i < 100; i++)); do
        if (($(grep -cE "$2" "$1" 2>/dev/null || true) >= $3)); then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# wait_exit PID: sets rc to its exit status once it ends (10 s at most, else 124 and a TERM).
# Not in $(...): a subshell cannot wait for our children.
wait_exit() {
    local i
    rc=0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
        rc=124
        return
    fi
    wait "$1" || rc=$?
}

# The broker: a random port, retried if taken.
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for ((try = 0; try < 10; try++)); do
    port=$((20000 + RANDOM % 40000))
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser %s\n' \
        "$port" "$(id -un)" >"$tmp/mosquitto.conf"
    "$mosquitto_bin" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
    broker_pid=$!
    for ((i = 0; i < 50; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            break 2
        fi
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=''
done
[[ -n $broker_pid ]] || fail "mosquitto did not start"

export MQTT_BROKER_URL="mqtt://127.0.0.1:$port"
unset MQTT_USERNAME MQTT_PASSWORD
run_vmsim() { # LOG [flags...]
    local log=$1
    shift
    "$VMSIM" --id "$ID" --state-dir "$tmp" --slots 4 --stock 5 --motor-ms 200 --drop-prob 1 \
        --jam-rate 0 --seed 7 "$@" >"$tmp/$log" 2>&1 &
    vm_pid=$!
}
pub() { mosquitto_pub -p "$port" -q 1 -t "vm/$ID/command" -m "$1"; }
dispense() { pub "{\"cmd\":\"dispense\",\"slot\":$1,\"orderId\":\"$2\",\"timeoutMs\":2150}"; }
motor_runs() { grep -c 'motor on' "$tmp/$1" || true; }
ONLINE="^vm/$ID/status .*\"ONLINE\""
OFFLINE="^vm/$ID/status .*\"OFFLINE\""
DOOR="^vm/$ID/status .*\"door\":" # then the quoted state
RESULT="^vm/$ID/dispense_result .*" # then the quoted order id
seen() { grep -cE "$1" "$tmp/sub.log" || true; } # ERE: how many lines of sub.log match
said() { grep -vc "^vm/$ID/command " "$tmp/sub.log" || true; } # what the machine published
result() { grep -E "$RESULT\"$1\"" "$tmp/sub.log" | head -n 1; } # ORDER: its first result
stop_vmsim() { # WHAT: SIGTERM, expect exit 0 and the will, so later counts start after it
    local off
    off=$(seen "$OFFLINE")
    kill -TERM "$vm_pid"
    wait_exit "$vm_pid"
    vm_pid=''
    ((rc == 0)) || fail "vmsim exited $rc on SIGTERM ($1)"
    wait_for "$tmp/sub.log" "$OFFLINE" $((off + 1)) || fail "no OFFLINE status after SIGTERM ($1)"
}

run_vmsim vmsim.log
# Everything the machine says, in order; the retained status proves the subscription is live.
mosquitto_sub -p "$port" -q 1 -v -t "vm/$ID/#" -W 120 >"$tmp/sub.log" 2>&1 &
logger_pid=$!
wait_for "$tmp/sub.log" "^vm/$ID/status .*\"ONLINE\"" 1 || fail "no ONLINE status"

status=$(mosquitto_sub -p "$port" -t "vm/$ID/status" -C 1 -W 10) || fail "no retained status"
[[ $status == *'"status":"ONLINE"'* && $status == *'"settle":true'* ]] ||
    fail "retained status: $status"

cmd1='{"cmd":"dispense","slot":1,"orderId":"IT-VMSIM-1","timeoutMs":2150}'
pub "$cmd1"
wait_for "$tmp/sub.log" '^vm/VM01/dispense_result .*"IT-VMSIM-1"' 1 || fail "no result for IT-VMSIM-1"
r1=$(grep -E '^vm/VM01/dispense_result .*"IT-VMSIM-1"' "$tmp/sub.log" | head -n 1)
[[ $r1 == *'"success":true'* && $r1 == *'"dropDetected":true'* && $r1 == *'"error":null'* ]] ||
    fail "result: $r1"
[[ $(motor_runs vmsim.log) -eq 1 ]] || fail "motor ran $(motor_runs vmsim.log) times for one unit"

# The same command again: answered from the journal, same payload, no second run.
pub "$cmd1"
wait_for "$tmp/sub.log" '^vm/VM01/dispense_result .*"IT-VMSIM-1"' 2 || fail "repeat not answered"
r2=$(grep -E '^vm/VM01/dispense_result .*"IT-VMSIM-1"' "$tmp/sub.log" | sed -n 2p)
[[ $r2 == "$r1" ]] || fail "repeat answered '$r2', first '$r1'"
sleep 0.3
[[ $(motor_runs vmsim.log) -eq 1 ]] || fail "the repeated command ran the motor again"

# Clean shutdown: exit 0, will published.
stop_vmsim "first run"

# A crash once the unit is journaled STARTED: the next start reports POWER_LOSS.
run_vmsim vmsim2.log --crash-after-start
wait_for "$tmp/sub.log" "^vm/$ID/status .*\"ONLINE\"" 2 || fail "no ONLINE status (crash run)"
pub '{"cmd":"dispense","slot":2,"orderId":"IT-VMSIM-2","timeoutMs":2150}'
wait_exit "$vm_pid"
vm_pid=''
((rc == 1)) || fail "--crash-after-start: exit $rc, expected 1"
run_vmsim vmsim3.log
wait_for "$tmp/sub.log" '^vm/VM01/dispense_result .*"IT-VMSIM-2"' 1 ||
    fail "no POWER_LOSS result for IT-VMSIM-2 after the restart"
r3=$(grep -E '^vm/VM01/dispense_result .*"IT-VMSIM-2"' "$tmp/sub.log" | head -n 1)
[[ $r3 == *'"success":false'* && $r3 == *'"error":"POWER_LOSS"'* ]] || fail "after crash: $r3"
[[ $(motor_runs vmsim3.log) -eq 0 ]] || fail "the restart ran a motor"

stop_vmsim "after the crash run"

# A door opened mid-run: the run stops DOOR_OPEN, the status shows the door, and a command
# arriving while it is open is refused DOOR_OPEN without a run (SIM_DOOR_OPEN_MS is 2 s).
n=$(seen "$ONLINE")
run_vmsim vmsim4.log --door-open-rate 1
wait_for "$tmp/sub.log" "$ONLINE" $((n + 1)) || fail "no ONLINE status (door run)"
closed=$(seen "$DOOR\"CLOSED\"")
dispense 3 IT-VMSIM-DOOR-1
wait_for "$tmp/sub.log" "$RESULT\"IT-VMSIM-DOOR-1\"" 1 || fail "no result for IT-VMSIM-DOOR-1"
dispense 3 IT-VMSIM-DOOR-2
r=$(result IT-VMSIM-DOOR-1)
[[ $r == *'"success":false'* && $r == *'"error":"DOOR_OPEN"'* ]] || fail "door mid-run: $r"
wait_for "$tmp/sub.log" "$RESULT\"IT-VMSIM-DOOR-2\"" 1 || fail "no result for IT-VMSIM-DOOR-2"
r=$(result IT-VMSIM-DOOR-2)
[[ $r == *'"success":false'* && $r == *'"error":"DOOR_OPEN"'* ]] || fail "door open: $r"
[[ $(motor_runs vmsim4.log) -eq 1 ]] || fail "motor ran $(motor_runs vmsim4.log) times, expected 1"
wait_for "$tmp/sub.log" "$DOOR\"OPEN\"" 1 || fail "no status with the door open"
wait_for "$tmp/sub.log" "$DOOR\"CLOSED\"" $((closed + 1)) || fail "no status with the door closed again"
stop_vmsim "door run"

# Silent from the first command: dropped, nothing published (not even telemetry, every 1 s),
# still ONLINE; SIGUSR1 wakes it: ONLINE again, and the next command is answered.
n=$(seen "$ONLINE")
run_vmsim vmsim5.log --silent-after 0 --telemetry-ms 1000
wait_for "$tmp/sub.log" "$ONLINE" $((n + 1)) || fail "no ONLINE status (silent run)"
dispense 1 IT-VMSIM-SIL-1
wait_for "$tmp/vmsim5.log" 'goes silent' 1 || fail "--silent-after 0: the machine did not go silent"
sleep 0.2 # what it published at connect has arrived
quiet=$(said)
sleep 1.5
(($(said) == quiet)) || fail "a silent machine published: $(tail -n 2 "$tmp/sub.log")"
[[ $(seen "$RESULT\"IT-VMSIM-SIL-1\"") -eq 0 && $(motor_runs vmsim5.log) -eq 0 ]] ||
    fail "a silent machine ran its command"
status=$(mosquitto_sub -p "$port" -t "vm/$ID/status" -C 1 -W 10) || fail "no retained status"
[[ $status == *'"status":"ONLINE"'* ]] || fail "retained status of a silent machine: $status"
kill -USR1 "$vm_pid"
wait_for "$tmp/sub.log" "$ONLINE" $((n + 2)) || fail "no ONLINE status after SIGUSR1"
dispense 1 IT-VMSIM-SIL-2
wait_for "$tmp/sub.log" "$RESULT\"IT-VMSIM-SIL-2\"" 1 || fail "no result for IT-VMSIM-SIL-2 after the wake"
[[ $(result IT-VMSIM-SIL-2) == *'"success":true'* ]] || fail "after the wake: $(result IT-VMSIM-SIL-2)"
[[ $(seen "$RESULT\"IT-VMSIM-SIL-1\"") -eq 0 ]] || fail "a command dropped while silent was run"
stop_vmsim "silent run"

# Silent during a run (--silent-after 1): the unit ends, but its result waits for the wake,
# which --silent-ms brings without a signal.
n=$(seen "$ONLINE")
run_vmsim vmsim6.log --silent-after 1 --silent-ms 1500 --motor-ms 1000
wait_for "$tmp/sub.log" "$ONLINE" $((n + 1)) || fail "no ONLINE status (--silent-ms run)"
dispense 2 IT-VMSIM-SIL-3
dispense 2 IT-VMSIM-SIL-4
wait_for "$tmp/vmsim6.log" 'goes silent' 1 || fail "--silent-after 1: the machine did not go silent"
wait_for "$tmp/vmsim6.log" 'motor off' 1 || fail "the run of IT-VMSIM-SIL-3 did not end"
[[ $(seen "$RESULT\"IT-VMSIM-SIL-3\"") -eq 0 ]] || fail "a silent machine published its result"
wait_for "$tmp/sub.log" "$ONLINE" $((n + 2)) || fail "no ONLINE status after --silent-ms"
wait_for "$tmp/sub.log" "$RESULT\"IT-VMSIM-SIL-3\"" 1 || fail "no result for IT-VMSIM-SIL-3 after the wake"
[[ $(result IT-VMSIM-SIL-3) == *'"success":true'* ]] || fail "after the wake: $(result IT-VMSIM-SIL-3)"
[[ $(seen "$RESULT\"IT-VMSIM-SIL-4\"") -eq 0 && $(motor_runs vmsim6.log) -eq 1 ]] ||
    fail "the command dropped while silent was run"
stop_vmsim "--silent-ms run"

# A lost broker: the will (OFFLINE) while vmsim runs, ONLINE again, a command answered, and
# the next reconnect re-publishes the unacknowledged result.
n=$(seen "$ONLINE") off=$(seen "$OFFLINE")
run_vmsim vmsim7.log --lose-broker-every 1500 --lose-broker-for 500
wait_for "$tmp/sub.log" "$ONLINE" $((n + 1)) || fail "no ONLINE status (lose-broker run)"
wait_for "$tmp/sub.log" "$OFFLINE" $((off + 1)) || fail "no OFFLINE will after --lose-broker-every"
kill -0 "$vm_pid" || fail "vmsim died losing the broker"
wait_for "$tmp/sub.log" "$ONLINE" $((n + 2)) || fail "no ONLINE status after losing the broker"
dispense 4 IT-VMSIM-LOSE-1
wait_for "$tmp/sub.log" "$RESULT\"IT-VMSIM-LOSE-1\"" 1 || fail "no result for IT-VMSIM-LOSE-1"
[[ $(result IT-VMSIM-LOSE-1) == *'"success":true'* ]] || fail "lose-broker: $(result IT-VMSIM-LOSE-1)"
wait_for "$tmp/sub.log" "$RESULT\"IT-VMSIM-LOSE-1\"" 2 || fail "IT-VMSIM-LOSE-1 not re-published on reconnect"
[[ $(motor_runs vmsim7.log) -eq 1 ]] || fail "motor ran $(motor_runs vmsim7.log) times, expected 1"
stop_vmsim "lose-broker run"

echo "it_vmsim: ok"
