#!/usr/bin/env bash
# Runs the tests of the workspace: unit tests and the end-to-end tests of the
# deployer against the AWS emulator.
#
#   scripts/test.sh [CARGO TEST ARGUMENTS...]
#
# The arguments go to `cargo test`, for example `scripts/test.sh -p app` or
# `scripts/test.sh -- --nocapture`. Without `-p`/`--package` every package of
# the workspace is tested. The end-to-end tests start their own moto server
# from the virtualenv that scripts/setup.sh creates, which they find through
# DEPLOYER_MOTO_SERVER.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# libtest sets no time limit on a test, so a test that hangs would stall the
# run until CI kills it and prints nothing useful. Build first, with no limit,
# then run the tests within TEST_TIME_LIMIT minutes (default 30; the suite takes
# about 4). `timeout` stops the whole process group: cargo, the test binaries
# and the servers they started.
time_limit=${TEST_TIME_LIMIT:-30}
if [[ ! $time_limit =~ ^[1-9][0-9]{0,3}$ ]]; then
    echo "test: invalid TEST_TIME_LIMIT \`$time_limit\`; give a whole number of minutes from 1 to 9999, such as 30" >&2
    exit 2
fi
scripts/setup.sh

export DEPLOYER_MOTO_SERVER=$PWD/.venv/bin/moto_server
# Keep the AWS SDK from asking the EC2 instance metadata service for credentials.
export AWS_EC2_METADATA_DISABLED=true

# `--workspace` would override a package selection, so add it only when the
# arguments before `--` select no package.
scope=(--workspace)
for argument in "$@"; do
    case $argument in
    --) break ;;
    -p | -p* | --package | --package=*) scope=() ;;
    esac
done

cargo test ${scope[@]+"${scope[@]}"} --no-run "$@"

# Keep cargo's own output and end with one line that adds up every test binary's
# results, so the total is easy to find in a long CI log.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
timeout --kill-after=30s "${time_limit}m" cargo test ${scope[@]+"${scope[@]}"} "$@" 2>&1 | tee "$log" || status=$?
timed_out=false
if ((status == 124 || status == 137)); then
    timed_out=true
    echo "test: the tests did not finish within TEST_TIME_LIMIT=${time_limit} (minutes) and were stopped; a test that cargo reported above as running for over 60 seconds may hang" | tee -a "$log" >&2
fi
# The self-check of the test OpenID provider runs with the whole suite only.
if ((${#scope[@]} > 0)) && (($# == 0)); then
    node --test tests/oidc/selfcheck.mjs 2>&1 | tee -a "$log" || status=$?
fi
# Count each test's own line, so a run stopped at the time limit still counts
# the tests that finished.
awk -v timed_out="$timed_out" \
    '/^test .* \.\.\. ok$/ { passed++ }
     /^test .* \.\.\. FAILED$/ { failed++ }
     /^# pass / { passed += $3 }
     /^# fail / { failed += $3 }
     END {
         printf "tests: %d passed, %d failed", passed, failed
         if (timed_out == "true") printf " (stopped at the time limit)"
         printf "\n"
     }' "$log"
exit "$status"
