# shellcheck shell=bash
# dev-broker.sh - sourced by guide.sh and dev_broker_restart.sh: deploy/mosquitto/dev.conf,
# the broker `make run` starts, on a random loopback port instead of 1883.
#
# dev_broker_conf PORT OUT [LINE...]: writes dev.conf with its listener moved to PORT, a
# "user" line naming us, and each LINE, to OUT. Fails if dev.conf no longer has the one
# listener line this expects. Run mosquitto with OUT from a directory holding var/:
# persistence_location is relative. (As root, mosquitto would switch to user "mosquitto",
# which cannot write var/ here; as anyone else the "user" line has no effect. tools/run-dev
# does the same for `make run`.)

dev_broker_conf() {
    local port=$1 out=$2 src
    shift 2
    src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/deploy/mosquitto/dev.conf"
    sed "s/^listener 1883 127\.0\.0\.1\$/listener $port 127.0.0.1/" "$src" >"$out" || return 1
    if [[ $(grep -c "^listener $port 127\.0\.0\.1\$" "$out") -ne 1 ]]; then
        echo "dev-broker.sh: $src has no 'listener 1883 127.0.0.1' line to move" >&2
        return 1
    fi
    printf 'user %s\n' "$(id -un)" >>"$out"
    if (($# > 0)); then
        printf '%s\n' "$@" >>"$out"
    fi
}
