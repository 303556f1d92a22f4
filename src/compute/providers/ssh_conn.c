/*
 * ssh_conn: one libssh2 session per host and the pump thread that bridges
 * its exec channels to local sockets (see ssh_conn.h for the why).
 *
 * Life of a channel: the caller's thread queues it (C_OPENING) and waits;
 * the pump opens it, starts the command (C_STARTING), and from then on
 * (C_RUNNING) copies local stdin → channel and channel stdout/stderr →
 * local sockets; when the remote side has sent EOF and closed, it reads the
 * exit status (C_ENDED) and wakes whoever waits for it. ssh_conn_release
 * marks it released; the pump then closes and frees it.
 */
#include "compute/providers/ssh_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/evp.h>

#include "compute/keeper_client.h"
#include "util/alloc.h"
#include "util/sigpipe.h"

#define KEEPALIVE_SECONDS 5           /* an idle connection still shows it is alive */
#define TCP_USER_TIMEOUT_MS 15000     /* unacknowledged data this long: the host is gone */
#define CHANNEL_WINDOW (4u << 20)     /* bytes in flight per channel */
#define CHANNEL_PACKET 32768u
#define PENDING_MAX (256u << 10)      /* bytes held for a slow local reader before the channel waits */
#define IO_CHUNK 65536

enum chan_state { C_OPENING, C_STARTING, C_RUNNING, C_CLOSING, C_ENDED };

typedef struct chan {
    int id;
    enum chan_state state;
    LIBSSH2_CHANNEL *ch;
    char *command;
    int want_header, have_header;
    sky_buf header;
    int q_in, q_out, q_err;          /* the pump's ends of the local sockets; -1 closed */
    sky_buf in_pend, out_pend, err_pend;
    int in_eof_sent, remote_eof;
    int code;                        /* exit status, 128 + signal, -1 unknown */
    char how[480];
    char why[400];                   /* why it could not start */
    int released;
    struct chan *next;
} chan;

struct ssh_conn {
    char alias[256];
    int fd;
    LIBSSH2_SESSION *s;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int wake[2];
    int stopping;
    char lost[300];
    chan *chans;
    int next_id;
};

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;
static void ssh_global_init(void) { ssh_init_rc = libssh2_init(0); }

/* ---- small helpers ------------------------------------------------------------ */

void ssh_shell_quote(sky_buf *b, const char *s)
{
    sky_buf_append_byte(b, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            sky_buf_append_str(b, "'\\''");
        else
            sky_buf_append_byte(b, (unsigned char)*s);
    }
    sky_buf_append_byte(b, '\'');
}

void ssh_fingerprint(const unsigned char sha256[32], char *out, size_t outlen)
{
    unsigned char b64[64];
    int n = EVP_EncodeBlock(b64, sha256, 32);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    snprintf(out, outlen, "SHA256:%.*s", n, (const char *)b64);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void wake_pump(ssh_conn *c)
{
    char b = 1;
    if (write(c->wake[1], &b, 1) < 0) {
        /* full: the pump is awake already */
    }
}

static const char *ssh_error_text(LIBSSH2_SESSION *s)
{
    char *msg = NULL;
    libssh2_session_last_error(s, &msg, NULL, 0);
    return msg && *msg ? msg : "unknown error";
}

/* ---- connecting ------------------------------------------------------------------ */

static int connect_tcp(const ssh_target *t, double deadline, char *err, size_t errlen)
{
    char port[16];
    snprintf(port, sizeof port, "%d", t->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int gai = getaddrinfo(t->hostname, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "host %s: cannot resolve %s: %s", t->alias, t->hostname, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    char why[200] = "no address";
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            snprintf(why, sizeof why, "%s", strerror(errno));
            continue;
        }
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            int ms = (int)((deadline - keeper_now()) * 1000);
            struct pollfd p = { fd, POLLOUT, 0 };
            int pr;
            do
                pr = poll(&p, 1, ms > 0 ? ms : 0);
            while (pr < 0 && errno == EINTR);
            if (pr == 0) {
                snprintf(why, sizeof why, "no answer within %.0f s", t->connect_seconds);
                rc = -1;
            } else {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                rc = soerr ? -1 : 0;
                if (soerr)
                    snprintf(why, sizeof why, "%s", strerror(soerr));
            }
        } else if (rc != 0) {
            snprintf(why, sizeof why, "%s", strerror(errno));
        }
        if (rc != 0)
            close_fd(&fd);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "host %s (%s port %d) is unreachable: %s", t->alias, t->hostname, t->port, why);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);   /* libssh2 drives it; the pump sets non-blocking */
    int one = 1;
    unsigned int user_timeout = TCP_USER_TIMEOUT_MS;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    return fd;
}

