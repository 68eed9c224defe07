#define _GNU_SOURCE
#include "cartshard/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cartshard/log.h"
#include "cartshard/problem.h"

/* An accepted connection: the libuv handle that h2o's socket wraps, on its server's list until
 * libuv has closed it, so that the server can close what is left at shutdown. */
typedef struct http_conn {
    uv_tcp_t tcp;        /* first: the close callback gets this handle */
    h2o_linklist_t link; /* in cart_http_server.conns */
    h2o_socket_t *sock;  /* h2o's socket over it (for cart_http_server_describe_open) */
} http_conn;

static void on_conn_closed(uv_handle_t *h)
{
    http_conn *c = (http_conn *)h;

    if (h2o_linklist_is_linked(&c->link))
        h2o_linklist_unlink(&c->link);
    free(c);
}

static void on_accept(uv_stream_t *listener, int status)
{
    cart_http_server *srv = listener->data;
    http_conn *c;
    h2o_socket_t *sock;

    if (status != 0)
        return;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    uv_tcp_init(listener->loop, &c->tcp);
    h2o_linklist_insert(&srv->conns, &c->link);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    c->sock = sock;
    h2o_accept(&srv->accept, sock);
}

/* --- h2o's own error answers, as problem documents --- */

/* A body over the limit, a broken Content-Length, an unknown Transfer-Encoding or Expect: h2o
 * answers these itself, before any handler runs, on the host's fallback path. This filter, on
 * that path only, turns its text/plain answers into application/problem+json ones like every
 * other error the server sends. */
typedef struct problem_filter {
    h2o_filter_t super;
    size_t max_body;          /* for the 413's detail */
    cart_http_server *server; /* whose own_fn decorates the answer */
} problem_filter;

typedef struct problem_ostream {
    h2o_ostream_t super;
    h2o_iovec_t doc; /* the document, sent in place of h2o's text; emptied once sent */
} problem_ostream;

static void problem_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    problem_ostream *p = (problem_ostream *)self;
    h2o_iovec_t doc = p->doc;

    (void)bufs;
    (void)bufcnt;
    p->doc = h2o_iovec_init(NULL, 0);
    h2o_ostream_send_next(self, req, &doc, doc.len ? 1 : 0, state);
}

static void problem_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    char doc[320], detail[96];
    const char *slug = "malformed-request";
    problem_filter *f = (problem_filter *)self;
    problem_ostream *p;
    int n;

    if (req->res.status >= 400) {
        if (f->server->own_fn)
            f->server->own_fn(f->server->own_arg, req);
        if (req->res.status == 413) {
            slug = "payload-too-large";
            snprintf(detail, sizeof detail, "the body is over %zu bytes", f->max_body);
        } else {
            /* h2o's body says what it refused ("broken content-length header", "unknown
             * expectation"...); the reason phrase is what is left of it. */
            snprintf(detail, sizeof detail, "%s", req->res.reason ? req->res.reason : "bad request");
        }
        n = cart_problem_render(doc, sizeof doc, req->res.status, slug, detail);
        if (n > 0) {
            p = (problem_ostream *)h2o_add_ostream(req, sizeof *p, slot);
            p->super.do_send = problem_send;
            p->doc = h2o_strdup(&req->pool, doc, (size_t)n);
            h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT(CART_PROBLEM_MEDIA_TYPE),
                           1);
            req->res.content_length = (size_t)n;
            slot = &p->super.next;
        }
    }
    h2o_setup_next_ostream(req, slot);
}

/* A listening socket made by hand, so SO_REUSEPORT can be set before bind. */
static int open_socket(const char *host, int port, bool reuseport, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int fd = -1, on = 1;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        sslen = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        sslen = sizeof(struct sockaddr_in6);
    } else {
        snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address", host);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
        bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The last OpenSSL error of this thread, as text, after `what`. */
static void tls_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "unknown error";

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, reason);
}

