/*
 * http.h: a small h2o (libuv build) server shell shared by the gateway and the cart-store's
 * admin port: listening (optionally with SO_REUSEPORT, one listener per loop thread), one
 * handler for every path, and helpers for plain and problem+json answers.
 */
#ifndef CARTSHARD_HTTP_H
#define CARTSHARD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <openssl/ssl.h>
#include <uv.h>

typedef int (*cart_http_fn)(h2o_handler_t *self, h2o_req_t *req);

/* Called on the loop thread with each answer h2o makes on its own, before it is sent, so that the
 * caller may add headers to it (a request id, CORS). */
typedef void (*cart_http_own_fn)(void *arg, h2o_req_t *req);

/* One server on one loop. Caller-owned: cart_http_server_init / cart_http_server_cleanup. */
typedef struct cart_http_server {
    h2o_globalconf_t config; /* h2o's configuration (one host, one path "/") */
    h2o_context_t ctx;       /* the loop's h2o context */
    h2o_accept_ctx_t accept; /* what new connections are handed to */
    uv_tcp_t listener;       /* the listening socket */
    h2o_handler_t *handler;  /* the handler; allocated by h2o with the size asked for */
    bool listening;          /* the listener is open */
    bool ctx_ready;          /* ctx was initialised */
    bool ctx_left;           /* cleanup could not release ctx (connections still open): it stays to the exit */
    h2o_linklist_t conns;    /* the accepted connections libuv has not closed yet */
    uint64_t close_deadline; /* cart_http_server_close_wait's limit, in the loop's time (ms) */
    cart_http_own_fn own_fn; /* see cart_http_server_on_own_answers; NULL: none */
    void *own_arg;           /* its argument */
} cart_http_server;

/*
 * A TLS server context from PEM files: the certificate chain (leaf first) and its private key,
 * TLS 1.2 or newer, offering HTTP/2 ("h2") and HTTP/1.1 by ALPN. One context serves every loop
 * thread; release it with SSL_CTX_free once the servers are cleaned up. Returns NULL with the
 * reason in `err`, naming GATEWAY_TLS_CERT or GATEWAY_TLS_KEY and OpenSSL's error.
 */
SSL_CTX *cart_http_tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen);

/*
 * Sets up `srv` on `loop`, listening on host:port (reuseport: SO_REUSEPORT, for one listener per
 * thread; tls: a context from cart_http_tls_new, or NULL for plain HTTP, where h2o still speaks
 * HTTP/2 to clients that start with its preface), every request going to `fn` with a handler of `handler_size` bytes
 * (>= sizeof h2o_handler_t; the extra space is the caller's, reachable from srv->handler). A body
 * over `max_body` bytes is answered 413 by h2o at once, without reading it (also after
 * "Expect: 100-continue"); that answer and h2o's other own errors (a broken Content-Length, an
 * unknown Transfer-Encoding or expectation) are problem+json documents like the handler's. Over
 * HTTP/2, h2o refuses such a body by resetting its stream (REFUSED_STREAM) instead.
 * Returns 0, or -1 with the reason in `err`; on -1 call cart_http_server_cleanup all the same.
 */

int cart_http_server_init(cart_http_server *srv, uv_loop_t *loop, const char *host, int port, bool reuseport,
                          SSL_CTX *tls, cart_http_fn fn, size_t handler_size, size_t max_body, char *err,
                          size_t errlen);

/* Has `fn(arg, req)` called on each answer h2o makes on its own (above), before it is sent. */
void cart_http_server_on_own_answers(cart_http_server *srv, cart_http_own_fn fn, void *arg);

/* Stops accepting new connections; requests in flight go on. */
void cart_http_server_stop_accepting(cart_http_server *srv);

/* Stops accepting and asks the open connections to close once their requests are answered (no
 * more keep-alive). */
void cart_http_server_shutdown(cart_http_server *srv);

/* True when no connection is open. */
bool cart_http_server_idle(cart_http_server *srv);

/* Closes the HTTP/1.1 connections that are waiting for their next request (keep-alive): with
 * cart_http_server_shutdown, a drain need not wait for their idle timeout. A connection with a
 * request being read or answered, or with bytes of one waiting in its socket, is left alone (it
 * closes after its answer once shutdown is requested); HTTP/2 connections close by themselves
 * after their GOAWAY. h2o closes them on the loop's next turns. A client can still send a request
 * on a connection as it is cut: call it once the clients that keep sending have had an answer
 * since the shutdown (which closed their connections). */
void cart_http_server_close_idle(cart_http_server *srv);

/* Ends every open connection, whatever it is doing: requests still being read are cut off and
 * answers not yet written are lost. For the end of a drain, when the answers have been sent or
 * will never be; h2o closes the connections on the loop's next turns. */
void cart_http_server_close_all(cart_http_server *srv);

/* Stops accepting, ends every connection (cart_http_server_close_all) and runs the server's loop
 * (its other handles too) until h2o has closed them all, at most `timeout_ms`. Call from the
 * loop's thread, outside the loop's callbacks. True when the server is then idle, so that
 * cart_http_server_cleanup can release everything. */
bool cart_http_server_close_wait(cart_http_server *srv, uint64_t timeout_ms);

/* What is still open, for a log line: the connections (closing, with I/O pending in libuv, or
 * neither) and the requests h2o is reading or answering, with their method, path and status. */
void cart_http_server_describe_open(cart_http_server *srv, char *out, size_t outlen);

/* Releases the context and configuration (the context only when no connection is open: h2o
 * cannot release it under live connections, so cart_http_server_close_wait goes first; otherwise
 * ctx_left is set, and the server's memory must stay allocated until the exit). Call
 * after the loop has no more requests, then close the loop's remaining handles and run it once
 * more: h2o closes its timers on the loop. */
void cart_http_server_cleanup(cart_http_server *srv);

/* Sends a complete answer; `body` is copied into the request's pool. */
void cart_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);

/* Sends an RFC 9457 problem+json answer (see cartshard/problem.h). */
void cart_http_problem(h2o_req_t *req, int status, const char *slug, const char *detail);

/* Adds a response header (name, lower-cased for HTTP/2, and value are copied into the request's
 * pool). */
void cart_http_header(h2o_req_t *req, const char *name, const char *value);

#endif
