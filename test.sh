#!/usr/bin/env bash
# Runs Herald's whole test suite: builds with warnings as errors, installs what the tests need from
# Debian when it is missing, runs every test project, and ends with one line "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '==> %s\n' "$*"; }

# What the suites need from Debian: PostgreSQL (farm store), Dovecot (real push_notification
# plugin), Chromium + ChromeDriver (admin console), nghttp2-client (h2load, the benchmark peer),
# wrk (the ingest benchmark's load generator).
need_pkgs=()
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v dovecot >/dev/null 2>&1 || need_pkgs+=(dovecot-core dovecot-imapd dovecot-lmtpd)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
command -v h2load >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ${need_pkgs[*]} from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    # Debian starts the packaged services; the tests run their own throw-away instances instead.
    systemctl disable --now dovecot postgresql >/dev/null 2>&1 || service dovecot stop >/dev/null 2>&1 || true
  else
    echo "WARNING: missing ${need_pkgs[*]} and not root: tests that need them will fail loudly" >&2
  fi
fi

log "building (warnings are errors)"
dotnet build Herald.slnx -c Release -nologo -clp:NoSummary -v:quiet

log "running tests"
out=$(mktemp)
set +e
timeout 25m dotnet test --solution Herald.slnx -c Release --no-build 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e

# One closing line a CI reader understands, summed over the projects.
total_failed=$(grep -E '^\s+failed: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
total_passed=$(grep -E '^\s+succeeded: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
total_skipped=$(grep -E '^\s+skipped: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
rm -f "$out"
echo "${total_passed} passed, ${total_failed} failed, ${total_skipped} skipped"
if [ "$status" -ne 0 ]; then
  echo "test run failed (exit $status)" >&2
  exit "$status"
fi
if [ "${total_passed}" = 0 ]; then
  echo "no test ran" >&2
  exit 1
fi
