/*
 * faultproxy: an HTTP/1.1 proxy on loopback that injects faults, for the
 * storage tests. It sits between a client (skyrun, aws-cli) and an S3 server
 * and, for a seeded-random share of the requests it sees, answers an HTTP
 * error itself (500 InternalError, 503 SlowDown, 403 SignatureDoesNotMatch),
 * cuts the connection half way through the request, or half way through the
 * response. It can also slow every transfer down (to interrupt one in flight),
 * and falsify the ETag a server returns (to prove that a client checks it).
 *
 * It parses just enough HTTP/1.1 to find where each request and response ends
 * (Content-Length, chunked, HEAD, 1xx/204/304, read-to-close) so that faults
 * hit individual requests on keep-alive connections, the way a flaky load
 * balancer would. One thread per client connection, one upstream connection
 * per client connection.
 *
 * Usage: faultproxy --upstream HOST:PORT [--error-rate PCT] [--status 500,503]
 *          [--cut-request-rate PCT] [--cut-response-rate PCT] [--match TEXT]
 *          [--cut-in head|body] [--cut-at half|random] [--cut-with close|reset]
 *          [--tls-cert PEM --tls-key PEM] [--delay-ms N] [--seed N] [--log FILE]
 *          [--max-seconds N] [--idle-timeout S] [--bad-etag-rate PCT]
 * It listens on 127.0.0.1 on a kernel-chosen port and prints that port on
 * stdout, one line. --match limits faults to requests whose request line
 * contains TEXT (e.g. "partNumber=" for multipart parts only); given several
 * times, to requests that contain any one of them. A request is
 * cut half way through its body (--cut-in body, the default) or through its
 * head (--cut-in head: the server never sees a whole request, which matters
 * for servers that keep the truncated body of an aborted PUT, as s3rver
 * does). --log writes one line per request: "SEQ METHOD TARGET FATE"
 * (with --cut-at random, cuts add a fifth field "at=P%").
 *
 * --bad-etag-rate PCT: the chosen requests reach the server untouched, but in
 * the answer the first hex digit of the ETag is changed — in the ETag header
 * and in every <ETag> element of the body (CompleteMultipartUpload returns
 * the object's ETag there) — so the server stored the right bytes and the
 * client is told a digest that does not match them (fate "bad-etag"). An
 * <ETag> element split across two reads of the body is left alone.
 *
 * Where and how a connection is cut:
 *  --cut-at half     (the default) half way through the body;
 *  --cut-at random   at a seeded-random point of the body, [0, 100%), so
 *                    repeated cuts land everywhere in a request or response;
 *  --cut-with close  (the default) close() both sockets: a FIN (the kernel
 *                    turns it into an RST if unread data is left);
 *  --cut-with reset  SO_LINGER 0 before close(): always an RST, the way a
 *                    crashing server or a load balancer drops a connection.
 *
 * HTTPS (--tls-cert/--tls-key): the proxy terminates TLS on the client side
 * with OpenSSL and talks plain HTTP to the upstream, so every fault above
 * also happens inside a TLS stream — a cut is the TCP connection under the
 * TLS session ending without close_notify (FIN or RST as chosen), exactly
 * what a TLS server that dies or resets looks like to a client. This keeps
 * one process, the same HTTP-aware fault placement (a cut lands inside the
 * chosen request's body, not at a random byte of a keep-alive stream), and
 * the suite's one plain s3rver, with no TLS front (stunnel, socat) to install.
 *
 * Bounded by construction: every socket has a send/receive timeout, the
 * process ends after --max-seconds (SIGALRM), on SIGTERM, and when its
 * parent dies (PR_SET_PDEATHSIG).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (64 * 1024)    /* request or response head, like common servers */
#define IO_CHUNK (64 * 1024)
#define LINE_MAX_LEN 1024       /* a chunk-size line */
#define MAX_CONNECTIONS 512
#define MAX_STATUSES 8
#define MAX_MATCHES 8

enum fate { FATE_PASS, FATE_ERROR, FATE_CUT_REQUEST, FATE_CUT_RESPONSE, FATE_BAD_ETAG };
static const char *const fate_names[] = { "pass", "error", "cut-request", "cut-response", "bad-etag" };

