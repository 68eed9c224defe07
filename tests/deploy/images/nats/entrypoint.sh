#!/bin/sh
# Entrypoint of the nats stand-in: flags alone run nats-server with them (as the official alpine
# image's entrypoint does); any other command runs as it is.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- nats-server "$@"
fi
exec "$@"
