#!/usr/bin/env bash
# Deploys the app to a local emulated AWS stack, end to end.
#
#   scripts/demo.sh          install the emulator, start it, build, start the
#                            OpenID provider (127.0.0.1:9031), the Model
#                            Serving double (127.0.0.1:9032) and the app
#                            (127.0.0.1:8080), and run `deployer up`
#   scripts/demo.sh stop     stop all of them
#
# The emulator (moto) runs no containers, so the demo runs the app as a local
# process, and manifests/local.toml points `deploy.health_url` at it. The
# OpenID provider stands in for the Databricks workspace's sign-in and accepts
# any login name; the double answers Model Serving calls. The AWS
# credentials below are moto's dummy ones, and every AWS call goes to the
# emulator through AWS_ENDPOINT_URL.
#
# Environment: CARGO_TARGET_DIR (default `target`), MOTO_PORT (see
# scripts/emulator.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target_dir=${CARGO_TARGET_DIR:-target}
app_bin=$target_dir/debug/app
deployer_bin=$target_dir/debug/deployer
app_port=8080
app_pid_file=.local/app.pid
app_log=.local/app.log
manifest=manifests/local.toml

step() { printf '\n==> %s\n' "$*"; }
say() { printf 'demo: %s\n' "$*"; }
fail() {
    printf 'demo: error: %s\n' "$*" >&2
    exit 1
}

# Prints the pid from the app's pid file if that process is still the app.
app_pid() {
    [[ -f $app_pid_file ]] || return 1
    local pid
    pid=$(<"$app_pid_file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(ps -o args= -p "$pid" 2>/dev/null)" == */debug/app* ]] || return 1
    printf '%s\n' "$pid"
}

app_healthy() {
    APP_BIND_ADDR=127.0.0.1 PORT=$app_port "$app_bin" healthcheck >/dev/null 2>&1
}

stop_app() {
    local pid
    if ! pid=$(app_pid); then
        rm -f "$app_pid_file"
        say "app not running"
        return 0
    fi

    # The app finishes open requests and exits on SIGTERM.
    kill -TERM "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "app (pid $pid) did not exit 10 s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$app_pid_file"
    say "stopped the app (pid $pid)"
}

start_app() {
    # Restart an app left by an earlier run, so that the new build serves.
    stop_app
    if (exec 3<>"/dev/tcp/127.0.0.1/$app_port") 2>/dev/null; then
        fail "port \`$app_port\` on 127.0.0.1 is already in use; stop the process that uses it and run scripts/demo.sh again"
    fi

    mkdir -p .local
    APP_BIND_ADDR=127.0.0.1 \
        PORT=$app_port \
        LOG_FORMAT=text \
        APP_VERSION=local-demo \
        DATABRICKS_HOST="http://127.0.0.1:$oidc_port" \
        DATABRICKS_CLIENT_ID=$client_id \
        DATABRICKS_CLIENT_SECRET=$client_secret \
        SESSION_KEY="$(session_key)" \
        PUBLIC_URL="http://127.0.0.1:$app_port" \
        SERVING_URL="http://127.0.0.1:$serving_port" \
        nohup "$app_bin" serve >"$app_log" 2>&1 </dev/null &
    local pid=$!
    printf '%s\n' "$pid" >"$app_pid_file"

    local deadline=$((SECONDS + 10))
    until app_healthy; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            tail -n 20 "$app_log" >&2 || true
            fail "the app did not become healthy on 127.0.0.1:$app_port; see \`$app_log\`"
        fi
        sleep 0.1
    done
    say "app running (pid $pid) at http://127.0.0.1:$app_port; log: \`$app_log\`"
}

oidc_port=9031
serving_port=9032
client_id=local-app
client_secret=local-demo-secret

