#!/bin/bash
# Entrypoint of the redis stand-in: `redis-server [args]` (or only flags) runs as the redis user
# in /data, with no configuration file, like the official image; anything else runs as it is.
set -euo pipefail

if [[ ${1:-} == -* || ${1:-} == *.conf ]]; then
    set -- redis-server "$@"
fi
if [[ ${1:-} == redis-server && $(id -u) -eq 0 ]]; then
    chown redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