/* What the command line asked for; read-only once the proxy listens. */
static struct {
    struct sockaddr_in upstream;
    int error_rate, cut_request_rate, cut_response_rate, bad_etag_rate;
    int statuses[MAX_STATUSES];
    int nstatuses;
    const char *match[MAX_MATCHES];   /* --match, repeatable: any one of them */
    int nmatches;
    int cut_in_head;
    int cut_random;             /* --cut-at random */
    int cut_reset;              /* --cut-with reset */
    const char *tls_cert, *tls_key;
    int delay_ms;
    uint64_t seed;
    int max_seconds;
    int idle_timeout_s;
} opt = { .statuses = { 500, 503 }, .nstatuses = 2, .seed = 1, .max_seconds = 3600,
          .idle_timeout_s = 30 };

/* Shared by the connection threads: the RNG, the request counter and the log. */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t rng_state;
static unsigned long request_seq;
static FILE *log_file;
static int open_connections;
static SSL_CTX *tls_ctx;        /* --tls-cert: the client side speaks TLS */
/* Set while this connection's thread relays a "bad-etag" response body. */
static _Thread_local int falsify_body_etags;

/* A socket with a read buffer in front of it: heads are read in blocks and
 * whatever body bytes came along are served from the buffer first. */
typedef struct reader {
    int fd;
    SSL *ssl;                   /* the TLS session on fd (client side, --tls-cert), or NULL */
    int cut;                    /* a fault cut this connection: no close_notify, maybe an RST */
    char buf[IO_CHUNK];
    size_t start, end;
} reader;

/* What the proxy needs to know about one request or response head. */
typedef struct message {
    char head[HEAD_MAX + 1];
    size_t head_len;
    char method[16];
    char target[512];
    int status;                 /* responses */
    int has_length;
    uint64_t content_length;
    int chunked;
    int expect_continue;
    int connection_close;
    unsigned cut_permille;      /* --cut-at random: where in the body a cut lands */
} message;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("faultproxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* xorshift64*: small, and the same seed gives the same sequence of fates. */
static uint64_t rng_next_locked(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes everything to a connection: through its TLS session if it has one. */
static int conn_write(reader *c, const void *data, size_t n)
{
    if (!c->ssl)
        return write_all(c->fd, data, n);
    const char *p = data;
    while (n > 0) {
        int chunk = n > (size_t)IO_CHUNK ? IO_CHUNK : (int)n;
        int w = SSL_write(c->ssl, p, chunk);   /* blocking, no partial writes: all or error */
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more bytes into the buffer; returns bytes read, 0 at EOF, -1 on
 * error or timeout. */
static ssize_t reader_fill(reader *r)
{
    if (r->start == r->end)
        r->start = r->end = 0;
    if (r->end == sizeof r->buf) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->ssl) {
        int n = SSL_read(r->ssl, r->buf + r->end, (int)(sizeof r->buf - r->end));
        if (n > 0) {
            r->end += (size_t)n;
            return n;
        }
        return SSL_get_error(r->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
    for (;;) {
        ssize_t n = recv(r->fd, r->buf + r->end, sizeof r->buf - r->end, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            r->end += (size_t)n;
        return n;
    }
}

/* Reads one head (up to and including the blank line) into m->head.
 * Returns 1 with a head, 0 on a clean EOF before any byte, -1 otherwise. */
static int read_head(reader *r, message *m)
{
    m->head_len = 0;
    for (;;) {
        while (r->start < r->end) {
            if (m->head_len == HEAD_MAX)
                return -1;
            char c = r->buf[r->start++];
            m->head[m->head_len++] = c;
            if (m->head_len >= 4 && memcmp(m->head + m->head_len - 4, "\r\n\r\n", 4) == 0) {
                m->head[m->head_len] = '\0';
                return 1;
            }
        }
        ssize_t n = reader_fill(r);
        if (n <= 0)
            return (n == 0 && m->head_len == 0) ? 0 : -1;
    }
}

/* Finds header `name` in a head; copies its trimmed value. 1 if found. */
static int header_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line && line[2] != '\r') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = (size_t)(eol - v);
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 1;
        }
        line = eol;
    }
    return 0;
}

/* Fills the framing fields shared by requests and responses. */
static int parse_framing(message *m)
{
    char v[256];
    m->has_length = 0;
    m->content_length = 0;
    m->chunked = 0;
    m->connection_close = 0;
    if (header_value(m->head, "Transfer-Encoding", v, sizeof v))
        m->chunked = strcasestr(v, "chunked") != NULL;
    if (!m->chunked && header_value(m->head, "Content-Length", v, sizeof v)) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return -1;
        m->has_length = 1;
        m->content_length = n;
    }
    if (header_value(m->head, "Connection", v, sizeof v))
        m->connection_close = strcasestr(v, "close") != NULL;
    return 0;
}

static int parse_request(message *m)
{
    char v[64];
    if (sscanf(m->head, "%15s %511s HTTP/1.", m->method, m->target) != 2)
        return -1;
    m->expect_continue = header_value(m->head, "Expect", v, sizeof v) && strcasecmp(v, "100-continue") == 0;
    return parse_framing(m);
}

static int parse_response(message *m)
{
    if (sscanf(m->head, "HTTP/1.%*d %d", &m->status) != 1)
        return -1;
    return parse_framing(m);
}

/* Removes the Expect header: the proxy answers "100 Continue" itself, so the
 * client never waits and the upstream never sends an interim response. */
static void strip_expect(message *m)
{
    char *line = strstr(m->head, "\r\n");
    while (line && line[2] != '\r') {
        char *start = line + 2;
        char *eol = strstr(start, "\r\n");
        if (!eol)
            return;
        if (strncasecmp(start, "Expect:", 7) == 0) {
            memmove(start, eol + 2, m->head_len - (size_t)(eol + 2 - m->head) + 1);
            m->head_len -= (size_t)(eol + 2 - start);
            return;
        }
        line = eol;
    }
}

/* Changes one hex digit into another: the digest no longer matches. */
static char other_hex_digit(char c)
{
    return c == '0' ? '1' : '0';
}

/* Changes the first hex digit of an ETag value that starts at p (before end),
 * skipping quotes (plain or &quot;) and blanks. Returns 1 if one was changed. */
static int falsify_etag_value(char *p, const char *end)
{
    while (p < end) {
        if (*p == '"' || *p == ' ' || *p == '\t') {
            p++;
        } else if (end - p >= 6 && memcmp(p, "&quot;", 6) == 0) {
            p += 6;
        } else if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')) {
            *p = other_hex_digit(*p);
            return 1;
        } else {
            return 0;
        }
    }
    return 0;
}

