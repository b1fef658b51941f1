#!/bin/sh
# Entrypoint of the PostgreSQL and Redis containers of the compose stack: their certificate and key from the certs
# volume copied to /run/tls/server.pem and server-key.pem owned by USER, then COMMAND run as USER. The certs job
# writes every key as its own uid (10001, mode 0600), and PostgreSQL refuses a key its user does not own.
#   server-entrypoint.sh USER NAME COMMAND...   (NAME: /certs/NAME.pem and /certs/NAME-key.pem)
set -eu
user=$1 name=$2
shift 2
for file in "/certs/$name.pem" "/certs/$name-key.pem"; do
    [ -r "$file" ] || { echo "server-entrypoint: no $file (did the certs job run with $name?)" >&2; exit 1; }
done
install -d -m 0700 -o "$user" -g "$user" /run/tls
install -m 0644 -o "$user" -g "$user" "/certs/$name.pem" /run/tls/server.pem
install -m 0600 -o "$user" -g "$user" "/certs/$name-key.pem" /run/tls/server-key.pem
# The user's own HOME too: libpq in a Citus node looks for a client certificate under $HOME/.postgresql, and
# root's home is not readable to it ("could not open certificate file /root/.postgresql/postgresql.crt").
HOME=$(getent passwd "$user" | cut -d: -f6)
export HOME
exec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
