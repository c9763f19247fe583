# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/up, scripts/bench-events and .ci/run:
# installing and starting the infrastructure. The five services themselves
# are started by the stack library (crates/stack) through `orderctl stack`
# (scripts/up), `orderctl bench run` (scripts/bench) and the tests.
#
# Source it from a script that has `set -euo pipefail`:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# then call `install_cleanup_trap` once, so that every process started through
# these helpers is stopped when the script exits (normally, on error, on
# Ctrl-C or SIGTERM).
#
# Every helper is idempotent and returns quickly when what it ensures is
# already there. Environment knobs:
#   ORDERFLOW_CACHE_DIR  cache for tools (the broker, python venv); default ~/.cache/orderflow
#   ORDERFLOW_PG_URL     admin URL of the Postgres server; default
#                        postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
#                        (loopback: TLS would cost CPU and protect nothing)
#   ORDERFLOW_PROFILE    cargo profile for build_bins (dev|release|NAME); default dev
#   BROKER_BIN           use this broker (nisshi) binary instead of the cached one
#   CARGO_TARGET_DIR     honoured by build_bins

if [[ -n "${ORDERFLOW_LIB_SOURCED:-}" ]]; then
  return 0
fi
ORDERFLOW_LIB_SOURCED=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ORDERFLOW_CACHE_DIR:-$HOME/.cache/orderflow}"
# The local server over loopback, without TLS: the services' connections
# (which keep this URL's query) would otherwise negotiate TLS with a server
# that has it on (Debian's does), at a cost in CPU on both ends of every
# statement and no protection (docs/benchmarks.md, "TLS to a PostgreSQL on
# loopback"). A URL of your own is used as given.
ORDERFLOW_PG_URL="${ORDERFLOW_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
# The Kafka-protocol broker of local runs (docs/benchmarks.md says why this
# one): nisshi (tansu's successor) with its SQLite engine.
BROKER_NAME="nisshi"
BROKER_VERSION="0.8.1"
BROKER_FEATURES="libsql"
BROKER_RUSTC="1.96"
# The crates the broker is built from, as published on crates.io, with the
# registry's sha256: the binary's crate first, then the ones that
# third_party/nisshi/*.patch change (each patched crate replaces the
# registry's through [patch.crates-io]; third_party/nisshi/README.md says
# what each patch does and why).
BROKER_CRATES=(
  "nisshi 0.8.1 a357efb09b95f96964366d41b030341aa9c729544ae4dd9cdd012d7ef8e19a52"
  "nisshi-storage 0.8.1 86f02c7bef648d9e8b00f9f6277f5bfad9e4a401db14c13e83e8d1f9b70ada4c"
  "nisshi-storage-sql 0.8.1 72a33926c01b134c0f50c729699ddd82265f01e78b5cd124a277263c9bcade34"
  "nisshi-service 0.8.1 0e4da4bb0da28332aff5662df125a66f764ca18013bd9b02d5aaf044076183f1"
)
BROKER_PATCHES="$ROOT/third_party/nisshi"

# Processes started by start_bg (PID, name and log file, same index).
ORDERFLOW_PIDS=()
ORDERFLOW_PID_NAMES=()
ORDERFLOW_PID_LOGS=()
ORDERFLOW_CLEANED_UP=0
# Exit code used when the script is stopped by SIGINT / SIGTERM
# (scripts/up sets it to 0: stopping the stack is the normal way out).
ORDERFLOW_SIGNAL_EXIT_CODE="${ORDERFLOW_SIGNAL_EXIT_CODE:-}"

# ---------------------------------------------------------------- logging

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
err() { printf '==> ERROR: %s\n' "$*" >&2; }
die() {
  err "$*"
  exit 1
}

# tail_log FILE [LINES]: print the end of a log file to stderr, indented.
tail_log() {
  local file="$1" lines="${2:-40}"
  if [[ -s "$file" ]]; then
    printf '==> last %s lines of %s:\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" | sed 's/^/    /' >&2
  fi
}

# ---------------------------------------------------------------- processes

# start_bg NAME LOGFILE WORKDIR CMD...: run CMD in WORKDIR in the background,
# stdout+stderr appended to LOGFILE; the PID is recorded for cleanup and
# stored in LAST_PID.
start_bg() {
  local name="$1" logfile="$2" workdir="$3"
  shift 3
  mkdir -p "$(dirname "$logfile")" "$workdir"
  # The command line, with the passwords of URLs in it (the registry's
  # users, the databases' roles) replaced by ***.
  printf '\n===== %s: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(redact_url "$*")" >>"$logfile"
  (cd "$workdir" && exec "$@") >>"$logfile" 2>&1 </dev/null &
  LAST_PID=$!
  ORDERFLOW_PIDS+=("$LAST_PID")
  ORDERFLOW_PID_NAMES+=("$name")
  ORDERFLOW_PID_LOGS+=("$logfile")
  log "started $name (pid $LAST_PID, log $logfile)"
}

