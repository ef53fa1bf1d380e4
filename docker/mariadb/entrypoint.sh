#!/bin/bash
# Entrypoint of sluice/mariadb: initialises the datadir if it is empty (fresh
# volume), then runs mariadbd in the foreground (PID 1) with an --init-file that
# (re)applies the database, user and passwords from the environment on every
# start, before the server logs "ready for connections".
#   MYSQL_DATABASE (sluice)  MYSQL_USER (sluice)  MYSQL_PASSWORD (sluice)
#   MYSQL_ROOT_PASSWORD (root)  MYSQL_PORT (3306)  MYSQL_BIND_ADDRESS (0.0.0.0)
# The user gets all privileges on MYSQL_DATABASE plus REPLICATION SLAVE/CLIENT
# (binlog reading); root@'%' gets everything.
#   CMD mariadbd [ARGS...] (default)  run the server, extra ARGS passed on
#   CMD -ARG...                       same, with these server args
#   CMD anything else                 exec it (e.g. bash)
set -euo pipefail

if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- mariadbd "$@"
fi
case "$1" in
    mariadbd|mysqld) shift ;;
    *) exec "$@" ;;
esac

log() { echo "[mariadb-entrypoint] $*" >&2; }

datadir=/var/lib/mysql
db=${MYSQL_DATABASE:-sluice}
user=${MYSQL_USER:-sluice}
password=${MYSQL_PASSWORD:-sluice}
root_password=${MYSQL_ROOT_PASSWORD:-root}
port=${MYSQL_PORT:-3306}
bind=${MYSQL_BIND_ADDRESS:-0.0.0.0}

mkdir -p /run/mysqld "$datadir"
chown mysql:mysql /run/mysqld
[ "$(stat -c %U "$datadir")" = mysql ] || chown -R mysql:mysql "$datadir"

if [ ! -d "$datadir/mysql" ]; then
    log "initialising empty datadir $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=socket --cross-bootstrap >/dev/null
fi

# SQL string literal / identifier quoting.
sql_str() { local s=${1//\\/\\\\}; s=${s//\'/\\\'}; printf "'%s'" "$s"; }
sql_id() { printf '`%s`' "${1//\`/\`\`}"; }

init=/run/mysqld/sluice-init.sql
umask 077
{
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    # No anonymous accounts: they would shadow 'user'@'%' for local connections.
    echo "DELETE FROM mysql.global_priv WHERE User='';"
    echo "FLUSH PRIVILEGES;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD($(sql_str "$root_password"));"
    echo "CREATE USER IF NOT EXISTS 'root'@'%';"
    echo "ALTER USER 'root'@'%' IDENTIFIED BY $(sql_str "$root_password");"
    echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$db" ]; then
        echo "CREATE DATABASE IF NOT EXISTS $(sql_id "$db");"
    fi
    if [ -n "$user" ] && [ "$user" != root ]; then
        echo "CREATE USER IF NOT EXISTS $(sql_str "$user")@'%';"
        echo "ALTER USER $(sql_str "$user")@'%' IDENTIFIED BY $(sql_str "$password");"
        [ -n "$db" ] && echo "GRANT ALL PRIVILEGES ON $(sql_id "$db").* TO $(sql_str "$user")@'%';"
        echo "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO $(sql_str "$user")@'%';"
    fi
    echo "FLUSH PRIVILEGES;"
} >"$init"
chown mysql:mysql "$init"
umask 022

log "starting mariadbd on $bind:$port (database '$db', user '$user')"
exec mariadbd --user=mysql --datadir="$datadir" --port="$port" --bind-address="$bind" \
    --init-file="$init" "$@"
