#!/bin/bash
# Entrypoint of the postgres stand-in: on the first start (an empty $PGDATA) it creates the
# cluster with superuser $POSTGRES_USER (password $POSTGRES_PASSWORD, scram-sha-256 over TCP from
# anywhere, trust on the local socket) and database $POSTGRES_DB, then runs the command as the
# postgres user. Commands other than `postgres ...` run as they are.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

if [[ $(id -u) -eq 0 ]]; then
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    if [[ -z ${POSTGRES_PASSWORD:-} ]]; then
        echo "postgres-entrypoint: POSTGRES_PASSWORD is not set (the official image refuses too)" >&2
        exit 1
    fi
    echo "postgres-entrypoint: creating the cluster in $PGDATA"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    printf '%s\n' "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    printf '%s\n' "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # A private server on the socket only (no TCP), so that nobody sees the database half made.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" \
        -w -t 60 start >/dev/null
    if [[ $POSTGRES_DB != postgres ]]; then
        psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres \
            -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    echo "postgres-entrypoint: cluster ready (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

exec "$@"