SSL_CTX *cart_http_tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char what[600];

    ERR_clear_error();
    if (ctx == NULL) {
        tls_error(err, errlen, "TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(what, sizeof what, "GATEWAY_TLS_CERT: cannot use \"%s\" as a PEM certificate chain", cert_file);
        goto fail;
    }
    /* OpenSSL checks the key against the certificate as it loads it. */
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
        snprintf(what, sizeof what, "GATEWAY_TLS_KEY: cannot use \"%s\" as a PEM private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "GATEWAY_TLS_KEY: \"%s\" is not the key of the certificate in GATEWAY_TLS_CERT",
                 key_file);
        goto fail;
    }
    /* HTTP/2 first, then HTTP/1.1, chosen by ALPN in the handshake. */
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
    return ctx;

fail:
    tls_error(err, errlen, what);
    SSL_CTX_free(ctx);
    return NULL;
}

int cart_http_server_init(cart_http_server *srv, uv_loop_t *loop, const char *host, int port, bool reuseport,
                          SSL_CTX *tls, cart_http_fn fn, size_t handler_size, size_t max_body, char *err, size_t errlen)
{
    h2o_hostconf_t *hostconf;
    h2o_pathconf_t *pathconf;
    problem_filter *filter;
    int fd;

    memset(srv, 0, sizeof *srv);
    h2o_linklist_init_anchor(&srv->conns);
    h2o_config_init(&srv->config);
    srv->config.max_request_entity_size = max_body;
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT("cartshard"));
    hostconf = h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    filter = (problem_filter *)h2o_create_filter(&hostconf->fallback_path, sizeof *filter);
    filter->super.on_setup_ostream = problem_setup;
    filter->max_body = max_body;
    filter->server = srv;
    pathconf = h2o_config_register_path(hostconf, "/", 0);
    srv->handler = h2o_create_handler(pathconf, handler_size);
    srv->handler->on_req = fn;

    h2o_context_init(&srv->ctx, loop, &srv->config);
    srv->ctx_ready = true;
    srv->accept.ctx = &srv->ctx;
    srv->accept.hosts = srv->config.hosts;
    srv->accept.ssl_ctx = tls;

    fd = open_socket(host, port, reuseport, err, errlen);
    if (fd < 0)
        return -1;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = true;
    if (uv_tcp_open(&srv->listener, fd) != 0 || uv_listen((uv_stream_t *)&srv->listener, 1024, on_accept) != 0) {
        snprintf(err, errlen, "listen on %s:%d failed", host, port);
        return -1;
    }
    return 0;
}

void cart_http_server_on_own_answers(cart_http_server *srv, cart_http_own_fn fn, void *arg)
{
    srv->own_fn = fn;
    srv->own_arg = arg;
}

void cart_http_server_stop_accepting(cart_http_server *srv)
{
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = false;
    }
}

void cart_http_server_shutdown(cart_http_server *srv)
{
    cart_http_server_stop_accepting(srv);
    if (!srv->ctx_ready)
        return;
    /* HTTP/1 connections close after their current response once this is set. HTTP/2 ones are
     * sent a GOAWAY, which h2o sends again a second later from a timer that holds the context
     * for that second (and the drain with it) even when no HTTP/2 connection is left: asked for
     * only when there is one. */
    srv->ctx.shutdown_requested = 1;
    if (!h2o_linklist_is_empty(&srv->ctx.http2._conns))
        h2o_context_request_shutdown(&srv->ctx);
}

/* What still holds the context, for the log when it cannot be released: "" when nothing does. */
static const char *busy_with(cart_http_server *srv);

bool cart_http_server_idle(cart_http_server *srv)
{
    return busy_with(srv)[0] == '\0';
}