/* Falsifies the value of the ETag header of a response head, in place. */
static void falsify_head_etag(message *m)
{
    char *line = strstr(m->head, "\r\n");
    while (line && line[2] != '\r') {
        char *start = line + 2;
        char *eol = strstr(start, "\r\n");
        if (!eol)
            return;
        if (strncasecmp(start, "ETag:", 5) == 0) {
            falsify_etag_value(start + 5, eol);
            return;
        }
        line = eol;
    }
}

/* Falsifies every <ETag> element's value found whole in a block of body. */
static void falsify_body_block(char *p, size_t n)
{
    const char *end = p + n;
    static const char tag[] = "<ETag>";
    size_t tlen = sizeof tag - 1;
    while ((size_t)(end - p) > tlen) {
        char *hit = memmem(p, (size_t)(end - p), tag, tlen);
        if (!hit)
            return;
        falsify_etag_value(hit + tlen, end);
        p = hit + tlen;
    }
}

/* Copies exactly n body bytes from src to dst (dst NULL: discard them).
 * Slowed by --delay-ms per block when asked. */
static int forward_bytes(reader *src, reader *dst, uint64_t n)
{
    while (n > 0) {
        if (src->start == src->end && reader_fill(src) <= 0)
            return -1;
        size_t avail = src->end - src->start;
        size_t take = avail < n ? avail : (size_t)n;
        if (dst && falsify_body_etags)
            falsify_body_block(src->buf + src->start, take);
        if (dst && conn_write(dst, src->buf + src->start, take) != 0)
            return -1;
        src->start += take;
        n -= take;
        if (opt.delay_ms > 0)
            sleep_ms(opt.delay_ms);
    }
    return 0;
}

/* Reads one CRLF-terminated line (bounded) and forwards it. */
static int forward_line(reader *src, reader *dst, char *line, size_t cap)
{
    size_t len = 0;
    for (;;) {
        while (src->start < src->end) {
            if (len + 1 >= cap)
                return -1;
            line[len++] = src->buf[src->start++];
            if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n') {
                line[len] = '\0';
                return dst ? conn_write(dst, line, len) : 0;
            }
        }
        if (reader_fill(src) <= 0)
            return -1;
    }
}