static const char *key_type_name(int type)
{
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return "unknown";
    }
}

static int known_host_mask(int type)
{
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

/* Records a host OpenSSH's way: one line appended to known_hosts (the rest
 * of the file, comments included, is left as it is). */
static int record_host(LIBSSH2_KNOWNHOSTS *kh, const ssh_target *t, const char *key, size_t keylen, int type,
                       char *err, size_t errlen)
{
    char name[300];
    if (t->port == 22)
        snprintf(name, sizeof name, "%s", t->hostname);
    else
        snprintf(name, sizeof name, "[%s]:%d", t->hostname, t->port);
    struct libssh2_knownhost *entry = NULL;
    if (libssh2_knownhost_addc(kh, name, NULL, key, keylen, NULL, 0,
                               LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | known_host_mask(type),
                               &entry) != 0) {
        snprintf(err, errlen, "host %s: cannot record its key", t->alias);
        return -1;
    }
    char line[4096];
    size_t len = 0;
    if (libssh2_knownhost_writeline(kh, entry, line, sizeof line, &len, LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
        snprintf(err, errlen, "host %s: cannot write its known_hosts line", t->alias);
        return -1;
    }
    /* The folder of known_hosts is made private, as OpenSSH's ~/.ssh is. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", t->known_hosts);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mkdir(dir, 0700);
    }
    int fd = open(t->known_hosts, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, line, len) != (ssize_t)len) {
        snprintf(err, errlen, "host %s: cannot add its key to %s: %s", t->alias, t->known_hosts, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int check_host_key(LIBSSH2_SESSION *s, const ssh_target *t, char *err, size_t errlen)
{
    size_t keylen = 0;
    int type = 0;
    const char *key = libssh2_session_hostkey(s, &keylen, &type);
    const char *hash = libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (!key || !hash) {
        snprintf(err, errlen, "host %s: sent no host key", t->alias);
        return -1;
    }
    char fp[80];
    ssh_fingerprint((const unsigned char *)hash, fp, sizeof fp);
    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s);
    if (!kh)
        sky_oom("libssh2_knownhost_init");
    struct stat st;
    if (stat(t->known_hosts, &st) == 0 &&
        libssh2_knownhost_readfile(kh, t->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
        snprintf(err, errlen, "host %s: cannot read %s: %s", t->alias, t->known_hosts, ssh_error_text(s));
        libssh2_knownhost_free(kh);
        return -1;
    }
    struct libssh2_knownhost *found = NULL;
    int check = libssh2_knownhost_checkp(kh, t->hostname, t->port, key, keylen,
                                         LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                             known_host_mask(type),
                                         &found);
    int rc = 0;
    switch (check) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        break;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        snprintf(err, errlen,
                 "host %s: its host key has CHANGED — it now offers %s %s, which is not the key recorded "
                 "in %s. Refusing to connect: someone may be intercepting the connection. If the host "
                 "was reinstalled, remove its old key (ssh-keygen -R %s -f %s) and connect again",
                 t->alias, key_type_name(type), fp, t->known_hosts, t->hostname, t->known_hosts);
        rc = -1;
        break;
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        if (t->accept_new) {
            rc = record_host(kh, t, key, keylen, type, err, errlen);
            if (rc == 0)
                fprintf(stderr, "skyrun: host %s: recorded its key %s %s in %s\n", t->alias,
                        key_type_name(type), fp, t->known_hosts);
        } else {
            snprintf(err, errlen,
                     "host %s is not a known host: its key is %s %s, not in %s. Check the fingerprint "
                     "with the host's owner, then add it (ssh-keyscan, or connect once with ssh), or "
                     "use host_key_policy = \"accept-new\" to record new hosts",
                     t->alias, key_type_name(type), fp, t->known_hosts);
            rc = -1;
        }
        break;
    default:
        snprintf(err, errlen, "host %s: cannot check its host key against %s", t->alias, t->known_hosts);
        rc = -1;
    }
    libssh2_knownhost_free(kh);
    return rc;
}

/* An OpenSSH or PEM private key that needs a passphrase. */
static int key_is_encrypted(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    if (strstr(text, "ENCRYPTED"))
        return 1;
    const char *begin = strstr(text, "-----BEGIN OPENSSH PRIVATE KEY-----");
    if (!begin)
        return 0;
    /* openssh-key-v1\0, then the cipher name as a length-prefixed string. */
    const char *p = begin + strlen("-----BEGIN OPENSSH PRIVATE KEY-----");
    char b64[96];
    size_t k = 0;
    for (; *p && k < 64; p++)
        if (*p != '\n' && *p != '\r')
            b64[k++] = *p;
    b64[k] = 0;
    unsigned char raw[64];
    int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)k);
    if (len < 15 + 4 + 4 || memcmp(raw, "openssh-key-v1", 15) != 0)
        return 0;
    unsigned int clen = (unsigned)raw[15] << 24 | (unsigned)raw[16] << 16 | (unsigned)raw[17] << 8 | raw[18];
    return !(clen == 4 && memcmp(raw + 19, "none", 4) == 0);
}

static int authenticate(LIBSSH2_SESSION *s, const ssh_target *t, char *err, size_t errlen)
{
    unsigned int ulen = (unsigned int)strlen(t->user);
    char *methods = libssh2_userauth_list(s, t->user, ulen);
    if (!methods && libssh2_userauth_authenticated(s))
        return 0;
    sky_buf tried = SKY_BUF_INIT;
    int ok = 0;
    if (methods && strstr(methods, "publickey")) {
        const char *sock = getenv("SSH_AUTH_SOCK");
        if (sock && *sock) {
            LIBSSH2_AGENT *agent = libssh2_agent_init(s);
            if (agent && libssh2_agent_connect(agent) == 0 && libssh2_agent_list_identities(agent) == 0) {
                struct libssh2_agent_publickey *id = NULL, *prev = NULL;
                int nkeys = 0;
                while (!ok && libssh2_agent_get_identity(agent, &id, prev) == 0) {
                    nkeys++;
                    ok = libssh2_agent_userauth(agent, t->user, id) == 0;
                    prev = id;
                }
                sky_buf_printf(&tried, "ssh-agent (%d key%s)", nkeys, nkeys == 1 ? "" : "s");
                libssh2_agent_disconnect(agent);
            } else {
                sky_buf_printf(&tried, "ssh-agent (not reachable at $SSH_AUTH_SOCK)");
            }
            if (agent)
                libssh2_agent_free(agent);
        }
        for (size_t i = 0; !ok && t->identities && t->identities[i]; i++) {
            const char *path = t->identities[i];
            if (access(path, R_OK) != 0)
                continue;
            if (tried.len)
                sky_buf_append_str(&tried, ", ");
            if (key_is_encrypted(path)) {
                sky_buf_printf(&tried, "%s (encrypted: add it to ssh-agent with ssh-add %s)", path, path);
                continue;
            }
            int rc = libssh2_userauth_publickey_fromfile_ex(s, t->user, ulen, NULL, path, NULL);
            ok = rc == 0;
            if (!ok)
                sky_buf_printf(&tried, "%s (%s)", path,
                               rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
                                   ? "refused" : ssh_error_text(s));
        }
    }
    if (!ok)
        snprintf(err, errlen, "host %s: user %s: authentication refused (the host accepts: %s; tried: %s)",
                 t->alias, t->user, methods ? methods : "?", tried.len ? sky_buf_cstr(&tried) : "no key found");
    sky_buf_free(&tried);
    return ok ? 0 : -1;
}

static void *pump_main(void *arg);

/* Sets libssh2's preference for one kind of method to the names in
 * wanted that this libssh2 supports, in that order (libssh2 1.10 corrupts
 * its list when it has to drop a name it does not know). */
static void prefer_methods(LIBSSH2_SESSION *s, int kind, const char *const *wanted, size_t nwanted)
{
    const char **algs = NULL;
    int n = libssh2_session_supported_algs(s, kind, &algs);
    if (n <= 0)
        return;
    sky_buf pref = SKY_BUF_INIT;
    for (size_t i = 0; i < nwanted; i++)
        for (int j = 0; j < n; j++)
            if (strcmp(wanted[i], algs[j]) == 0) {
                if (pref.len)
                    sky_buf_append_byte(&pref, ',');
                sky_buf_append_str(&pref, wanted[i]);
            }
    libssh2_free(s, algs);
    if (pref.len)
        libssh2_session_method_pref(s, kind, sky_buf_cstr(&pref));
    sky_buf_free(&pref);
}

/* Host keys: the types known_hosts files hold today, ed25519 first (libssh2
 * would take ECDSA first, and a host known by its ed25519 key would look
 * unknown). Key exchange: curve25519 first (as OpenSSH), never the slow
 * group exchange while a fast one is offered. */
static void prefer_modern_methods(LIBSSH2_SESSION *s)
{
    static const char *const hostkeys[] = { "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                                            "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa" };
    static const char *const kex[] = { "curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
                                       "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group14-sha256",
                                       "diffie-hellman-group16-sha512", "diffie-hellman-group-exchange-sha256",
                                       "diffie-hellman-group14-sha1" };
    static const char *const ciphers[] = { "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
                                           "aes256-ctr", "chacha20-poly1305@openssh.com",
                                           "aes256-cbc", "aes128-cbc" };
    prefer_methods(s, LIBSSH2_METHOD_HOSTKEY, hostkeys, sizeof hostkeys / sizeof hostkeys[0]);
    prefer_methods(s, LIBSSH2_METHOD_KEX, kex, sizeof kex / sizeof kex[0]);
    prefer_methods(s, LIBSSH2_METHOD_CRYPT_CS, ciphers, sizeof ciphers / sizeof ciphers[0]);
    prefer_methods(s, LIBSSH2_METHOD_CRYPT_SC, ciphers, sizeof ciphers / sizeof ciphers[0]);
}

ssh_conn *ssh_conn_open(const ssh_target *t, char *err, size_t errlen)
{
    pthread_once(&ssh_once, ssh_global_init);
    if (ssh_init_rc != 0) {
        snprintf(err, errlen, "libssh2 could not start");
        return NULL;
    }
    double deadline = keeper_now() + t->connect_seconds;
    int fd = connect_tcp(t, deadline, err, errlen);
    if (fd < 0)
        return NULL;
    LIBSSH2_SESSION *s = libssh2_session_init();
    if (!s)
        sky_oom("libssh2_session_init");
    libssh2_session_set_blocking(s, 1);
    libssh2_session_set_timeout(s, (long)(t->connect_seconds * 1000));
    prefer_modern_methods(s);
    sky_sigpipe_guard g;
    sky_sigpipe_hold(&g);
    int rc = libssh2_session_handshake(s, fd);
    if (rc != 0) {
        snprintf(err, errlen, "host %s (%s port %d): SSH handshake failed: %s", t->alias, t->hostname, t->port,
                 rc == LIBSSH2_ERROR_TIMEOUT ? "no answer in time" : ssh_error_text(s));
    } else {
        rc = check_host_key(s, t, err, errlen);
        if (rc == 0)
            rc = authenticate(s, t, err, errlen);
    }
    sky_sigpipe_release(&g);
    if (rc != 0) {
        libssh2_session_disconnect(s, "skyrun: giving up");
        libssh2_session_free(s);
        close(fd);
        return NULL;
    }
    ssh_conn *c = sky_xcalloc(1, sizeof *c);
    snprintf(c->alias, sizeof c->alias, "%s", t->alias);
    c->fd = fd;
    c->s = s;
    c->next_id = 1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        c->wake[0] = c->wake[1] = -1;
        ssh_conn_close(c);
        return NULL;
    }
    libssh2_session_set_timeout(s, 0);
    libssh2_session_set_blocking(s, 0);
    libssh2_keepalive_config(s, 1, KEEPALIVE_SECONDS);
    set_nonblock(fd);
    if (pthread_create(&c->thread, NULL, pump_main, c) != 0) {
        snprintf(err, errlen, "host %s: cannot start its connection thread", t->alias);
        ssh_conn_close(c);
        return NULL;
    }
    c->thread_started = 1;
    return c;
}

/* ---- the pump ------------------------------------------------------------------- */

static void chan_end_local(chan *k)
{
    close_fd(&k->q_in);
    close_fd(&k->q_out);
    close_fd(&k->q_err);
}

static void chan_ended(ssh_conn *c, chan *k, int code, const char *how)
{
    k->state = C_ENDED;
    k->code = code;
    snprintf(k->how, sizeof k->how, "%s", how);
    chan_end_local(k);
    if (k->ch) {
        libssh2_channel_free(k->ch);   /* non-blocking: frees locally at worst */
        k->ch = NULL;
    }
    pthread_cond_broadcast(&c->changed);
}

/* The connection is gone: every channel ends, its streams with it. */
static void conn_lost(ssh_conn *c, const char *why)
{
    if (!c->lost[0])
        snprintf(c->lost, sizeof c->lost, "the connection to %s was lost (%s)", c->alias, why);
    for (chan *k = c->chans; k; k = k->next) {
        if (k->state == C_ENDED)
            continue;
        if (k->state == C_OPENING || k->state == C_STARTING)
            snprintf(k->why, sizeof k->why, "%s", c->lost);
        k->ch = NULL;   /* the session is unusable: libssh2 frees channels with it */
        char how[320];
        snprintf(how, sizeof how, "was lost: %s", c->lost);
        chan_ended(c, k, -1, how);
    }
    pthread_cond_broadcast(&c->changed);
}

static int session_error(int rc)
{
    return rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
           rc == LIBSSH2_ERROR_SOCKET_TIMEOUT || rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_DECRYPT ||
           rc == LIBSSH2_ERROR_BAD_USE || rc == LIBSSH2_ERROR_KEX_FAILURE;
}

/* Writes pending bytes to a local socket; drops them when its reader is gone. */
static int flush_local(int *fd, sky_buf *pend)
{
    int moved = 0;
    while (*fd >= 0 && pend->len) {
        ssize_t n = send(*fd, pend->data, pend->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sky_buf_consume(pend, (size_t)n);
            moved = 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            close_fd(fd);      /* the reader went away: what the command says next is dropped */
            sky_buf_reset(pend);
            moved = 1;
        }
    }
    return moved;
}

/* One step of a running channel; returns 1 when anything moved, -1 when the
 * session failed. */
static int chan_step(ssh_conn *c, chan *k)
{
    int moved = 0;
    char buf[IO_CHUNK];
    /* local stdin → channel */
    for (;;) {
        if (!k->in_pend.len && k->q_in >= 0) {
            ssize_t n = recv(k->q_in, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                sky_buf_append(&k->in_pend, buf, (size_t)n);
            } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                close_fd(&k->q_in);
            }
        }
        if (k->in_pend.len) {
            ssize_t w = libssh2_channel_write(k->ch, (const char *)k->in_pend.data, k->in_pend.len);
            if (w > 0) {
                sky_buf_consume(&k->in_pend, (size_t)w);
                moved = 1;
                continue;
            }
            if (w == LIBSSH2_ERROR_EAGAIN)
                break;
            if (session_error((int)w))
                return -1;
            sky_buf_reset(&k->in_pend);   /* the remote side closed its stdin */
            close_fd(&k->q_in);
        }
        if (k->q_in < 0 && !k->in_pend.len && !k->in_eof_sent) {
            int rc = libssh2_channel_send_eof(k->ch);
            if (rc == LIBSSH2_ERROR_EAGAIN)
                break;
            if (session_error(rc))
                return -1;
            k->in_eof_sent = 1;
            moved = 1;
        }
        break;
    }
    /* channel stdout and stderr → local sockets */
    for (int stream = 0; stream < 2; stream++) {
        sky_buf *pend = stream ? &k->err_pend : &k->out_pend;
        int *fd = stream ? &k->q_err : &k->q_out;
        moved |= flush_local(fd, pend);
        while (pend->len < PENDING_MAX) {
            ssize_t n = libssh2_channel_read_ex(k->ch, stream, buf, sizeof buf);
            if (n == LIBSSH2_ERROR_EAGAIN || n == 0)
                break;
            if (n < 0) {
                if (session_error((int)n))
                    return -1;
                break;
            }
            moved = 1;
            if (*fd < 0)
                continue;      /* nobody reads it: drained and dropped */
            const char *p = buf;
            size_t len = (size_t)n;
            if (!stream && k->want_header && !k->have_header) {
                const char *nl = memchr(p, '\n', len);
                size_t take = nl ? (size_t)(nl - p) + 1 : len;
                sky_buf_append(&k->header, p, take);
                p += take;
                len -= take;
                if (nl || k->header.len > 1024) {
                    k->have_header = 1;
                    pthread_cond_broadcast(&c->changed);
                }
            }
            sky_buf_append(pend, p, len);
            flush_local(fd, pend);
        }
    }
    if (!k->remote_eof && libssh2_channel_eof(k->ch) && !k->out_pend.len && !k->err_pend.len) {
        k->remote_eof = 1;
        moved = 1;
    }
    if (k->remote_eof && !k->out_pend.len && !k->err_pend.len) {
        /* Output done: the local readers see the end; then the exit status. */
        close_fd(&k->q_out);
        close_fd(&k->q_err);
        if (k->want_header && !k->have_header) {
            k->have_header = 1;
            pthread_cond_broadcast(&c->changed);
        }
        k->state = C_CLOSING;
        moved = 1;
    }
    return moved;
}

