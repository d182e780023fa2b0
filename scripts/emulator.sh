#!/usr/bin/env bash
# Starts, stops and inspects the local moto server that emulates AWS.
#
#   scripts/emulator.sh start    start the server in the background, wait until it responds
#   scripts/emulator.sh stop     stop the server that `start` started
#   scripts/emulator.sh status   print whether it runs; exit 0 if it does, 3 if not
#   scripts/emulator.sh url      print the endpoint, for AWS_ENDPOINT_URL
#
# Environment:
#   MOTO_PORT                 TCP port on 127.0.0.1 (default 5000)
#   MOTO_ECS_SERVICE_RUNNING  running-task count that every ECS service reports
#                             (default 1). The `services-stable` waiter passes
#                             only when it equals the service's desired count.
#   MOTO_START_TIMEOUT        seconds to wait for the server to respond (default 30)
#
# The pid, port and log files are under `.local/`. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

state_dir=.local
pid_file=$state_dir/moto.pid
port_file=$state_dir/moto.port
log_file=$state_dir/moto.log
moto_server=.venv/bin/moto_server
start_timeout=${MOTO_START_TIMEOUT:-30}

say() { printf 'emulator: %s\n' "$*" >&2; }
fail() {
    printf 'emulator: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

# Prints the pid from the pid file if that process is still a moto server, so
# that a pid reused by another process is never signalled.
running_pid() {
    [[ -f $pid_file ]] || return 1
    local pid
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(ps -o args= -p "$pid" 2>/dev/null)" == *moto_server* ]] || return 1
    printf '%s\n' "$pid"
}

# The port of the running server, or the one `start` would use.
current_port() {
    if running_pid >/dev/null && [[ -f $port_file ]]; then
        cat "$port_file"
    else
        printf '%s\n' "${MOTO_PORT:-5000}"
    fi
}

endpoint() { printf 'http://127.0.0.1:%s\n' "$(current_port)"; }

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Succeeds when moto's own API on 127.0.0.1:$1 returns HTTP 200.
moto_responds() {
    .venv/bin/python - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
}

log_tail() {
    printf -- '--- last lines of %s ---\n' "$log_file" >&2
    tail -n 20 "$log_file" >&2 || true
}

start() {
    local pid port
    if pid=$(running_pid); then
        say "already running (pid $pid) at $(endpoint)"
        endpoint
        return 0
    fi

    [[ -x $moto_server ]] || fail "\`$moto_server\` not found; run scripts/setup.sh first"
    port=${MOTO_PORT:-5000}
    if ! [[ $port =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
        fail "invalid MOTO_PORT \`$port\`; set it to a port number from 1 to 65535"
    fi
    port=$((10#$port))
    if port_in_use "$port"; then
        fail "port \`$port\` on 127.0.0.1 is already in use; stop that process or set MOTO_PORT to a free port"
    fi

    mkdir -p "$state_dir"
    MOTO_ACM_VALIDATION_WAIT=0 \
        MOTO_IAM_LOAD_MANAGED_POLICIES=true \
        MOTO_ECS_SERVICE_RUNNING=${MOTO_ECS_SERVICE_RUNNING:-1} \
        nohup "$moto_server" -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$pid_file"
    printf '%s\n' "$port" >"$port_file"

    local deadline=$((SECONDS + start_timeout))
    until moto_responds "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file" "$port_file"
            log_tail
            fail "moto server exited during start; see \`$log_file\`"
        fi
        if ((SECONDS >= deadline)); then
            log_tail
            fail "moto server did not respond on $(endpoint)/moto-api/ within ${start_timeout} s; stop it with \`scripts/emulator.sh stop\`"
        fi
        sleep 0.2
    done

    say "started moto (pid $pid) at $(endpoint); log: \`$log_file\`"
    endpoint
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$pid_file" "$port_file"
        say "not running"
        return 0
    fi

    kill -TERM "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid did not exit 10 s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi

    rm -f "$pid_file" "$port_file"
    say "stopped moto (pid $pid)"
}

status() {
    local pid
    if pid=$(running_pid); then
        printf 'running (pid %s) at %s\n' "$pid" "$(endpoint)"
    else
        printf 'not running\n'
        exit 3
    fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
url) endpoint ;;
-h | --help | help) usage ;;
*)
    usage
    exit 2
    ;;
esac
