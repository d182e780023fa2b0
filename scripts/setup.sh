#!/usr/bin/env bash
# Creates the virtualenv `.venv` at the repository root and installs the AWS
# emulator (moto) into it from tests/emulator/requirements.txt, then installs
# the OpenID provider of the tests (tests/oidc, `npm ci`), the browser test's
# driver (tests/browser) and Debian's Chromium when it is missing.
#
#   scripts/setup.sh [--no-browser]
#
# `--no-browser` skips tests/browser and Chromium, which only the browser test
# needs; the local demo passes it.
#
# Running it again is cheap: it skips the install when `.venv` already contains
# exactly the requirements and constraints files that are checked in, which it
# tells by a SHA-256 stamp written after each successful install.
#
# Environment: PYTHON names the interpreter that creates `.venv` (default
# `python3`, which must be CPython 3.11 or later).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_browser=true
if (($# > 1)); then
    printf 'setup: error: too many arguments (%s); the only option is --no-browser\n' "$*" >&2
    exit 2
fi
case ${1:-} in
"") ;;
--no-browser) with_browser=false ;;
*)
    printf 'setup: error: unknown argument `%s`; the only option is --no-browser\n' "$1" >&2
    exit 2
    ;;
esac

python=${PYTHON:-python3}
venv=.venv
requirements=tests/emulator/requirements.txt
constraints=tests/emulator/constraints.txt
stamp=$venv/.requirements.sha256

say() { printf 'setup: %s\n' "$*"; }
fail() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# sha256sum is in GNU coreutils; macOS has shasum instead.
sha256_of_stdin() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | cut -d ' ' -f 1
    else
        shasum -a 256 | cut -d ' ' -f 1
    fi
}

installed_moto_version() {
    "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null ||
        echo "unknown"
}

if ! command -v "$python" >/dev/null 2>&1; then
    fail "\`$python\` not found; install CPython 3.11 or later, or set PYTHON to its path"
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    fail "\`$python\` is $("$python" --version 2>&1); install CPython 3.11 or later, or set PYTHON to its path"
fi

# A virtualenv whose interpreter was removed or upgraded away cannot run, so rebuild it.
if [[ -e $venv ]] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    say "removing \`$venv\`, whose Python no longer runs"
    rm -rf "$venv"
fi

if [[ ! -x $venv/bin/python ]]; then
    say "creating \`$venv\` with $("$python" --version 2>&1)"
    "$python" -m venv "$venv" ||
        fail "failed to create \`$venv\`; on Debian or Ubuntu install the \`python3-venv\` package"
fi

install_moto() {
    local wanted
    wanted=$(cat "$requirements" "$constraints" | sha256_of_stdin)
    if [[ -f $stamp && "$(<"$stamp")" == "$wanted" && -x $venv/bin/moto_server ]]; then
        say "moto $(installed_moto_version) is already installed in \`$venv\`; nothing to do"
        return
    fi

    say "installing \`$requirements\` into \`$venv\` (about 30 s on first run)"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
        --requirement "$requirements"
    [[ -x $venv/bin/moto_server ]] || fail "pip finished but \`$venv/bin/moto_server\` is missing"

    printf '%s\n' "$wanted" >"$stamp"
    say "installed moto $(installed_moto_version) in \`$venv\`"
}

# Installs the Node packages of a test folder from its lock file, again only
# when the lock file changed.
install_node_packages() {
    local folder=$1
    local node_stamp=$folder/node_modules/.package-lock.sha256
    command -v npm >/dev/null 2>&1 || fail "\`npm\` not found; install Node.js 20 or later with npm"
    local wanted
    wanted=$(sha256_of_stdin <"$folder/package-lock.json")
    if [[ -f $node_stamp && "$(<"$node_stamp")" == "$wanted" ]]; then
        say "the packages of \`$folder\` are already installed; nothing to do"
        return
    fi
    say "installing the packages of \`$folder\` (npm ci)"
    (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$wanted" >"$node_stamp"
}

# The browser test drives Debian's Chromium; playwright-core downloads no browser.
# The Noto CJK fonts make the Japanese text of its screenshot readable.
install_chromium() {
    local packages=()
    [[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || packages+=(chromium)
    [[ -d /usr/share/fonts/opentype/noto ]] || packages+=(fonts-noto-cjk)
    if ((${#packages[@]} == 0)); then
        say "Chromium and the Noto CJK fonts are already installed; nothing to do"
        return
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${packages[*]} from Debian's packages (about a minute)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
        return
    fi
    if [[ " ${packages[*]} " == *" chromium "* ]]; then
        fail "Chromium not found; install it (on Debian or Ubuntu: \`apt-get install chromium\`) or set CHROMIUM to its path"
    fi
    say "warning: fonts-noto-cjk is not installed, so Japanese text in the browser test's screenshot shows as boxes"
}

install_moto
install_node_packages tests/oidc
if [[ $with_browser == true ]]; then
    install_node_packages tests/browser
    install_chromium
fi