static int chan_close_step(ssh_conn *c, chan *k)
{
    int rc = libssh2_channel_close(k->ch);
    if (rc == 0)
        rc = libssh2_channel_wait_closed(k->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
    if (session_error(rc))
        return -1;
    char *sig = NULL;
    libssh2_channel_get_exit_signal(k->ch, &sig, NULL, NULL, NULL, NULL, NULL);
    char how[200];
    int code;
    if (sig && *sig) {
        static const struct { const char *name; int num; } sigs[] = {
            { "KILL", 9 }, { "TERM", 15 }, { "INT", 2 }, { "HUP", 1 }, { "SEGV", 11 }, { "ABRT", 6 },
            { "PIPE", 13 }, { "BUS", 7 }, { "FPE", 8 }, { "ILL", 4 }, { "QUIT", 3 }, { "USR1", 10 },
            { "USR2", 12 }, { "ALRM", 14 } };
        int num = 0;
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            if (strcmp(sig, sigs[i].name) == 0)
                num = sigs[i].num;
        code = num ? 128 + num : -1;
        snprintf(how, sizeof how, "was killed by signal %s", sig);
    } else {
        code = libssh2_channel_get_exit_status(k->ch);
        snprintf(how, sizeof how, "exited with status %d", code);
    }
    if (sig)
        libssh2_free(c->s, sig);
    chan_ended(c, k, code, how);
    return 1;
}

static void never_started(ssh_conn *c, chan *k)
{
    char how[480];
    snprintf(how, sizeof how, "was never started: %s", k->why);
    chan_ended(c, k, -1, how);
}

static int chan_open_step(ssh_conn *c, chan *k)
{
    if (k->state == C_OPENING) {
        k->ch = libssh2_channel_open_ex(c->s, "session", sizeof "session" - 1, CHANNEL_WINDOW, CHANNEL_PACKET,
                                        NULL, 0);
        if (!k->ch) {
            int rc = libssh2_session_last_errno(c->s);
            if (rc == LIBSSH2_ERROR_EAGAIN)
                return 0;
            if (session_error(rc))
                return -1;
            snprintf(k->why, sizeof k->why,
                     "%s refused a channel (%s; workers + 2 are needed: raise sshd's MaxSessions, "
                     "default 10)", c->alias, ssh_error_text(c->s));
            never_started(c, k);
            return 1;
        }
        k->state = C_STARTING;
    }
    int rc = libssh2_channel_process_startup(k->ch, "exec", sizeof "exec" - 1, k->command,
                                             (unsigned int)strlen(k->command));
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
    if (session_error(rc))
        return -1;
    if (rc != 0) {
        snprintf(k->why, sizeof k->why, "%s refused to run a command: %s", c->alias, ssh_error_text(c->s));
        never_started(c, k);
        return 1;
    }
    libssh2_channel_handle_extended_data2(k->ch, LIBSSH2_CHANNEL_EXTENDED_DATA_NORMAL);
    k->state = C_RUNNING;
    pthread_cond_broadcast(&c->changed);
    return 1;
}

static void free_chan(chan *k)
{
    chan_end_local(k);
    sky_buf_free(&k->in_pend);
    sky_buf_free(&k->out_pend);
    sky_buf_free(&k->err_pend);
    sky_buf_free(&k->header);
    free(k->command);
    free(k);
}

static void *pump_main(void *arg)
{
    ssh_conn *c = arg;
    /* SIGPIPE stays blocked in this thread alone: a write to a gone peer is
     * EPIPE here, and the process's disposition is never touched. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    struct pollfd *pfd = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        int moved = 0, failed = 0;
        for (int round = 0; round < 64 && !c->lost[0]; round++) {
            moved = 0;
            for (chan **pk = &c->chans; *pk;) {
                chan *k = *pk;
                int r = 0;
                if (k->state == C_OPENING || k->state == C_STARTING)
                    r = chan_open_step(c, k);
                else if (k->state == C_RUNNING)
                    r = chan_step(c, k);
                else if (k->state == C_CLOSING)
                    r = chan_close_step(c, k);
                if (r < 0) {
                    failed = 1;
                    break;
                }
                moved |= r;
                if (k->state == C_ENDED && k->released) {
                    *pk = k->next;
                    free_chan(k);
                    continue;
                }
                pk = &k->next;
            }
            if (failed || !moved)
                break;
        }
        if (failed) {
            conn_lost(c, ssh_error_text(c->s));
            continue;
        }
        int next_keepalive = KEEPALIVE_SECONDS;
        if (!c->lost[0]) {
            int rc = libssh2_keepalive_send(c->s, &next_keepalive);
            if (session_error(rc)) {
                conn_lost(c, ssh_error_text(c->s));
                continue;
            }
        }
        /* Wait for the socket, a local stream or a request. */
        size_t n = 0, need = 2;
        for (chan *k = c->chans; k; k = k->next)
            need += 3;
        if (need > cap) {
            cap = need * 2;
            pfd = sky_xrealloc(pfd, cap * sizeof *pfd);
        }
        pfd[n++] = (struct pollfd){ c->wake[0], POLLIN, 0 };
        if (!c->lost[0]) {
            short ev = POLLIN;
            if (libssh2_session_block_directions(c->s) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
                ev |= POLLOUT;
            pfd[n++] = (struct pollfd){ c->fd, ev, 0 };
            for (chan *k = c->chans; k; k = k->next) {
                if (k->state != C_RUNNING)
                    continue;
                if (k->q_in >= 0 && !k->in_pend.len)
                    pfd[n++] = (struct pollfd){ k->q_in, POLLIN, 0 };
                if (k->q_out >= 0 && k->out_pend.len)
                    pfd[n++] = (struct pollfd){ k->q_out, POLLOUT, 0 };
                if (k->q_err >= 0 && k->err_pend.len)
                    pfd[n++] = (struct pollfd){ k->q_err, POLLOUT, 0 };
            }
        }
        pthread_mutex_unlock(&c->lock);
        /* Still moving after the rounds: libssh2 may hold read data, so no sleep. */
        int ms = moved ? 0 : next_keepalive > 0 ? next_keepalive * 1000 : 1000;
        poll(pfd, n, ms);
        if (pfd[0].revents) {
            char drain[64];
            while (read(c->wake[0], drain, sizeof drain) > 0)
                ;
        }
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    free(pfd);
    return NULL;
}

/* ---- the callers' side ----------------------------------------------------------- */

static chan *find_chan(ssh_conn *c, int id)
{
    for (chan *k = c->chans; k; k = k->next)
        if (k->id == id)
            return k;
    return NULL;
}

static void wait_until(ssh_conn *c, double deadline)
{
    double left = deadline - keeper_now();
    if (left <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (left < 1.0 ? left : 1.0);
    ts.tv_sec = (time_t)at;
    ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&c->changed, &c->lock, &ts);
}

static int local_pair(int *mine, int *theirs)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    set_nonblock(sv[0]);
    *mine = sv[0];
    *theirs = sv[1];
    return 0;
}

/* The header line without its line end. */
static void copy_header(const chan *k, char *header, size_t headerlen)
{
    size_t n = k->header.len;
    while (n && (k->header.data[n - 1] == '\n' || k->header.data[n - 1] == '\r'))
        n--;
    snprintf(header, headerlen, "%.*s", (int)n, n ? (const char *)k->header.data : "");
}

static int starting(const chan *k)
{
    return k->state == C_OPENING || k->state == C_STARTING ||
           (k->want_header && !k->have_header && k->state != C_ENDED);
}

int ssh_conn_exec(ssh_conn *c, const char *command, int flags, int *to, int *from, int *diag,
                  char *header, size_t headerlen, double deadline, char *err, size_t errlen)
{
    chan *k = sky_xcalloc(1, sizeof *k);
    k->q_in = k->q_out = k->q_err = -1;
    int t_in = -1, t_out = -1, t_err = -1;
    if (local_pair(&k->q_in, &t_in) || local_pair(&k->q_out, &t_out) || local_pair(&k->q_err, &t_err)) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        close_fd(&t_in);
        close_fd(&t_out);
        close_fd(&t_err);
        free_chan(k);
        return -1;
    }
    k->command = sky_xstrdup(command);
    k->want_header = (flags & SSH_EXEC_HEADER) != 0;
    k->code = -1;
    pthread_mutex_lock(&c->lock);
    if (c->lost[0] || c->stopping) {
        snprintf(err, errlen, "%s", c->lost[0] ? c->lost : "the connection is closing");
        pthread_mutex_unlock(&c->lock);
        close(t_in);
        close(t_out);
        close(t_err);
        free_chan(k);
        return -1;
    }
    k->id = c->next_id++;
    k->state = C_OPENING;
    k->next = c->chans;
    c->chans = k;
    wake_pump(c);
    int id = k->id;
    int rc = 0;
    if (!(flags & SSH_EXEC_NOWAIT)) {
        while (starting(k) && keeper_now() < deadline)
            wait_until(c, deadline);
        if (k->state == C_ENDED && k->why[0]) {
            snprintf(err, errlen, "%s", k->why);
            rc = -1;
        } else if (starting(k)) {
            snprintf(err, errlen, "%s did not start a command in time", c->alias);
            rc = -1;
        } else if (header) {
            copy_header(k, header, headerlen);
        }
        if (rc != 0) {
            k->released = 1;
            wake_pump(c);
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (rc != 0) {
        close(t_in);
        close(t_out);
        close(t_err);
        return -1;
    }
    *to = t_in;
    *from = t_out;
    *diag = t_err;
    return id;
}

int ssh_conn_header(ssh_conn *c, int id, double deadline, char *header, size_t headerlen)
{
    pthread_mutex_lock(&c->lock);
    chan *k = find_chan(c, id);
    while (k && starting(k) && keeper_now() < deadline)
        wait_until(c, deadline);
    int rc = k && k->have_header && k->header.len ? 0 : -1;
    if (rc == 0)
        copy_header(k, header, headerlen);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int ssh_conn_wait_exit(ssh_conn *c, int id, double deadline, char *how, size_t howlen)
{
    pthread_mutex_lock(&c->lock);
    chan *k = find_chan(c, id);
    for (;;) {
        if (!k) {
            snprintf(how, howlen, "was lost");
            pthread_mutex_unlock(&c->lock);
            return -1;
        }
        if (k->state == C_ENDED) {
            snprintf(how, howlen, "%s", k->how);
            int code = k->code;
            pthread_mutex_unlock(&c->lock);
            return code;
        }
        if (keeper_now() >= deadline)
            break;
        wait_until(c, deadline);
    }
    pthread_mutex_unlock(&c->lock);
    return -2;
}

int ssh_conn_ended(ssh_conn *c, int id)
{
    pthread_mutex_lock(&c->lock);
    chan *k = find_chan(c, id);
    int ended = !k || k->state == C_ENDED;
    pthread_mutex_unlock(&c->lock);
    return ended;
}

void ssh_conn_release(ssh_conn *c, int id)
{
    pthread_mutex_lock(&c->lock);
    chan *k = find_chan(c, id);
    if (k) {
        k->released = 1;
        if (k->state == C_RUNNING) {
            /* Nobody will read or write it again. */
            chan_end_local(k);
            sky_buf_reset(&k->in_pend);
            sky_buf_reset(&k->out_pend);
            sky_buf_reset(&k->err_pend);
        }
    }
    wake_pump(c);
    pthread_mutex_unlock(&c->lock);
}

const char *ssh_conn_lost(ssh_conn *c) { return c->lost; }

int ssh_conn_run(ssh_conn *c, const char *command, const void *input, size_t inlen, sky_buf *out,
                 sky_buf *errout, double deadline, char *err, size_t errlen)
{
    int to, from, diag;
    int id = ssh_conn_exec(c, command, 0, &to, &from, &diag, NULL, 0, deadline, err, errlen);
    if (id < 0)
        return -1;
    set_nonblock(to);
    set_nonblock(from);
    set_nonblock(diag);
    size_t sent = 0;
    if (!input || !inlen)
        close_fd(&to);
    char buf[IO_CHUNK];
    int ok = 1;
    while ((from >= 0 || diag >= 0) && ok) {
        struct pollfd p[3];
        int n = 0, ito = -1, ifrom = -1, idiag = -1;
        if (to >= 0) { ito = n; p[n++] = (struct pollfd){ to, POLLOUT, 0 }; }
        if (from >= 0) { ifrom = n; p[n++] = (struct pollfd){ from, POLLIN, 0 }; }
        if (diag >= 0) { idiag = n; p[n++] = (struct pollfd){ diag, POLLIN, 0 }; }
        int ms = (int)((deadline - keeper_now()) * 1000);
        if (ms <= 0) {
            ok = 0;
            break;
        }
        if (poll(p, (nfds_t)n, ms) < 0 && errno != EINTR)
            break;
        if (ito >= 0 && p[ito].revents) {
            ssize_t w = send(to, (const char *)input + sent, inlen - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == inlen)
                close_fd(&to);
        }
        int *fds[2] = { &from, &diag };
        int idx[2] = { ifrom, idiag };
        sky_buf *bufs[2] = { out, errout };
        for (int i = 0; i < 2; i++) {
            if (idx[i] < 0 || !p[idx[i]].revents)
                continue;
            ssize_t r = read(*fds[i], buf, sizeof buf);
            if (r > 0) {
                if (bufs[i] && bufs[i]->len < (1u << 20))
                    sky_buf_append(bufs[i], buf, (size_t)r);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close_fd(fds[i]);
            }
        }
    }
    close_fd(&to);
    close_fd(&from);
    close_fd(&diag);
    char how[200];
    int code = ok ? ssh_conn_wait_exit(c, id, deadline, how, sizeof how) : -2;
    ssh_conn_release(c, id);
    if (code == -2) {
        snprintf(err, errlen, "%s: a command did not end in time", c->alias);
        return -1;
    }
    if (code < 0) {
        snprintf(err, errlen, "%s: a command %s", c->alias, how);
        return -1;
    }
    return code;
}

void ssh_conn_close(ssh_conn *c)
{
    if (!c)
        return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->lock);
        c->stopping = 1;
        wake_pump(c);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    for (chan *k = c->chans, *next; k; k = next) {
        next = k->next;
        if (k->ch && !c->lost[0])
            libssh2_channel_free(k->ch);
        free_chan(k);
    }
    if (c->s) {
        sky_sigpipe_guard g;
        sky_sigpipe_hold(&g);
        if (!c->lost[0]) {
            /* A short, bounded goodbye; a dead peer does not hold us. */
            libssh2_session_set_blocking(c->s, 1);
            libssh2_session_set_timeout(c->s, 2000);
            libssh2_session_disconnect(c->s, "skyrun: pool closed");
        }
        libssh2_session_free(c->s);
        sky_sigpipe_release(&g);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->wake[0] >= 0)
        close(c->wake[0]);
    if (c->wake[1] >= 0)
        close(c->wake[1]);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c);
}
