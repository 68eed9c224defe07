#!/bin/bash
# cartshard-healthcheck: the HEALTHCHECK of the cartshard images.
#
# usage: cartshard-healthcheck gateway|cart-store|cart-stats
#
# Asks the service in this container for GET /readyz on its own port (GATEWAY_PORT or
# CART_STORE_ADMIN_PORT, CART_STATS_PORT: the variables the service itself reads) and succeeds on a 200. It needs
# nothing but bash's /dev/tcp, and bash is in debian:bookworm-slim, so the images carry no curl
# (nor libcurl and its dependencies) only to be probed. A gateway that serves TLS
# (GATEWAY_TLS_CERT set) cannot be asked in plain HTTP: it passes when its port accepts a
# connection. A connect to loopback never waits; the answer is waited for at most 3 s (and the
# engine's own --timeout bounds the whole check anyway).
set -u

case ${1:-} in
gateway)
    port=${GATEWAY_PORT:-8080}
    tls=${GATEWAY_TLS_CERT:-}
    ;;
cart-store)
    port=${CART_STORE_ADMIN_PORT:-9101}
    tls=
    ;;
cart-stats)
    port=${CART_STATS_PORT:-9201}
    tls=
    ;;
*)
    echo "usage: cartshard-healthcheck gateway|cart-store|cart-stats" >&2
    exit 2
    ;;
esac

exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
if [[ -n $tls ]]; then
    exit 0
fi
# HTTP/1.0 with Connection: close: the server ends the answer by closing; only the status line
# is read.
printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 3 status <&3 || {
    echo "no answer from 127.0.0.1:$port" >&2
    exit 1
}
status=${status%$'\r'}
if [[ $status =~ ^HTTP/1\.[01]\ 200\  ]]; then
    exit 0
fi
echo "GET /readyz: $status" >&2
exit 1
