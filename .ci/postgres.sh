#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL server for tests/test_search_postgres.py.
#
#   url="$(bash .ci/postgres.sh start)"   # prints the database URL on stdout
#   bash .ci/postgres.sh stop
#
# `start` installs Debian's postgresql package when no server binaries are found
# (this needs root and the Debian archive), creates a new cluster in
# ${GAN_LIB_POSTGRES_DIR:-/tmp/gan_lib_postgres}, starts it on a free port of
# 127.0.0.1 only, and creates a user and a database for the tests. A cluster left
# in that folder by an earlier run is stopped and deleted first. The password is
# random for each start and appears only in the printed URL. Progress messages go
# to stderr, so stdout carries the URL alone.
set -euo pipefail

folder="${GAN_LIB_POSTGRES_DIR:-/tmp/gan_lib_postgres}"
database="gan_lib_test"
user="gan_lib"

log() { echo "postgres.sh: $*" >&2; }

find_bin_dir() {
    # The newest installed major version, e.g. /usr/lib/postgresql/15/bin.
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
    fi
}

# Runs a command as the postgres user when this script runs as root, because
# the server does not run as root. Otherwise it runs as the current user.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stop_server() {
    local bin_dir
    bin_dir="$(find_bin_dir)"
    if [[ -n "$bin_dir" && -f "$folder/data/postmaster.pid" ]]; then
        log "stopping the server in $folder/data"
        as_owner "$bin_dir/pg_ctl" -D "$folder/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$folder"
}

start_server() {
    local started=$SECONDS
    local bin_dir
    bin_dir="$(find_bin_dir)"
    if [[ -z "$bin_dir" ]]; then
        log "no PostgreSQL server binaries found; installing Debian's postgresql package"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
        bin_dir="$(find_bin_dir)"
        if [[ -z "$bin_dir" ]]; then
            log "error: postgresql is installed but /usr/lib/postgresql/*/bin/initdb is missing"
            exit 1
        fi
    fi

    stop_server
    mkdir -p "$folder"
    local password port
    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    # The port is free when checked. If another process takes it before the server
    # binds it, pg_ctl fails and the script exits non-zero.
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if [[ "$(id -u)" == 0 ]]; then
        chown -R postgres: "$folder"
    fi
    chmod 700 "$folder"

    log "creating a cluster in $folder/data with $bin_dir"
    # Local socket connections (in $folder, mode 700) are trusted so the script can
    # create the test user; TCP connections need the user's password.
    as_owner "$bin_dir/initdb" -D "$folder/data" --username=postgres --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >&2
    as_owner "$bin_dir/pg_ctl" -D "$folder/data" -l "$folder/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $folder" start >&2

    log "creating user $user and database $database"
    as_owner "$bin_dir/psql" -h "$folder" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -q >&2 <<SQL
CREATE USER $user PASSWORD '$password';
CREATE DATABASE $database OWNER $user;
SQL
    log "server ready on 127.0.0.1:$port after $((SECONDS - started)) s; stop it with: bash .ci/postgres.sh stop"
    echo "postgresql://$user:$password@127.0.0.1:$port/$database"
}

case "${1:-}" in
    start) start_server ;;
    stop) stop_server ;;
    *)
        echo "usage: bash .ci/postgres.sh start|stop" >&2
        exit 2
        ;;
esac