# Stops the process in pid file $1 if it still runs `$2`.
stop_helper() {
    local pid_file=$1 pattern=$2 pid
    if [[ -f $pid_file ]]; then
        pid=$(<"$pid_file")
        if [[ $pid =~ ^[0-9]+$ ]] && [[ "$(ps -o args= -p "$pid" 2>/dev/null)" == *"$pattern"* ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            say "stopped $pattern (pid $pid)"
        fi
        rm -f "$pid_file"
    fi
}

# Waits until `$2` appears in log file $1, or fails with the log's tail.
wait_for_line() {
    local log=$1 pattern=$2 what=$3
    local deadline=$((SECONDS + 20))
    until grep -q "$pattern" "$log" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$log" >&2 || true
            fail "$what did not start; see \`$log\`"
        fi
        sleep 0.1
    done
}

# The OpenID provider stands in for the Databricks workspace's sign-in, with
# any login name and password accepted.
start_oidc_provider() {
    stop_helper .local/oidc.pid server.mjs
    mkdir -p .local
    OIDC_PORT=$oidc_port \
        OIDC_CLIENT_ID=$client_id \
        OIDC_CLIENT_SECRET=$client_secret \
        OIDC_REDIRECT_URIS="http://127.0.0.1:$app_port/oauth/callback" \
        OIDC_POST_LOGOUT_REDIRECT_URIS="http://127.0.0.1:$app_port/" \
        OIDC_EXIT_WITH_PARENT=0 \
        nohup node tests/oidc/server.mjs >.local/oidc.log 2>&1 </dev/null &
    printf '%s\n' "$!" >.local/oidc.pid
    wait_for_line .local/oidc.log '"issuer"' "the OpenID provider"
    say "OpenID provider at http://127.0.0.1:$oidc_port/oidc"
}

# The Model Serving double answers with a fixed summary of the text it gets.
start_serving_double() {
    stop_helper .local/serving.pid serving_double
    nohup "$target_dir/debug/examples/serving_double" --issuer "http://127.0.0.1:$oidc_port/oidc" \
        --port "$serving_port" >.local/serving.log 2>&1 </dev/null &
    printf '%s\n' "$!" >.local/serving.pid
    wait_for_line .local/serving.log '"url"' "the Model Serving double"
    say "Model Serving double at http://127.0.0.1:$serving_port"
}

# A session key made once per checkout, so sessions survive a restart of the demo.
session_key() {
    local file=.local/session-key
    [[ -s $file ]] || (umask 077 && head -c 64 /dev/urandom | base64 -w0 >"$file")
    chmod 600 "$file"
    cat "$file"
}

case ${1:-start} in
start) ;;
stop)
    stop_app
    stop_helper .local/serving.pid serving_double
    stop_helper .local/oidc.pid server.mjs
    scripts/emulator.sh stop
    exit 0
    ;;
*)
    printf 'usage: scripts/demo.sh [start|stop]\n' >&2
    exit 2
    ;;
esac

# On failure, say what may still run and how to stop it.
trap 'status=$?; if ((status != 0)); then say "failed; the emulator and the app may still run: stop them with scripts/demo.sh stop" >&2; fi' EXIT

step "installing the emulator and the OpenID provider (scripts/setup.sh)"
scripts/setup.sh --no-browser

step "starting the emulator (scripts/emulator.sh start)"
endpoint=$(scripts/emulator.sh start)

step "building the deployer and the app"
# Target flags narrow a build to the named targets, so `--bins` keeps the
# deployer and app binaries in it beside the example.
cargo build -p deployer -p app --bins --example serving_double

step "starting the OpenID provider and the Model Serving double"
start_oidc_provider
start_serving_double

step "starting the app on 127.0.0.1:$app_port"
start_app

step "deploying with \`deployer up -m $manifest\`"
# Point every AWS call at the emulator with moto's dummy credentials, and drop
# settings that could send a call elsewhere: a named profile, a session
# token, per-service endpoints and the EC2 instance metadata service.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
while IFS= read -r name; do
    unset "$name"
done < <(compgen -e | grep '^AWS_ENDPOINT_URL_' || true)
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=ap-northeast-1
export AWS_EC2_METADATA_DISABLED=true
# The manifest reads the Databricks client secret from this variable.
export DATABRICKS_CLIENT_SECRET=$client_secret

# moto's CodeBuild reports every build as succeeded at once but pushes no
# image, so fake_codebuild.py plays that part: once the deployer uploads the
# source bundle, it puts an image manifest with the bundle's tag into ECR.
tag=$("$deployer_bin" bundle -m "$manifest" 2>/dev/null)
account=$(.venv/bin/python -c 'import os, boto3; print(boto3.client("sts", region_name=os.environ["AWS_REGION"]).get_caller_identity()["Account"])')
.venv/bin/python tests/emulator/fake_codebuild.py --endpoint "$endpoint" --region "$AWS_REGION" \
    --bucket "demo-local-$account-$AWS_REGION" --repository demo/local --tag "$tag" &
fake_build_pid=$!
status=0
"$deployer_bin" up -m "$manifest" || status=$?
kill "$fake_build_pid" 2>/dev/null || true
wait "$fake_build_pid" 2>/dev/null || true
((status == 0)) || fail "\`deployer up\` failed with exit code $status"

step "checking the app"
app_healthy || fail "the app at http://127.0.0.1:$app_port/health is not healthy; see \`$app_log\`"
say "the app is healthy: http://127.0.0.1:$app_port/health"
say "open http://127.0.0.1:$app_port/summarize and sign in with any name and password"
say "the emulator is at $endpoint"
say "stop everything with: scripts/demo.sh stop"
