#!/usr/bin/env bash
# Make sure the Redis and PostgreSQL server binaries the integration tests start are installed.
#
# Idempotent: when everything is present it only prints one line saying what it found.
# As root with apt-get it installs what is missing (without starting system services);
# otherwise it names the packages to install and exits 1.
set -euo pipefail

pg_bindir() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    # Prefer the real bindir behind a symlink (it also has createdb), as btcpred.local does.
    for d in "$(dirname "$(readlink -f "$(command -v initdb)")")" "$(dirname "$(command -v initdb)")"; do
      if [[ -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return 0; fi
    done
  fi
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return 0; fi
  fi
  shopt -s nullglob
  local dirs=(/usr/lib/postgresql/*/bin)
  shopt -u nullglob
  if ((${#dirs[@]} > 0)); then
    while IFS= read -r d; do
      if [[ -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return 0; fi
    done < <(printf '%s\n' "${dirs[@]}" | sort -rV)
  fi
  return 1
}

missing_packages() {
  local pkgs=()
  command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
  # redis-cli joins the throwaway Redis Cluster's nodes (redis-server depends on it on Debian)
  command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
  pg_bindir >/dev/null || pkgs+=(postgresql)
  # openssl makes the certificate of the TLS-only PostgreSQL the loader's TLS test starts
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  echo "${pkgs[*]:-}"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

install_with_apt() {
  local policy=/usr/sbin/policy-rc.d created_policy=0
  # Keep apt from starting system redis/postgres services; we start throwaway ones ourselves.
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
  fi
  apt-get update -qq
  # A failing service start in a post-install script must not fail us: re-check binaries below.
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $1 >/dev/null ||
    echo "ensure-services: apt-get install exited non-zero; re-checking binaries" >&2
  if ((created_policy)); then rm -f "$policy"; fi
}

ensure_postgres_user() {
  if is_root && pg_bindir >/dev/null && ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/bash postgres
  fi
}

missing=$(missing_packages)
if [[ -n $missing ]]; then
  if is_root && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-services: installing $missing" >&2
    install_with_apt "$missing"
    missing=$(missing_packages)
  fi
  if [[ -n $missing ]]; then
    echo "ensure-services: missing server binaries; install them with:" >&2
    echo "    sudo apt-get install -y $missing" >&2
    echo "  (macOS: brew install redis postgresql)" >&2
    exit 1
  fi
fi
ensure_postgres_user

echo "ensure-services: redis-server=$(command -v redis-server) redis-cli=$(command -v redis-cli)" \
  "postgres-bindir=$(pg_bindir)"
