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

# Keep cargo's own output and end with one line that adds up every test binary's
# results, so the total is easy to find in a long CI log.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test ${scope[@]+"${scope[@]}"} "$@" 2>&1 | tee "$log" || status=$?
# The self-check of the test OpenID provider runs with the whole suite only.
if ((${#scope[@]} > 0)) && (($# == 0)); then
    node --test tests/oidc/selfcheck.mjs 2>&1 | tee -a "$log" || status=$?
fi
awk '/^test result:/ { passed += $4; failed += $6 }
     /^# pass / { passed += $3 }
     /^# fail / { failed += $3 }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