static const char *busy_with(cart_http_server *srv)
{
    h2o_context_t *c = &srv->ctx;
    /* A closing connection leaves its list before its timers go: h2o asserts on both at dispose. */
    h2o_timeout_t *timeouts[] = {&c->zero_timeout,
                                 &c->one_sec_timeout,
                                 &c->hundred_ms_timeout,
                                 &c->handshake_timeout,
                                 &c->http1.req_timeout,
                                 &c->http2.idle_timeout,
                                 &c->http2.graceful_shutdown_timeout,
                                 &c->proxy.io_timeout};

    static const char *const names[] = {
        "zero timeout",   "one-second timeout",  "100 ms timeout",          "handshake timeout",
        "HTTP/1 timeout", "HTTP/2 idle timeout", "HTTP/2 shutdown timeout", "proxy timeout"};

    if (!srv->ctx_ready)
        return "";
    /* Ours: until libuv has closed the socket (also covers a TLS handshake in progress). */
    if (!h2o_linklist_is_empty(&srv->conns))
        return "connections";
    if (!h2o_linklist_is_empty(&c->http1._conns))
        return "HTTP/1 connections";
    if (!h2o_linklist_is_empty(&c->http2._conns))
        return "HTTP/2 connections";
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++)
        if (!h2o_linklist_is_empty(&timeouts[i]->_entries))
            return names[i];
    return "";
}

/* Ends a connection from below h2o: its socket reads end of file (and writes fail), so h2o
 * closes the connection itself, on the loop, releasing its request. */
static void cut(int fd)
{
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static int cut_if_idle(h2o_req_t *req, void *unused)
{
    h2o_socket_t *sock;

    (void)unused;
    /* Between two requests h2o zeroes the connection's request (h2o_init_request), and it stamps
     * request_begin_at when the first bytes of the next one arrive: a zero stamp means nothing
     * is being read or answered on this connection. */
    if (req->timestamps.request_begin_at.tv_sec != 0 || req->timestamps.request_begin_at.tv_usec != 0)
        return 0;
    sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock) {
        int fd = h2o_socket_get_fd(sock), unread = 0;
        /* Bytes waiting in the socket are the next request, not yet read: it is answered (and
         * the connection closed after it, shutdown being requested), not cut off. */
        if (fd >= 0 && ioctl(fd, FIONREAD, &unread) == 0 && unread > 0)
            return 0;
        cut(fd);
    }
    return 0;
}

void cart_http_server_close_idle(cart_http_server *srv)
{
    if (srv->ctx_ready && srv->config.http1.callbacks.foreach_request)
        srv->config.http1.callbacks.foreach_request(&srv->ctx, cut_if_idle, NULL);
}

void cart_http_server_close_all(cart_http_server *srv)
{
    uv_os_fd_t fd;

    for (h2o_linklist_t *n = srv->conns.next; n != &srv->conns; n = n->next) {
        http_conn *c = H2O_STRUCT_FROM_MEMBER(http_conn, link, n);
        if (!uv_is_closing((uv_handle_t *)&c->tcp) && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            cut(fd);
    }
}

static void on_close_tick(uv_timer_t *timer)
{
    cart_http_server *srv = timer->data;

    if (cart_http_server_idle(srv) || uv_now(timer->loop) >= srv->close_deadline)
        uv_stop(timer->loop);
}

bool cart_http_server_close_wait(cart_http_server *srv, uint64_t timeout_ms)
{
    uv_loop_t *loop = srv->ctx.loop;
    uv_timer_t tick;

    cart_http_server_stop_accepting(srv);
    if (!srv->ctx_ready || cart_http_server_idle(srv))
        return true;
    cart_http_server_close_all(srv);
    uv_update_time(loop);
    srv->close_deadline = uv_now(loop) + timeout_ms;
    uv_timer_init(loop, &tick);
    tick.data = srv;
    uv_timer_start(&tick, on_close_tick, 0, 5);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* the timer's close */
    return cart_http_server_idle(srv);
}

/* Appends printf-style text at buf + *len, cutting it short at the end of the buffer. */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len + 1 >= cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = (size_t)n < cap - *len ? *len + (size_t)n : cap - 1;
}

/* What cart_http_server_describe_open collects from h2o's requests. */
typedef struct open_census {
    char *out;
    size_t len, cap;
    int requests;
} open_census;