# pid_name PID: the name start_bg recorded for PID.
pid_name() {
  local i
  for i in "${!ORDERFLOW_PIDS[@]}"; do
    if [[ "${ORDERFLOW_PIDS[$i]}" == "$1" ]]; then
      printf '%s\n' "${ORDERFLOW_PID_NAMES[$i]}"
      return 0
    fi
  done
  printf 'pid %s\n' "$1"
}

# pid_log PID: the log file start_bg recorded for PID.
pid_log() {
  local i
  for i in "${!ORDERFLOW_PIDS[@]}"; do
    if [[ "${ORDERFLOW_PIDS[$i]}" == "$1" ]]; then
      printf '%s\n' "${ORDERFLOW_PID_LOGS[$i]}"
      return 0
    fi
  done
}

# cleanup [SIGNAL]: stop every recorded process (TERM, up to 10 s, then KILL),
# newest first. Safe to call more than once. With a signal name (from the
# INT/TERM traps) it exits afterwards, with ORDERFLOW_SIGNAL_EXIT_CODE or
# 128+signal.
cleanup() {
  local rc=$? sig="${1:-}"
  trap - EXIT INT TERM
  if [[ "$ORDERFLOW_CLEANED_UP" != 1 ]]; then
    ORDERFLOW_CLEANED_UP=1
    local i pid alive=() deadline
    for ((i = ${#ORDERFLOW_PIDS[@]} - 1; i >= 0; i--)); do
      pid="${ORDERFLOW_PIDS[$i]}"
      if kill -0 "$pid" 2>/dev/null; then
        log "stopping ${ORDERFLOW_PID_NAMES[$i]} (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        alive+=("$pid")
      fi
    done
    if ((${#alive[@]} > 0)); then
      deadline=$((SECONDS + 10))
      while ((SECONDS < deadline)); do
        local still=()
        for pid in "${alive[@]}"; do
          if kill -0 "$pid" 2>/dev/null; then still+=("$pid"); fi
        done
        alive=("${still[@]+"${still[@]}"}")
        ((${#alive[@]} == 0)) && break
        sleep 0.2
      done
      for pid in "${alive[@]+"${alive[@]}"}"; do
        warn "$(pid_name "$pid") (pid $pid) did not stop within 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      done
      for pid in "${ORDERFLOW_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
      done
    fi
  fi
  if [[ -n "$sig" ]]; then
    local code="$ORDERFLOW_SIGNAL_EXIT_CODE"
    if [[ -z "$code" ]]; then
      case "$sig" in
        INT) code=130 ;;
        TERM) code=143 ;;
        *) code=1 ;;
      esac
    fi
    exit "$code"
  fi
  return "$rc"
}

# install_cleanup_trap: `trap cleanup EXIT INT TERM`, with the signal traps
# exiting after the cleanup (bash would otherwise carry on after a trapped
# signal).
install_cleanup_trap() {
  trap cleanup EXIT
  trap 'cleanup INT' INT
  trap 'cleanup TERM' TERM
}

# ---------------------------------------------------------------- waiting

# port_in_use PORT [HOST]: true if something accepts TCP connections there.
port_in_use() {
  local port="$1" host="${2:-127.0.0.1}"
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# require_free_port PORT WHAT: fail clearly if PORT on 127.0.0.1 is taken.
require_free_port() {
  local port="$1" what="$2"
  if port_in_use "$port"; then
    local who=""
    if command -v ss >/dev/null 2>&1; then
      who="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1)"
    fi
    die "port $port (for $what) is already in use${who:+ by $who}; stop that process or choose another port"
  fi
}

# wait_for_port HOST PORT TIMEOUT_S [PID]: poll until HOST:PORT accepts TCP
# connections. With PID, fail early if that process has exited.
wait_for_port() {
  local host="$1" port="$2" timeout_s="$3" pid="${4:-}"
  local deadline=$((SECONDS + timeout_s))
  while true; do
    if port_in_use "$port" "$host"; then
      return 0
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      err "$(pid_name "$pid") exited before $host:$port started accepting connections"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      err "timed out after ${timeout_s}s waiting for $host:$port to accept TCP connections"
      return 1
    fi
    sleep 0.2
  done
}

# wait_for_http URL TIMEOUT_S [PID]: poll until URL answers with a 2xx status.
# With PID, fail early if that process has exited.
wait_for_http() {
  local url="$1" timeout_s="$2" pid="${3:-}"
  local deadline=$((SECONDS + timeout_s)) out=""
  while true; do
    if out="$(curl -fsS -o /dev/null --max-time 2 "$url" 2>&1)"; then
      return 0
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      err "$(pid_name "$pid") exited before $url answered"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      err "timed out after ${timeout_s}s waiting for $url (last error: ${out:-none})"
      return 1
    fi
    sleep 0.3
  done
}

# ---------------------------------------------------------------- postgres

# pg_url_parts URL: sets PG_SCHEME PG_AUTHORITY PG_HOST PG_PORT PG_QUERY.
pg_url_parts() {
  local url="$1" rest hostport
  PG_SCHEME="${url%%://*}"
  rest="${url#*://}"
  PG_QUERY=""
  if [[ "$rest" == *\?* ]]; then
    PG_QUERY="?${rest#*\?}"
    rest="${rest%%\?*}"
  fi
  PG_AUTHORITY="${rest%%/*}"
  hostport="${PG_AUTHORITY##*@}"
  if [[ "$hostport" =~ ^\[([^]]*)\](:([0-9]+))?$ ]]; then
    PG_HOST="${BASH_REMATCH[1]}"
    PG_PORT="${BASH_REMATCH[3]:-5432}"
  elif [[ "$hostport" == *:* ]]; then
    PG_HOST="${hostport%%:*}"
    PG_PORT="${hostport##*:}"
  else
    PG_HOST="$hostport"
    PG_PORT=5432
  fi
  PG_HOST="${PG_HOST:-127.0.0.1}"
}

# pg_url_for_db NAME: ORDERFLOW_PG_URL with its database replaced by NAME.
pg_url_for_db() {
  pg_url_parts "$ORDERFLOW_PG_URL"
  printf '%s://%s/%s%s\n' "$PG_SCHEME" "$PG_AUTHORITY" "$1" "$PG_QUERY"
}

pg_is_local() {
  pg_url_parts "$ORDERFLOW_PG_URL"
  case "$PG_HOST" in
    127.0.0.1 | localhost | ::1 | /*) return 0 ;;
    *) return 1 ;;
  esac
}

# _pg_start_local_cluster PORT: start the local cluster listening on PORT
# (or the newest cluster), installing PostgreSQL if it is missing.
_pg_start_local_cluster() {
  local port="$1" fresh=0 version cluster
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [[ -z "$(ls /etc/postgresql 2>/dev/null)" ]]; then
    log "PostgreSQL is not installed; installing it with apt-get (needs root)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fresh=1
  fi
  read -r version cluster < <(pg_lsclusters -h | awk -v p="$port" '$3 == p {print $1, $2; exit}') || true
  if [[ -z "${version:-}" ]]; then
    version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)"
    cluster=main
  fi
  if ((fresh)); then
    # A fresh Debian cluster wants a password over TCP; the project's default
    # URL has none. Trust local TCP connections, as on the dev machines.
    local hba="/etc/postgresql/$version/$cluster/pg_hba.conf"
    if [[ -f "$hba" ]] && ! grep -q 'orderflow: trust local TCP' "$hba"; then
      log "configuring $hba: trust TCP connections from 127.0.0.1 and ::1"
      local tmp
      tmp="$(mktemp)"
      {
        echo "# orderflow: trust local TCP (added by scripts/lib.sh)"
        echo "host all all 127.0.0.1/32 trust"
        echo "host all all ::1/128 trust"
        cat "$hba"
      } >"$tmp"
      cat "$tmp" >"$hba"
      rm -f "$tmp"
    fi
  fi
  log "starting PostgreSQL cluster $version/$cluster"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2 ||
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" restart >&2 ||
    warn "pg_ctlcluster could not start $version/$cluster (will keep waiting)"
}

# ensure_postgres: make sure the server in ORDERFLOW_PG_URL accepts
# connections (starting a local one if needed), waiting up to 60 s.
ensure_postgres() {
  pg_url_parts "$ORDERFLOW_PG_URL"
  local host="$PG_HOST" port="$PG_PORT"
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    if pg_is_local; then
      _pg_start_local_cluster "$port"
    else
      log "installing postgresql-client (psql, pg_isready)"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >&2
    fi
  fi
  if pg_isready -q -h "$host" -p "$port" -t 2; then
    return 0
  fi
  if pg_is_local; then
    _pg_start_local_cluster "$port"
  else
    log "waiting for the external PostgreSQL at $host:$port"
  fi
  local deadline=$((SECONDS + 60))
  until pg_isready -q -h "$host" -p "$port" -t 2; do
    if ((SECONDS >= deadline)); then
      die "PostgreSQL at $host:$port is not accepting connections after 60 s (ORDERFLOW_PG_URL=$ORDERFLOW_PG_URL)"
    fi
    sleep 0.5
  done
  log "PostgreSQL at $host:$port is accepting connections"
}

_pg_check_name() {
  [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "invalid database name: '$1'"
}

# _psql: psql against the admin URL, SQL on stdin, psql variables allowed.
_psql() {
  PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql "$ORDERFLOW_PG_URL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

_pg_database_exists() {
  [[ "$(_psql -v name="$1" <<<"SELECT 1 FROM pg_database WHERE datname = :'name';")" == 1 ]]
}

# ensure_database NAME: create database NAME unless it exists.
ensure_database() {
  local name="$1"
  _pg_check_name "$name"
  if _pg_database_exists "$name"; then
    return 0
  fi
  log "creating database $name"
  # A concurrent run may create it between the check and the CREATE.
  if ! _psql -v name="$name" <<<'CREATE DATABASE :"name";' 2>/dev/null; then
    _pg_database_exists "$name" || die "could not create database $name"
  fi
}

# recreate_database NAME: drop database NAME (closing its connections) and
# create it empty.
recreate_database() {
  local name="$1"
  _pg_check_name "$name"
  log "recreating database $name"
  _psql -v name="$name" <<<'DROP DATABASE IF EXISTS :"name" WITH (FORCE);' ||
    die "could not drop database $name"
  _psql -v name="$name" <<<'CREATE DATABASE :"name";' ||
    die "could not create database $name"
}

# ---------------------------------------------------------------- broker

# _rustc_at_least TOOLCHAIN MAJOR MINOR: true if `rustc +TOOLCHAIN` (the
# default toolchain when TOOLCHAIN is empty) exists and is at least
# MAJOR.MINOR.
_rustc_at_least() {
  local toolchain="$1" want_major="$2" want_minor="$3" version major minor
  version="$(rustc ${toolchain:++$toolchain} --version 2>/dev/null | awk '{print $2}')" || return 1
  [[ -n "$version" ]] || return 1
  IFS=. read -r major minor _ <<<"$version"
  ((major > want_major || (major == want_major && minor >= want_minor)))
}

# fetch_crate NAME VERSION SHA256 DIR: print the path of NAME-VERSION.crate
# in DIR, downloading it from crates.io when it is missing or does not have
# SHA256; dies when the download does not have it either.
fetch_crate() {
  local name="$1" version="$2" sha="$3" dir="$4" file
  file="$dir/$name-$version.crate"
  if [[ ! -f "$file" ]] || ! echo "$sha  $file" | sha256sum -c --status; then
    mkdir -p "$dir"
    log "downloading $name $version from crates.io"
    curl -sSfL --retry 3 -o "$file.part" "https://static.crates.io/crates/$name/$name-${version//+/%2B}.crate" ||
      die "downloading $name $version from crates.io failed"
    mv "$file.part" "$file"
  fi
  echo "$sha  $file" | sha256sum -c --status ||
    die "$file does not have the pinned sha256 $sha"
  printf '%s\n' "$file"
}

# ensure_broker: set BROKER_BIN to the broker of local runs: $BROKER_BIN if
# it is already executable, else the cached build, else build it into the
# cache (once per version and set of patches; concurrent runs wait on a
# lock). The build downloads the crates in BROKER_CRATES from crates.io,
# checks their sha256, applies third_party/nisshi/*.patch and compiles with
# the SQLite engine only (--no-default-features --features libsql), keeping
# its target directory so that a changed patch rebuilds only what it
# touches. nisshi 0.7 and later need rustc $BROKER_RUSTC or newer: the
# default toolchain builds it when it is new enough, else the nightly one
# (`cargo +nightly`); with neither, a clear error says what to install.
# $CACHE/broker/nisshi links to the current build.
ensure_broker() {
  if [[ -n "${BROKER_BIN:-}" && -x "${BROKER_BIN}" ]]; then
    export BROKER_BIN
    return 0
  fi
  if [[ -n "${BROKER_BIN:-}" ]]; then
    warn "BROKER_BIN=$BROKER_BIN is not executable; using the cached $BROKER_NAME"
  fi
  local key
  key="$(
    {
      printf '%s\n' "$BROKER_FEATURES" "${BROKER_CRATES[@]}"
      cat "$BROKER_PATCHES"/*.patch
    } | sha256sum | cut -c1-12
  )"
  local root="$CACHE/broker/$BROKER_NAME-$BROKER_VERSION-$key"
  BROKER_BIN="$root/bin/$BROKER_NAME"
  if [[ ! -x "$BROKER_BIN" ]]; then
    _build_broker "$root" "$key"
  fi
  ln -sfn "$BROKER_BIN" "$CACHE/broker/$BROKER_NAME"
  export BROKER_BIN
}

# _build_broker ROOT KEY: build the patched broker into ROOT/bin (see
# ensure_broker).
_build_broker() {
  local root="$1" key="$2" need_major need_minor toolchain=""
  IFS=. read -r need_major need_minor <<<"$BROKER_RUSTC"
  if ! _rustc_at_least "" "$need_major" "$need_minor"; then
    _rustc_at_least nightly "$need_major" "$need_minor" ||
      die "$BROKER_NAME $BROKER_VERSION needs rustc $BROKER_RUSTC or newer: the default toolchain is $(rustc --version 2>/dev/null | awk '{print $2}') and no nightly toolchain that new is installed. Install one (rustup toolchain install nightly --profile minimal), or point BROKER_BIN at a $BROKER_NAME binary"
    toolchain=nightly
  fi
  mkdir -p "$CACHE/broker"
  local lock="$CACHE/broker/build.lock" logfile="$CACHE/broker/build.log"
  (
    if ! flock -n 9; then
      log "another process is building $BROKER_NAME (lock $lock); waiting for it"
      flock 9
    fi
    if [[ -x "$root/bin/$BROKER_NAME" ]]; then
      exit 0
    fi
    set -euo pipefail
    local src="$CACHE/broker/src-$key" spec name version sha file patched=()
    rm -rf "$CACHE/broker"/src-*
    mkdir -p "$src"
    for spec in "${BROKER_CRATES[@]}"; do
      read -r name version sha <<<"$spec"
      file="$(fetch_crate "$name" "$version" "$sha" "$CACHE/broker/crates")"
      tar -xzf "$file" -C "$src"
      [[ "$name" == "$BROKER_NAME" ]] || patched+=("$name = { path = \"../$name-$version\" }")
    done
    local patch
    for patch in "$BROKER_PATCHES"/*.patch; do
      (cd "$src" && git apply -p1 "$patch") ||
        die "$patch does not apply to the $BROKER_NAME $BROKER_VERSION crates"
    done
    printf '\n[patch.crates-io]\n' >>"$src/$BROKER_NAME-$BROKER_VERSION/Cargo.toml"
    printf '%s\n' "${patched[@]}" >>"$src/$BROKER_NAME-$BROKER_VERSION/Cargo.toml"
    log "building $BROKER_NAME $BROKER_VERSION with $(ls "$BROKER_PATCHES"/*.patch | wc -l) patch(es) into $root with cargo ${toolchain:++$toolchain}"
    log "this compiles from source and takes ~12 minutes on 2 cores, once (a changed patch ~3); later runs reuse the cached binary"
    # Its own target dir, not the workspace's: a patch change rebuilds only
    # the crates it touches.
    CARGO_TARGET_DIR="$CACHE/broker/target" cargo ${toolchain:++$toolchain} build --release \
      --manifest-path "$src/$BROKER_NAME-$BROKER_VERSION/Cargo.toml" \
      --no-default-features --features "$BROKER_FEATURES" --bin "$BROKER_NAME" 2>&1 | tee "$logfile" >&2
    install -D -m 0755 "$CACHE/broker/target/release/$BROKER_NAME" "$root/bin/$BROKER_NAME"
  ) 9>"$lock" || die "building $BROKER_NAME failed (log: $logfile)"
  [[ -x "$root/bin/$BROKER_NAME" ]] || die "$BROKER_NAME build finished but $root/bin/$BROKER_NAME is missing (log: $logfile)"
}

# start_broker PORT STORAGE_URL WORKDIR LOGFILE: start the broker on
# 127.0.0.1:PORT in the background (STORAGE_URL e.g.
# sqlite://broker.db, relative to WORKDIR) and wait until it listens.
start_broker() {
  local port="$1" storage="$2" workdir="$3" logfile="$4"
  ensure_broker
  require_free_port "$port" "the Kafka broker ($BROKER_NAME)"
  # The broker reads settings from variables such as STORAGE_ENGINE and
  # SCHEMA_REGISTRY too: only the flags given here count.
  start_bg "$BROKER_NAME:$port" "$logfile" "$workdir" \
    env -u SCHEMA_REGISTRY -u STORAGE_ENGINE -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
    "$BROKER_BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "$storage"
  local pid="$LAST_PID"
  if ! wait_for_port 127.0.0.1 "$port" 60 "$pid"; then
    tail_log "$logfile"
    die "$BROKER_NAME did not start on port $port"
  fi
  log "$BROKER_NAME listening on 127.0.0.1:$port (storage $storage)"
}

# ---------------------------------------------------------------- rust

# ensure_build_deps: what the workspace links besides Rust: OpenSSL's
# headers (librdkafka's TLS and SASL/SCRAM) found through pkg-config.
ensure_build_deps() {
  if pkg-config --exists openssl 2>/dev/null; then
    return 0
  fi
  log "installing libssl-dev and pkg-config with apt-get (librdkafka's TLS and SCRAM)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config; } >&2 ||
    die "could not install libssl-dev and pkg-config (needed to build librdkafka with TLS)"
}

# ensure_rust_tools: rustfmt, clippy and cargo-nextest are available, and
# the build dependencies (ensure_build_deps).
ensure_rust_tools() {
  command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH; install Rust (https://rustup.rs)"
  ensure_build_deps
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    log "adding rustfmt and clippy components"
    rustup component add rustfmt clippy >&2
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    local root="$CACHE/cargo-nextest"
    export PATH="$root/bin:$PATH"
    if ! cargo nextest --version >/dev/null 2>&1; then
      mkdir -p "$CACHE"
      (
        flock 9
        if ! cargo nextest --version >/dev/null 2>&1; then
          log "installing cargo-nextest into $root (a few minutes, once)"
          env -u CARGO_TARGET_DIR cargo install cargo-nextest --locked --root "$root" >&2
        fi
      ) 9>"$CACHE/cargo-nextest.lock" || die "installing cargo-nextest failed"
    fi
  fi
}

# build_bins: build every workspace binary (release profile when
# ORDERFLOW_PROFILE=release) and set BIN_DIR to the directory holding them.
build_bins() {
  local profile="${ORDERFLOW_PROFILE:-dev}" dir args=()
  ensure_build_deps
  case "$profile" in
    dev | debug | "") dir=debug ;;
    release) dir=release args=(--release) ;;
    *) dir="$profile" args=(--profile "$profile") ;;
  esac
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  [[ "$target" == /* ]] || target="$ROOT/$target"
  log "building workspace binaries (profile ${profile:-dev})"
  (cd "$ROOT" && cargo build --locked --workspace --bins "${args[@]+"${args[@]}"}") ||
    die "cargo build failed"
  BIN_DIR="$target/$dir"
  export BIN_DIR
}

# remove_stale_stack_postgres: delete the data directories of the
# PostgreSQL servers e2e stacks ran for themselves (StackOptions::own_postgres,
# /tmp/orderflow-<stack>-pg) whose server is no longer running.
remove_stale_stack_postgres() {
  local d pid
  for d in /tmp/orderflow-e2e_*-pg; do
    [[ -d "$d" ]] || continue
    pid="$(head -1 "$d/postmaster.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      continue
    fi
    rm -rf "$d"
  done
}

# ---------------------------------------------------------------- registry

# ensure_registry_users FILE: the registry's users file (crates/schema-registry
# src/auth.rs), created once with random passwords and kept: orderflow-admin
# (admin: registers schemas, changes levels) for orderctl and the tests,
# orderflow-service (read) for the services.
ensure_registry_users() {
  local file="$1"
  [[ -s "$file" ]] && return 0
  mkdir -p "$(dirname "$file")"
  (
    umask 077
    {
      echo "# Schema registry users (name: password,role), made by scripts/lib.sh."
      echo "orderflow-admin: $(od -An -tx1 -N16 /dev/urandom | tr -d ' \n'),admin"
      echo "orderflow-service: $(od -An -tx1 -N16 /dev/urandom | tr -d ' \n'),read"
    } >"$file.tmp"
    mv "$file.tmp" "$file"
  )
}

# registry_url_as FILE USER PORT: http://USER:PASSWORD@127.0.0.1:PORT, with
# the password from the users FILE.
registry_url_as() {
  local file="$1" user="$2" port="$3" password
  password="$(awk -v u="$user" -F'[:,]' '$1 == u { gsub(/ /, "", $2); print $2 }' "$file")"
  [[ -n "$password" ]] || die "no password for $user in $file"
  echo "http://$user:$password@127.0.0.1:$port"
}

# redact_url TEXT: TEXT with the password of every URL's credentials in it
# replaced by ***.
redact_url() {
  sed -E 's#(://[^:/@ ]+):[^@ ]*@#\1:***@#g' <<<"$1"
}

# start_registry_with_users PORT DB_NAME LOGFILE USERS_FILE: start_registry
# with the users of USERS_FILE (made by ensure_registry_users if missing), and
# export SCHEMA_REGISTRY_URL as its admin (orderctl, the tests) and
# ORDERFLOW_SERVICES_REGISTRY_URL as its read-only user (the services).
start_registry_with_users() {
  local port="$1" db="$2" logfile="$3" users="$4"
  ensure_registry_users "$users"
  start_registry "$port" "$db" "$logfile" "$users"
  SCHEMA_REGISTRY_URL="$(registry_url_as "$users" orderflow-admin "$port")"
  ORDERFLOW_SERVICES_REGISTRY_URL="$(registry_url_as "$users" orderflow-service "$port")"
  export SCHEMA_REGISTRY_URL ORDERFLOW_SERVICES_REGISTRY_URL
}

# start_registry PORT DB_NAME LOGFILE [USERS_FILE]: run $BIN_DIR/schema-registry
# on 127.0.0.1:PORT backed by database DB_NAME, with HTTP Basic users from
# USERS_FILE when given; wait until it is ready.
start_registry() {
  local port="$1" db="$2" logfile="$3" users="${4:-}"
  [[ -x "${BIN_DIR:-}/schema-registry" ]] || die "schema-registry binary not found in ${BIN_DIR:-BIN_DIR (run build_bins first)}"
  require_free_port "$port" "the schema registry"
  start_bg "schema-registry:$port" "$logfile" "$ROOT" \
    env SCHEMA_REGISTRY_DATABASE_URL="$(pg_url_for_db "$db")" \
    SCHEMA_REGISTRY_LISTEN_ADDR="127.0.0.1:$port" \
    ${users:+SCHEMA_REGISTRY_AUTH_FILE="$users"} \
    RUST_LOG="${RUST_LOG:-info}" \
    "$BIN_DIR/schema-registry"
  local pid="$LAST_PID"
  if ! wait_for_http "http://127.0.0.1:$port/health/ready" 30 "$pid"; then
    tail_log "$logfile"
    die "the schema registry did not start on port $port"
  fi
  log "schema registry listening on http://127.0.0.1:$port${users:+ (users in $users)}"
}

# provision_kafka: create the topics and register the schemas with orderctl
# (uses KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL from the environment).
provision_kafka() {
  [[ -x "${BIN_DIR:-}/orderctl" ]] || die "orderctl binary not found in ${BIN_DIR:-BIN_DIR (run build_bins first)}"
  log "creating topics on $KAFKA_BOOTSTRAP_SERVERS"
  (cd "$ROOT" && "$BIN_DIR/orderctl" topics create) || die "orderctl topics create failed"
  log "registering schemas in $(redact_url "$SCHEMA_REGISTRY_URL")"
  (cd "$ROOT" && "$BIN_DIR/orderctl" schemas register) || die "orderctl schemas register failed"
}

# start_test_infra KAFKA_PORT REGISTRY_PORT REGISTRY_DB LOG_DIR: a throwaway
# broker (a new sqlite:// file in LOG_DIR/broker) and registry (fresh database) for tests and benchmarks,
# unless KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL already point at
# external ones. Exports both plus ORDERFLOW_TEST_DATABASE_URL, and creates
# the topics and schemas. Needs ensure_postgres and build_bins first.
start_test_infra() {
  local kafka_port="$1" registry_port="$2" registry_db="$3" log_dir="$4"
  if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    log "using the external Kafka at $KAFKA_BOOTSTRAP_SERVERS"
  else
    # A fresh SQLite file each run: the broker is built without the memory
    # engine (see ensure_broker), and a new file holds no offsets or records
    # of an earlier run.
    rm -rf "$log_dir/broker"
    start_broker "$kafka_port" "sqlite://broker.db" "$log_dir/broker" "$log_dir/broker.log"
    export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kafka_port"
  fi
  if [[ -n "${SCHEMA_REGISTRY_URL:-}" ]]; then
    log "using the external schema registry at $(redact_url "$SCHEMA_REGISTRY_URL")"
  else
    recreate_database "$registry_db"
    # With authentication, as scripts/up runs it: the tests and orderctl use
    # the admin user (credentials in the URL), the services the read-only
    # one (ORDERFLOW_SERVICES_REGISTRY_URL).
    rm -f "$log_dir/registry-users.properties"
    start_registry_with_users "$registry_port" "$registry_db" "$log_dir/schema-registry.log" "$log_dir/registry-users.properties"
  fi
  export ORDERFLOW_TEST_DATABASE_URL="$ORDERFLOW_PG_URL"
  provision_kafka
}

# ---------------------------------------------------------------- python

ORDERFLOW_PY_REQUIREMENTS=(confluent-kafka fastavro requests attrs cachetools authlib httpx kubernetes-validate aiosmtpd schemathesis)

# ensure_python_tools: a venv at $CACHE/venv with the Python clients the
# interoperability checks use; pip runs only when the requirement list
# changed. Exports ORDERFLOW_PYTHON.
ensure_python_tools() {
  local venv="$CACHE/venv" stamp hash py
  stamp="$venv/.orderflow-requirements"
  hash="$(printf '%s\n' "${ORDERFLOW_PY_REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
    export ORDERFLOW_PYTHON="$venv/bin/python"
    return 0
  fi
  mkdir -p "$CACHE"
  (
    flock 9
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
      exit 0
    fi
    # (set -e does not apply in here: this subshell is the left side of ||.)
    py="${ORDERFLOW_PYTHON_BOOTSTRAP:-python3}"
    if [[ ! -x "$venv/bin/python" ]]; then
      log "creating python venv $venv"
      if ! "$py" -m venv "$venv" >&2; then
        log "$py -m venv failed; installing python3-venv"
        rm -rf "$venv"
        apt-get update -qq >&2 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 &&
          python3 -m venv "$venv" >&2 || exit 1
      fi
    fi
    log "installing python packages: ${ORDERFLOW_PY_REQUIREMENTS[*]}"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2 &&
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "${ORDERFLOW_PY_REQUIREMENTS[@]}" >&2 &&
      printf '%s\n' "$hash" >"$stamp"
  ) 9>"$CACHE/venv.lock" || die "setting up the python venv failed"
  export ORDERFLOW_PYTHON="$venv/bin/python"
}

# ---------------------------------------------------------------- smtp

# start_smtp_sink PORT MAILDIR LOGFILE [IMPL]: a real SMTP server on
# 127.0.0.1:PORT that stores every message it accepts in the Maildir MAILDIR
# (one file per message under MAILDIR/new). IMPL is `aiosmtpd` (the default;
# from the python venv: needs ensure_python_tools first) or `orderctl`
# (`orderctl smtp-sink` from BIN_DIR, a few times cheaper per message).
start_smtp_sink() {
  local port="$1" maildir="$2" logfile="$3" impl="${4:-aiosmtpd}"
  require_free_port "$port" "the SMTP sink"
  mkdir -p "$maildir/new" "$maildir/cur" "$maildir/tmp"
  case "$impl" in
    aiosmtpd)
      [[ -x "${ORDERFLOW_PYTHON:-}" ]] || die "ORDERFLOW_PYTHON is not set (run ensure_python_tools first)"
      start_bg "smtp-sink:$port" "$logfile" "$ROOT" \
        "$ORDERFLOW_PYTHON" -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$maildir"
      ;;
    orderctl)
      [[ -x "${BIN_DIR:-}/orderctl" ]] || die "BIN_DIR/orderctl not found (run build_bins first)"
      start_bg "smtp-sink:$port" "$logfile" "$ROOT" \
        "$BIN_DIR/orderctl" smtp-sink --listen "127.0.0.1:$port" --maildir "$maildir"
      ;;
    *) die "unknown SMTP sink '$impl' (aiosmtpd or orderctl)" ;;
  esac
  local pid="$LAST_PID"
  if ! wait_for_port 127.0.0.1 "$port" 30 "$pid"; then
    tail_log "$logfile"
    die "the SMTP sink did not start on port $port"
  fi
  log "SMTP sink ($impl) listening on 127.0.0.1:$port (messages in $maildir/new)"
}

# drop_databases_like PATTERN: drop every database whose name matches the SQL
# LIKE pattern (leftovers of earlier test runs).
drop_databases_like() {
  local pattern="$1" db
  while IFS= read -r db; do
    [[ -n "$db" ]] || continue
    _pg_check_name "$db"
    _psql -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || warn "could not drop database $db"
  done < <(_psql -Atc "SELECT datname FROM pg_database WHERE datname LIKE '$pattern'")
}

# ---------------------------------------------------------------- browser

# ensure_browser: Debian's Chromium and its ChromeDriver, for the browser
# test of the event-flow page (tests/flow_page.rs). Installed with apt-get
# when either is missing; exports CHROMIUM_BIN and CHROMEDRIVER_BIN.
ensure_browser() {
  CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
  CHROMEDRIVER_BIN="${CHROMEDRIVER_BIN:-/usr/bin/chromedriver}"
  if [[ ! -x "$CHROMIUM_BIN" || ! -x "$CHROMEDRIVER_BIN" ]]; then
    log "installing chromium and chromium-driver (Debian packages) with apt-get, once"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >&2 ||
      die "could not install chromium and chromium-driver with apt-get (the event-flow page's browser test needs them)"
  fi
  [[ -x "$CHROMIUM_BIN" && -x "$CHROMEDRIVER_BIN" ]] ||
    die "chromium ($CHROMIUM_BIN) or chromedriver ($CHROMEDRIVER_BIN) is still missing"
  export CHROMIUM_BIN CHROMEDRIVER_BIN
}

# ---------------------------------------------------------------- deploy

# ensure_deploy_tools: the tools scripts/check-deploy needs. Exports
# KUBECTL and KUSTOMIZE_VERSION.
#   - docker-compose: Debian's package (1.29), installed with apt-get if
#     it is missing. It validates docker-compose.yml without a Docker engine.
#   - kubectl with a built-in kustomize v5 or newer (`kubectl kustomize`).
#     The machine image ships one (kubectl 1.32, kustomize v5.5). Debian's
#     kubernetes-client is no fallback: it is kubectl 1.20, whose kustomize
#     (v2.0.3) cannot read deploy/ (no `patches`, `labels`, `replicas` or
#     directories in `resources`). So a missing or older kubectl is an error
#     that says what to install. KUBECTL=/path/to/kubectl picks another one.
ensure_deploy_tools() {
  if ! command -v docker-compose >/dev/null 2>&1; then
    log "installing docker-compose (Debian package) with apt-get"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >&2 ||
      die "could not install docker-compose with apt-get"
  fi
  KUBECTL="${KUBECTL:-kubectl}"
  command -v "$KUBECTL" >/dev/null 2>&1 ||
    die "kubectl not found (KUBECTL=$KUBECTL). deploy/ needs kubectl >= 1.27 (built-in kustomize v5); Debian's kubernetes-client (1.20) is too old"
  KUSTOMIZE_VERSION="$("$KUBECTL" version --client -o json 2>/dev/null |
    sed -n 's/.*"kustomizeVersion": *"\([^"]*\)".*/\1/p')"
  local major="${KUSTOMIZE_VERSION#v}"
  major="${major%%.*}"
  if [[ ! "$major" =~ ^[0-9]+$ ]] || ((major < 5)); then
    die "$KUBECTL has kustomize '${KUSTOMIZE_VERSION:-none}'; deploy/ needs kustomize v5 (kubectl >= 1.27). Put a newer kubectl on PATH or set KUBECTL"
  fi
  export KUBECTL KUSTOMIZE_VERSION
}