/* Forwards a chunked body: size lines, data, the last chunk and trailers. */
static int forward_chunked(reader *src, reader *dst)
{
    char line[LINE_MAX_LEN];
    for (;;) {
        if (forward_line(src, dst, line, sizeof line) != 0)
            return -1;
        char *end;
        unsigned long long size = strtoull(line, &end, 16);
        if (end == line)
            return -1;
        if (size == 0)
            break;
        if (forward_bytes(src, dst, size + 2) != 0)   /* data and its CRLF */
            return -1;
    }
    do {                                               /* trailers, then the blank line */
        if (forward_line(src, dst, line, sizeof line) != 0)
            return -1;
    } while (strcmp(line, "\r\n") != 0);
    return 0;
}

static int forward_until_eof(reader *src, reader *dst)
{
    for (;;) {
        if (src->start < src->end) {
            if (conn_write(dst, src->buf + src->start, src->end - src->start) != 0)
                return -1;
            src->start = src->end;
        }
        ssize_t n = reader_fill(src);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
    }
}

/* Forwards (or discards) the body of a request. */
static int forward_request_body(reader *src, reader *dst, const message *req)
{
    if (req->chunked)
        return forward_chunked(src, dst);
    return forward_bytes(src, dst, req->has_length ? req->content_length : 0);
}

static int response_has_body(const message *req, const message *resp)
{
    return strcmp(req->method, "HEAD") != 0 && resp->status >= 200 && resp->status != 204 &&
           resp->status != 304;
}

