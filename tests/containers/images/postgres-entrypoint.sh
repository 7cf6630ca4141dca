#!/bin/sh
# CI's stand-in for the official postgres image's entrypoint (tests/containers/bases.py):
# the same variables (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB), the same data
# directory; a first start makes the cluster, the user and the database, then every
# start runs the server in the foreground, scram passwords over TCP.
set -eu
# The socket in /tmp: the image has no /run/postgresql (mmdebstrap empties /run), and
# PGHOST (set in the image) points pg_isready and createdb there.
export PGHOST=${PGHOST:-/tmp}
bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$data/PG_VERSION" ]; then
    password=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password"
    "$bin/initdb" --pgdata="$data" --username="$POSTGRES_USER" --pwfile="$password" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions --no-sync
    rm -f "$password"
    echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
    "$bin/pg_ctl" --pgdata="$data" --options="-c listen_addresses='' -c unix_socket_directories=$PGHOST" --wait --silent start
    if [ "${POSTGRES_DB:-$POSTGRES_USER}" != postgres ]; then
        "$bin/createdb" --username="$POSTGRES_USER" "${POSTGRES_DB:-$POSTGRES_USER}"
    fi
    "$bin/pg_ctl" --pgdata="$data" --mode=fast --wait --silent stop
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c unix_socket_directories="$PGHOST"