static int census_request(h2o_req_t *req, void *arg)
{
    open_census *c = arg;

    /* Between two requests of a keep-alive connection the request is zeroed (see cut_if_idle). */
    if (req->timestamps.request_begin_at.tv_sec == 0 && req->timestamps.request_begin_at.tv_usec == 0)
        return 0;
    c->requests++;
    append(c->out, c->cap, &c->len, "%s%.*s %.*s (status %d)", c->requests > 1 ? ", " : "",
           (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base,
           (int)(req->path.len > 80 ? 80 : req->path.len), req->path.base, req->res.status);
    return 0;
}

void cart_http_server_describe_open(cart_http_server *srv, char *out, size_t outlen)
{
    char reqs[512] = "";
    open_census census = {reqs, 0, sizeof reqs, 0};
    int conns = 0, closing = 0, active = 0;
    char socks[256] = "";
    size_t slen = 0;

    for (h2o_linklist_t *n = srv->conns.next; n != &srv->conns; n = n->next) {
        http_conn *c = H2O_STRUCT_FROM_MEMBER(http_conn, link, n);
        conns++;
        if (uv_is_closing((uv_handle_t *)&c->tcp)) {
            closing++;
            continue;
        }
        if (uv_is_active((uv_handle_t *)&c->tcp))
            active++;
        /* The first few open sockets in h2o's terms: bytes through them, and what h2o waits for. */
        if (c->sock)
            append(socks, sizeof socks, &slen, "%s[%s read %zu B, wrote %zu B, %s%s]", slen ? ", " : "; ",
                   c->sock->ssl ? "TLS" : "plain", c->sock->bytes_read, c->sock->bytes_written,
                   c->sock->_cb.read ? "read callback" : "no read callback",
                   c->sock->_cb.write ? ", write pending" : "");
    }
    if (srv->ctx_ready) {
        if (srv->config.http1.callbacks.foreach_request)
            srv->config.http1.callbacks.foreach_request(&srv->ctx, census_request, &census);
        if (srv->config.http2.callbacks.foreach_request)
            srv->config.http2.callbacks.foreach_request(&srv->ctx, census_request, &census);
    }
    snprintf(out, outlen,
             "%d connection(s): %d closing, %d reading or writing, %d idle%s; %d request(s) in progress%s%s", conns,
             closing, active, conns - closing - active, socks, census.requests, census.requests ? ": " : "", reqs);
}

void cart_http_server_cleanup(cart_http_server *srv)
{
    cart_http_server_stop_accepting(srv);
    /* h2o cannot dispose of a context with connections still open (it asserts): then the
     * process is exiting anyway, and the memory goes with it (cart_http_server_close_wait first
     * makes that rare). */
    if (srv->ctx_ready && cart_http_server_idle(srv)) {
        h2o_context_dispose(&srv->ctx);
    } else if (srv->ctx_ready) {
        cart_log(CART_LOG_WARN, "http context left to the exit", CART_LS("busy_with", busy_with(srv)), NULL);
        srv->ctx_left = true;
    }
    srv->ctx_ready = false;
    h2o_config_dispose(&srv->config);
}

void cart_http_header(h2o_req_t *req, const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    char *n = h2o_mem_alloc_pool(&req->pool, nlen + 1);
    char *v = h2o_mem_alloc_pool(&req->pool, vlen + 1);

    /* HTTP/2 allows only lower-case field names (RFC 9113 8.2.1), and HTTP/1.1 does not mind. */
    for (size_t i = 0; i <= nlen; i++)
        n[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    memcpy(v, value, vlen + 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n, nlen, 0, NULL, v, vlen);
}

void cart_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = cart_http_reason(status);
    req->res.content_length = len;
    if (content_type)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_send_inline(req, body, len);
}

void cart_http_problem(h2o_req_t *req, int status, const char *slug, const char *detail)
{
    char buf[1024];
    int n = cart_problem_render(buf, sizeof buf, status, slug, detail);

    cart_http_send(req, status, CART_PROBLEM_MEDIA_TYPE, buf, n > 0 ? (size_t)n : 0);
}