static void set_timeouts(int fd)
{
    struct timeval tv = { opt.idle_timeout_s, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Returns a usable upstream socket: the current one if the server has not
 * closed it while idle (keep-alive timeout), else a fresh connection. */
static int upstream_ready(reader *up)
{
    if (up->fd >= 0) {
        struct pollfd p = { up->fd, POLLIN, 0 };
        if (poll(&p, 1, 0) == 0)
            return 0;
        close(up->fd);
        up->fd = -1;
    }
    up->start = up->end = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    set_timeouts(fd);
    if (connect(fd, (const struct sockaddr *)&opt.upstream, sizeof opt.upstream) != 0) {
        close(fd);
        return -1;
    }
    up->fd = fd;
    return 0;
}

static enum fate choose_fate(message *req, unsigned long *seq)
{
    enum fate f = FATE_PASS;
    char at[32] = "";
    pthread_mutex_lock(&shared_lock);
    *seq = ++request_seq;
    char line[600];
    snprintf(line, sizeof line, "%s %s", req->method, req->target);
    int matched = opt.nmatches == 0;
    for (int i = 0; i < opt.nmatches && !matched; i++)
        matched = strstr(line, opt.match[i]) != NULL;
    if (matched) {
        int roll = (int)(rng_next_locked() % 100);
        if (roll < opt.error_rate)
            f = FATE_ERROR;
        else if (roll < opt.error_rate + opt.cut_request_rate)
            f = FATE_CUT_REQUEST;
        else if (roll < opt.error_rate + opt.cut_request_rate + opt.cut_response_rate)
            f = FATE_CUT_RESPONSE;
        else if (roll < opt.error_rate + opt.cut_request_rate + opt.cut_response_rate + opt.bad_etag_rate)
            f = FATE_BAD_ETAG;
    }
    req->cut_permille = 500;
    if (opt.cut_random && (f == FATE_CUT_REQUEST || f == FATE_CUT_RESPONSE)) {
        req->cut_permille = (unsigned)(rng_next_locked() % 1000);
        snprintf(at, sizeof at, " at=%u.%u%%", req->cut_permille / 10, req->cut_permille % 10);
    }
    if (log_file) {
        fprintf(log_file, "%lu %s %s %s%s\n", *seq, req->method, req->target, fate_names[f], at);
        fflush(log_file);
    }
    pthread_mutex_unlock(&shared_lock);
    return f;
}

static int pick_status(unsigned long seq)
{
    return opt.statuses[seq % (unsigned long)opt.nstatuses];
}

/* How many of a body's n bytes go through before a cut (--cut-at). */
static uint64_t cut_point(const message *req, uint64_t n)
{
    return n / 1000 * req->cut_permille + n % 1000 * req->cut_permille / 1000;
}

/* Marks a connection as cut; with --cut-with reset, its close() sends an RST. */
static void mark_cut(reader *c)
{
    c->cut = 1;
    if (opt.cut_reset && c->fd >= 0) {
        struct linger l = { 1, 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
}

/* Answers an S3-style error document, as a real S3 endpoint would. */
static int send_error_response(reader *c, const message *req, int status, unsigned long seq, int close_after)
{
    const char *code = "InternalError", *reason = "Internal Server Error";
    const char *text = "We encountered an internal error. Please try again.";
    if (status == 503) {
        code = "SlowDown";
        reason = "Service Unavailable";
        text = "Please reduce your request rate.";
    } else if (status == 403) {
        code = "SignatureDoesNotMatch";
        reason = "Forbidden";
        text = "The request signature we calculated does not match the signature you provided.";
    }
    char body[512], head[512];
    int blen = snprintf(body, sizeof body,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                        "<Message>%s</Message><RequestId>faultproxy-%lu</RequestId></Error>",
                        code, text, seq);
    int is_head = strcmp(req->method, "HEAD") == 0;
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
                        "x-amz-request-id: faultproxy-%lu\r\nConnection: %s\r\n\r\n",
                        status, reason, is_head ? 0 : blen, seq, close_after ? "close" : "keep-alive");
    if (conn_write(c, head, (size_t)hlen) != 0)
        return -1;
    return is_head ? 0 : conn_write(c, body, (size_t)blen);
}

/* Sends part of the request upstream (half, or --cut-at random), then the
 * caller drops both sides. */
static void cut_request(reader *client, reader *up, message *req)
{
    mark_cut(client);
    if (upstream_ready(up) != 0)
        return;
    mark_cut(up);
    uint64_t body = req->has_length ? req->content_length : 0;
    if (body == 0 || opt.cut_in_head) {
        write_all(up->fd, req->head, req->head_len / 2);
        return;
    }
    if (write_all(up->fd, req->head, req->head_len) != 0)
        return;
    if (req->expect_continue)
        conn_write(client, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    forward_bytes(client, up, cut_point(req, body));
}

/* Forwards the response to one request; with `cut`, only part of it (half,
 * or --cut-at random).
 * Returns 0 if the client connection can carry another request. */
static int relay_response(reader *client, reader *up, const message *req, int cut, int bad_etag)
{
    message *resp = malloc(sizeof *resp);
    int rc = -1;
    if (!resp)
        return -1;
    do {                                  /* skip interim 1xx responses */
        if (read_head(up, resp) != 1 || parse_response(resp) != 0)
            goto done;
    } while (resp->status >= 100 && resp->status < 200);
    int body = response_has_body(req, resp);
    if (cut) {
        mark_cut(client);
        mark_cut(up);
        if (!body || (resp->has_length && resp->content_length == 0)) {
            conn_write(client, resp->head, resp->head_len / 2);
        } else if (conn_write(client, resp->head, resp->head_len) == 0) {
            uint64_t part = resp->has_length ? cut_point(req, resp->content_length) : 1;
            forward_bytes(up, client, part);
        }
        goto done;
    }
    if (bad_etag)
        falsify_head_etag(resp);
    if (conn_write(client, resp->head, resp->head_len) != 0)
        goto done;
    falsify_body_etags = bad_etag;
    if (body) {
        if (resp->chunked) {
            if (forward_chunked(up, client) != 0)
                goto done;
        } else if (resp->has_length) {
            if (forward_bytes(up, client, resp->content_length) != 0)
                goto done;
        } else {
            forward_until_eof(up, client);   /* delimited by close: so is the client's */
            goto done;
        }
    }
    rc = (resp->connection_close || req->connection_close) ? -1 : 0;
done:
    falsify_body_etags = 0;
    free(resp);
    return rc;
}

/* One request: decide its fate, then act it out. Returns 0 if the client
 * connection stays open for the next request. */
static int handle_request(reader *client, reader *up, message *req)
{
    unsigned long seq;
    enum fate f = choose_fate(req, &seq);
    switch (f) {
    case FATE_ERROR:
        if (req->expect_continue) /* the body never comes: answer and close */
            return send_error_response(client, req, pick_status(seq), seq, 1), -1;
        if (forward_request_body(client, NULL, req) != 0 ||
            send_error_response(client, req, pick_status(seq), seq, req->connection_close) != 0)
            return -1;
        return req->connection_close ? -1 : 0;
    case FATE_CUT_REQUEST:
        cut_request(client, up, req);
        return -1;
    case FATE_PASS:
    case FATE_CUT_RESPONSE:
    case FATE_BAD_ETAG:
        break;
    }
    if (upstream_ready(up) != 0)
        return -1;
    strip_expect(req);
    if (write_all(up->fd, req->head, req->head_len) != 0)
        return -1;
    if (req->expect_continue && conn_write(client, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
        return -1;
    if (forward_request_body(client, up, req) != 0)
        return -1;
    return relay_response(client, up, req, f == FATE_CUT_RESPONSE, f == FATE_BAD_ETAG);
}

static void *serve_connection(void *arg)
{
    reader *client = malloc(sizeof *client), *up = malloc(sizeof *up);
    message *req = malloc(sizeof *req);
    int client_fd = (int)(intptr_t)arg;
    if (!client || !up || !req) {
        free(client);
        free(up);
        free(req);
        close(client_fd);
        goto count;
    }
    client->fd = client_fd;
    client->ssl = NULL;
    client->cut = 0;
    client->start = client->end = 0;
    up->fd = -1;
    up->ssl = NULL;
    up->cut = 0;
    up->start = up->end = 0;
    if (tls_ctx) {
        if (!(client->ssl = SSL_new(tls_ctx)) || SSL_set_fd(client->ssl, client_fd) != 1 ||
            SSL_accept(client->ssl) != 1)
            goto done;
    }
    for (;;) {
        if (read_head(client, req) != 1 || parse_request(req) != 0)
            break;
        if (handle_request(client, up, req) != 0)
            break;
    }
done:
    if (up->fd >= 0)
        close(up->fd);
    if (client->ssl) {
        /* A cut connection just ends (no close_notify); a finished one says goodbye. */
        if (!client->cut && SSL_is_init_finished(client->ssl))
            SSL_shutdown(client->ssl);
        SSL_free(client->ssl);
    }
    ERR_clear_error();
    close(client_fd);
    free(client);
    free(up);
    free(req);
count:
    pthread_mutex_lock(&shared_lock);
    open_connections--;
    pthread_mutex_unlock(&shared_lock);
    return NULL;
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s: expected an integer in [%d, %d], got '%s'", what, lo, hi, s);
    return (int)v;
}

static void parse_upstream(const char *s)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        die("--upstream: expected HOST:PORT, got '%s'", s);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    opt.upstream.sin_family = AF_INET;
    opt.upstream.sin_port = htons((uint16_t)parse_int(colon + 1, 1, 65535, "--upstream port"));
    if (inet_pton(AF_INET, host, &opt.upstream.sin_addr) != 1)
        die("--upstream: '%s' is not an IPv4 address", host);
}

static void parse_statuses(const char *s)
{
    char copy[128], *save = NULL;
    snprintf(copy, sizeof copy, "%s", s);
    opt.nstatuses = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (opt.nstatuses == MAX_STATUSES)
            die("--status: at most %d statuses", MAX_STATUSES);
        int st = parse_int(t, 400, 599, "--status");
        if (st != 500 && st != 503 && st != 403)
            die("--status: %d is not one of 500, 503, 403", st);
        opt.statuses[opt.nstatuses++] = st;
    }
    if (opt.nstatuses == 0)
        die("--status: empty list");
}

static void parse_args(int argc, char **argv)
{
    const char *log_path = NULL;
    int have_upstream = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s: missing value (see the usage at the top of faultproxy.c)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--upstream")) {
            parse_upstream(v);
            have_upstream = 1;
        } else if (!strcmp(a, "--error-rate")) {
            opt.error_rate = parse_int(v, 0, 100, a);
        } else if (!strcmp(a, "--cut-request-rate")) {
            opt.cut_request_rate = parse_int(v, 0, 100, a);
        } else if (!strcmp(a, "--cut-response-rate")) {
            opt.cut_response_rate = parse_int(v, 0, 100, a);
        } else if (!strcmp(a, "--bad-etag-rate")) {
            opt.bad_etag_rate = parse_int(v, 0, 100, a);
        } else if (!strcmp(a, "--status")) {
            parse_statuses(v);
        } else if (!strcmp(a, "--match")) {
            if (opt.nmatches == MAX_MATCHES)
                die("--match: at most %d of them", MAX_MATCHES);
            opt.match[opt.nmatches++] = v;
        } else if (!strcmp(a, "--cut-in")) {
            if (strcmp(v, "head") != 0 && strcmp(v, "body") != 0)
                die("--cut-in: expected head or body, got '%s'", v);
            opt.cut_in_head = strcmp(v, "head") == 0;
        } else if (!strcmp(a, "--cut-at")) {
            if (strcmp(v, "half") != 0 && strcmp(v, "random") != 0)
                die("--cut-at: expected half or random, got '%s'", v);
            opt.cut_random = strcmp(v, "random") == 0;
        } else if (!strcmp(a, "--cut-with")) {
            if (strcmp(v, "close") != 0 && strcmp(v, "reset") != 0)
                die("--cut-with: expected close or reset, got '%s'", v);
            opt.cut_reset = strcmp(v, "reset") == 0;
        } else if (!strcmp(a, "--tls-cert")) {
            opt.tls_cert = v;
        } else if (!strcmp(a, "--tls-key")) {
            opt.tls_key = v;
        } else if (!strcmp(a, "--delay-ms")) {
            opt.delay_ms = parse_int(v, 0, 10000, a);
        } else if (!strcmp(a, "--seed")) {
            opt.seed = (uint64_t)parse_int(v, 0, 1 << 30, a);
        } else if (!strcmp(a, "--log")) {
            log_path = v;
        } else if (!strcmp(a, "--max-seconds")) {
            opt.max_seconds = parse_int(v, 1, 86400, a);
        } else if (!strcmp(a, "--idle-timeout")) {
            opt.idle_timeout_s = parse_int(v, 1, 3600, a);
        } else {
            die("unknown option '%s'", a);
        }
    }
    if (!have_upstream)
        die("--upstream HOST:PORT is required");
    if (opt.error_rate + opt.cut_request_rate + opt.cut_response_rate + opt.bad_etag_rate > 100)
        die("the rates add up to more than 100%%");
    if (!opt.tls_cert != !opt.tls_key)
        die("--tls-cert and --tls-key go together");
    if (log_path && !(log_file = fopen(log_path, "a")))
        die("--log: cannot open '%s'", log_path);
    /* xorshift must not start at 0; the seed is mixed so 1 and 2 differ early. */
    rng_state = (opt.seed + 1) * 0x9E3779B97F4A7C15ULL;
}

/* The server side of TLS, from a PEM certificate and key (--tls-cert/--tls-key). */
static void tls_setup(void)
{
    if (!opt.tls_cert)
        return;
    tls_ctx = SSL_CTX_new(TLS_server_method());
    if (!tls_ctx)
        die("cannot create a TLS context");
    /* A client that drops the connection is an EOF here, not a TLS error. */
    SSL_CTX_set_options(tls_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_use_certificate_chain_file(tls_ctx, opt.tls_cert) != 1)
        die("--tls-cert: cannot use '%s'", opt.tls_cert);
    if (SSL_CTX_use_PrivateKey_file(tls_ctx, opt.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(tls_ctx) != 1)
        die("--tls-key: cannot use '%s' with the certificate", opt.tls_key);
}

static int listen_on_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0)
        die("cannot listen on 127.0.0.1: %s", strerror(errno));
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv)
{
    pid_t parent = getppid();
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* SIGTERM and SIGALRM keep their default action: end the process; the
     * kernel closes every socket, and there is nothing else to clean up. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        return 0;                 /* the parent died before the line above */
    alarm((unsigned)opt.max_seconds);
    tls_setup();
    int lfd = listen_on_loopback();
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            if (e == EMFILE || e == ENFILE)
                sleep_ms(10);     /* out of descriptors: let connections finish */
            if (e == EINTR || e == ECONNABORTED || e == EMFILE || e == ENFILE)
                continue;
            die("accept: %s", strerror(e));
        }
        set_timeouts(cfd);
        pthread_mutex_lock(&shared_lock);
        int full = open_connections >= MAX_CONNECTIONS;
        if (!full)
            open_connections++;
        pthread_mutex_unlock(&shared_lock);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (full || pthread_create(&t, &attr, serve_connection, (void *)(intptr_t)cfd) != 0) {
            close(cfd);
            if (!full) {
                pthread_mutex_lock(&shared_lock);
                open_connections--;
                pthread_mutex_unlock(&shared_lock);
            }
        }
        pthread_attr_destroy(&attr);
    }
}
