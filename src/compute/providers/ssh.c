/*
 * ssh provider: nodes on the user's own machines, one node per host, over
 * SSH (libssh2; the connection and its channels are ssh_conn.c).
 *
 * Bring-up of a host: connect (host key checked against known_hosts,
 * authentication by ssh-agent or key files), ask it what it is (`uname
 * -sm`, its cache folder), give it this build's skyrun-worker unless that
 * exact build is in its per-user cache already (content hash in the name,
 * written to a temporary file and renamed into place), then start the
 * node's keeper (`skyrun-worker --keeper DIR --stdio --shared-mounts`) in
 * one exec channel: the keeper makes folders, writes credentials, mounts,
 * and undoes all of it when asked or when its channel ends (the host's
 * connection gone). Every other process — workers, image phases, s3fs — is
 * one exec channel of its own whose streams the pool reads as local
 * sockets; its remote pid (the first line it prints) is told to the
 * keeper, which kills it, with its process group, if the host goes.
 *
 * A host is a machine of its own: mounts made there are the node's alone,
 * and its files are not the host's (volumes mount; mode="copy" is for
 * providers whose nodes share this machine's files).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "compute/keeper_client.h"
#include "compute/provider.h"
#include "compute/providers/ssh_config.h"
#include "compute/providers/ssh_conn.h"
#include "util/alloc.h"
#include "util/encode.h"
#include "util/log.h"
#include "util/sigpipe.h"
#include "wire/control.h"

#define CONNECT_SECONDS 15.0     /* connect, handshake, authentication */
#define COMMAND_SECONDS 30.0     /* a probe or a channel start on a live connection */
#define SHIP_SECONDS 300.0       /* copying the worker binary */
#define STOP_SECONDS 15.0        /* the keeper's cleanup: kill, unmount, remove */
#define KILL_SECONDS 5.0         /* after the kill, until the channel reports the end */
#define MAX_SHIPPED 4

typedef struct shipped {
    char *local;                 /* a binary of this machine */
    char *remote;                /* its copy in the host's cache */
} shipped;

/* A process started over its own channel (the pool's sky_proc.handle). */
typedef struct ssh_proc {
    int chan;
    long pid;                    /* its first line; 0 until it came */
} ssh_proc;

/* A login shell on the host waiting for one command line on its stdin
 * (`read` then `eval`): it has paid for the host's rc files already, so
 * a process started through it runs at once. */
typedef struct spare {
    int chan, to, from, diag;
} spare;

#define MAX_SPARE 64

typedef struct ssh_node {
    ssh_conn *conn;
    spare spare[MAX_SPARE];
    int nspare, want_spare;
    keeper_client kc;
    int keeper_chan;
    char *dir;                   /* the node's folder on the host */
    char *cache;                 /* the host's cache folder for skyrun */
    shipped bins[MAX_SHIPPED];
    int nbins;
} ssh_node;

typedef struct local_binary {
    char *path;
    char hash[17];               /* first 16 hex digits of its SHA-256 */
} local_binary;

typedef struct ssh_provider {
    sky_provider base;
    char **hosts;
    size_t nhosts;
    char *home, *luser;          /* this machine's user, for ~ and %-tokens */
    char *user, *identity, *known_hosts, *config;
    int port;
    int accept_new;
    int workers;                 /* per node, to have that many shells waiting */
    double connect_seconds;
    local_binary bins[MAX_SHIPPED];
    int nbins;
} ssh_provider;

/* ---- resolving a host ------------------------------------------------------------ */

static char *home_dir(void)
{
    const char *h = getenv("HOME");
    if (h && *h)
        return sky_xstrdup(h);
    struct passwd *pw = getpwuid(getuid());
    return sky_xstrdup(pw && pw->pw_dir ? pw->pw_dir : "/");
}

static char *local_user(void)
{
    const char *u = getenv("USER");
    if (u && *u)
        return sky_xstrdup(u);
    struct passwd *pw = getpwuid(getuid());
    return sky_xstrdup(pw && pw->pw_name ? pw->pw_name : "root");
}

/* ~ and OpenSSH's %d %u %h %r %% in a path from ~/.ssh/config. */
static char *expand_path(const char *p, const char *home, const char *luser, const char *host, const char *ruser)
{
    sky_buf b = SKY_BUF_INIT;
    if (p[0] == '~' && (p[1] == '/' || p[1] == 0)) {
        sky_buf_append_str(&b, home);
        p++;
    }
    for (; *p; p++) {
        if (*p != '%' || !p[1]) {
            sky_buf_append_byte(&b, (unsigned char)*p);
            continue;
        }
        p++;
        switch (*p) {
        case 'd': sky_buf_append_str(&b, home); break;
        case 'u': sky_buf_append_str(&b, luser); break;
        case 'h': sky_buf_append_str(&b, host); break;
        case 'r': sky_buf_append_str(&b, ruser); break;
        case '%': sky_buf_append_byte(&b, '%'); break;
        default: sky_buf_append_byte(&b, '%'); sky_buf_append_byte(&b, (unsigned char)*p);
        }
    }
    char *s = sky_xstrdup(sky_buf_cstr(&b));
    sky_buf_free(&b);
    return s;
}

typedef struct resolved {
    char *alias, *hostname, *user;
    int port;
    char *identities[SSH_CONFIG_MAX_IDENTITIES + 4];
    size_t nidentities;
} resolved;

static void free_resolved(resolved *r)
{
    free(r->alias);
    free(r->hostname);
    free(r->user);
    for (size_t i = 0; i < r->nidentities; i++)
        free(r->identities[i]);
}

/* "[user@]host[:port]" from the hosts list, then ~/.ssh/config for the
 * alias, then the provider's options, then OpenSSH's defaults. Explicit
 * parts of the entry win over the options, which win over the config. */
static int resolve_host(const ssh_provider *sp, const char *entry, resolved *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    char *copy = sky_xstrdup(entry);
    char *host = copy, *user = NULL;
    char *at = strrchr(copy, '@');
    if (at) {
        *at = 0;
        user = copy;
        host = at + 1;
    }
    int port = 0;
    char *colon = strrchr(host, ':');
    if (colon && !strchr(colon + 1, ']') && strchr(host, ':') == colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p <= 0 || p > 65535) {
            snprintf(err, errlen, "ssh provider: host '%s': bad port", entry);
            free(copy);
            return -1;
        }
        *colon = 0;
        port = (int)p;
    }
    if (!*host) {
        snprintf(err, errlen, "ssh provider: host '%s' names no host", entry);
        free(copy);
        return -1;
    }
    ssh_host_config hc;
    const char *home = sp->home, *luser = sp->luser;
    char *config = sp->config ? sky_xstrdup(sp->config) : expand_path("~/.ssh/config", home, luser, host, "");
    int rc = ssh_config_load(config, host, &hc, err, errlen);
    free(config);
    if (rc == 0) {
        r->alias = sky_xstrdup(host);
        r->hostname = sky_xstrdup(hc.hostname ? hc.hostname : host);
        r->user = sky_xstrdup(user ? user : sp->user ? sp->user : hc.user ? hc.user : luser);
        r->port = port ? port : sp->port ? sp->port : hc.port ? hc.port : 22;
        if (sp->identity)
            r->identities[r->nidentities++] = expand_path(sp->identity, home, luser, r->hostname, r->user);
        for (size_t i = 0; i < hc.nidentities; i++)
            r->identities[r->nidentities++] = expand_path(hc.identities[i], home, luser, r->hostname, r->user);
        if (!r->nidentities) {
            static const char *const defaults[] = { "~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa" };
            for (size_t i = 0; i < 3; i++)
                r->identities[r->nidentities++] = expand_path(defaults[i], home, luser, r->hostname, r->user);
        }
    }
    ssh_host_config_free(&hc);
    free(copy);
    return rc;
}

/* ---- the worker binary on a host ------------------------------------------------ */

static int hash_file(const char *path, char out[17])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        sky_oom("EVP_MD_CTX_new");
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)n);
    close(fd);
    unsigned char md[32];
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    if (n < 0)
        return -1;
    char hex[65];
    sky_hex(md, 32, hex);
    memcpy(out, hex, 16);
    out[16] = 0;
    return 0;
}

static int read_file(const char *path, sky_buf *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        sky_buf_append(b, buf, (size_t)n);
    close(fd);
    return n < 0 ? -1 : 0;
}

/* A binary of this build the pool runs on nodes by its local path (the
 * worker, its dynamic variant): shipped to hosts. */
static int is_shippable(const char *argv0)
{
    if (argv0[0] != '/')
        return 0;
    const char *base = strrchr(argv0, '/') + 1;
    return strncmp(base, "skyrun-worker", 13) == 0 && access(argv0, X_OK) == 0;
}

/* The path on node's host of local binary `local`, copied there unless
 * that exact build is cached already. NULL with err. */
static const char *remote_binary(ssh_provider *sp, sky_node *node, const char *local, char *err, size_t errlen)
{
    ssh_node *sn = node->data;
    for (int i = 0; i < sn->nbins; i++)
        if (strcmp(sn->bins[i].local, local) == 0)
            return sn->bins[i].remote;
    local_binary *lb = NULL;
    for (int i = 0; i < sp->nbins; i++)
        if (strcmp(sp->bins[i].path, local) == 0)
            lb = &sp->bins[i];
    if (!lb) {
        if (sp->nbins == MAX_SHIPPED || sn->nbins == MAX_SHIPPED) {
            snprintf(err, errlen, "%s: too many binaries to copy", node->name);
            return NULL;
        }
        lb = &sp->bins[sp->nbins];
        if (hash_file(local, lb->hash) != 0) {
            snprintf(err, errlen, "cannot read %s: %s", local, strerror(errno));
            return NULL;
        }
        lb->path = sky_xstrdup(local);
        sp->nbins++;
    }
    if (!sn->cache) {
        snprintf(err, errlen, "%s (%s): its cache folder is not known", node->name, node->host);
        return NULL;
    }
    const char *base = strrchr(local, '/') + 1;
    sky_buf remote = SKY_BUF_INIT, cmd = SKY_BUF_INIT, out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    sky_buf_printf(&remote, "%s/%s-%s", sn->cache, base, lb->hash);
    sky_buf_append_str(&cmd, "f=");
    ssh_shell_quote(&cmd, sky_buf_cstr(&remote));
    sky_buf_append_str(&cmd, "; if [ -x \"$f\" ]; then echo have; else echo need; fi");
    char why[400];
    int rc = ssh_conn_run(sn->conn, sky_buf_cstr(&cmd), NULL, 0, &out, &eout, keeper_now() + COMMAND_SECONDS,
                          why, sizeof why);
    const char *result = NULL;
    if (rc != 0) {
        snprintf(err, errlen, "%s (%s): cannot look for the worker in its cache: %s", node->name, node->host,
                 rc < 0 ? why : sky_buf_cstr(&eout));
    } else if (strncmp(sky_buf_cstr(&out), "have", 4) == 0) {
        result = "have";
    } else {
        /* Not there: a temporary file in the cache, renamed into place once whole. */
        sky_buf bytes = SKY_BUF_INIT;
        if (read_file(local, &bytes) != 0) {
            snprintf(err, errlen, "cannot read %s: %s", local, strerror(errno));
        } else {
            sky_buf_reset(&cmd);
            sky_buf_append_str(&cmd, "c=");
            ssh_shell_quote(&cmd, sn->cache);
            sky_buf_append_str(&cmd, "; f=");
            ssh_shell_quote(&cmd, sky_buf_cstr(&remote));
            sky_buf_append_str(&cmd, "; mkdir -p \"$c\" && chmod 700 \"$c\" && t=$(mktemp \"$c/.incoming.XXXXXX\") || exit 1; "
                                     "if cat > \"$t\" && chmod 755 \"$t\" && mv -f \"$t\" \"$f\"; then exit 0; fi; "
                                     "rm -f \"$t\"; exit 1");
            sky_buf_reset(&eout);
            rc = ssh_conn_run(sn->conn, sky_buf_cstr(&cmd), bytes.data, bytes.len, NULL, &eout,
                              keeper_now() + SHIP_SECONDS, why, sizeof why);
            if (rc == 0)
                result = "copied";
            else
                snprintf(err, errlen, "%s (%s): cannot copy the worker to %s: %s", node->name, node->host,
                         sky_buf_cstr(&remote), rc < 0 ? why : sky_buf_cstr(&eout));
        }
        sky_buf_free(&bytes);
    }
    const char *path = NULL;
    if (result) {
        sky_log(SKY_LOG_DEBUG, "%s (%s): worker %s (%s)", node->name, node->host, sky_buf_cstr(&remote), result);
        sn->bins[sn->nbins].local = sky_xstrdup(local);
        sn->bins[sn->nbins].remote = sky_xstrdup(sky_buf_cstr(&remote));
        path = sn->bins[sn->nbins++].remote;
    }
    sky_buf_free(&remote);
    sky_buf_free(&cmd);
    sky_buf_free(&out);
    sky_buf_free(&eout);
    return path;
}

/* ---- nodes ------------------------------------------------------------------------- */

/* Opens waiting shells until want_spare are ready (not waiting for them). */
static void open_spares(ssh_node *sn)
{
    while (sn->conn && sn->nspare < sn->want_spare && !ssh_conn_lost(sn->conn)[0]) {
        spare *sh = &sn->spare[sn->nspare];
        char why[300];
        sh->chan = ssh_conn_exec(sn->conn, "IFS= read -r skyrun_cmd || exit 0; eval \"$skyrun_cmd\"",
                                 SSH_EXEC_HEADER | SSH_EXEC_NOWAIT, &sh->to, &sh->from, &sh->diag, NULL, 0, 0, why,
                                 sizeof why);
        if (sh->chan < 0)
            return;
        sn->nspare++;
    }
}

/* Shells whose channel ended (refused by the host, or the host gone) are
 * no use: forgotten. */
static void drop_dead_spares(ssh_node *sn)
{
    for (int i = 0; i < sn->nspare;) {
        if (!ssh_conn_ended(sn->conn, sn->spare[i].chan)) {
            i++;
            continue;
        }
        close(sn->spare[i].to);
        close(sn->spare[i].from);
        close(sn->spare[i].diag);
        ssh_conn_release(sn->conn, sn->spare[i].chan);
        sn->spare[i] = sn->spare[--sn->nspare];
    }
}

static void close_spares(ssh_node *sn)
{
    for (int i = 0; i < sn->nspare; i++) {
        close(sn->spare[i].to);   /* end of input: the shell exits */
        close(sn->spare[i].from);
        close(sn->spare[i].diag);
        ssh_conn_release(sn->conn, sn->spare[i].chan);
    }
    sn->nspare = 0;
    sn->want_spare = 0;
}

static void free_ssh_node(ssh_node *sn)
{
    if (!sn)
        return;
    close_spares(sn);
    keeper_client_close(&sn->kc);
    if (sn->conn)
        ssh_conn_close(sn->conn);
    for (int i = 0; i < sn->nbins; i++) {
        free(sn->bins[i].local);
        free(sn->bins[i].remote);
    }
    free(sn->cache);
    free(sn->dir);
    free(sn);
}

/* The keeper's command line: in one session (each costs the host a login
 * shell and its rc files), say what the host is and where its cache is,
 * and — when this build's worker is there already and the host is of its
 * kind — make the node's folder and become the keeper. Its first line:
 * "UNAME|CACHE|need", "UNAME|CACHE|other" or "UNAME|CACHE|PID|DIR". */
static void keeper_command(const ssh_provider *sp, sky_buf *cmd)
{
    struct utsname u;
    uname(&u);
    char here[200];
    snprintf(here, sizeof here, "%s %s", u.sysname, u.machine);
    const char *base = strrchr(sp->base.worker_path, '/') + 1;
    sky_buf_append_str(cmd, "u=$(uname -sm); c=\"${XDG_CACHE_HOME:-$HOME/.cache}/skyrun\"; w=\"$c/");
    sky_buf_printf(cmd, "%s-%s\"; if [ \"$u\" != ", base, sp->bins[0].hash);
    ssh_shell_quote(cmd, here);
    sky_buf_append_str(cmd, " ]; then echo \"$u|$c|other\"; exit 0; fi; "
                            "if [ ! -x \"$w\" ]; then echo \"$u|$c|need\"; exit 0; fi; "
                            "d=$(mktemp -d \"${TMPDIR:-/tmp}/skyrun-XXXXXX\") && mkdir -m 700 \"$d/work\" \"$d/private\" "
                            "\"$d/pids\" && echo \"$u|$c|$$|$d\" && exec \"$w\" --keeper \"$d\" --stdio --shared-mounts");
}

static int start_keeper(ssh_provider *sp, sky_node *node, char *err, size_t errlen)
{
    ssh_node *sn = node->data;
    sky_buf cmd = SKY_BUF_INIT;
    keeper_command(sp, &cmd);
    char why[600], header[1200] = "";
    int to = -1, from = -1, diag = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        sn->keeper_chan = ssh_conn_exec(sn->conn, sky_buf_cstr(&cmd), SSH_EXEC_HEADER, &to, &from, &diag, header,
                                        sizeof header, keeper_now() + COMMAND_SECONDS, why, sizeof why);
        if (sn->keeper_chan < 0) {
            snprintf(err, errlen, "%s (%s): cannot start its keeper: %s", node->name, node->host, why);
            sky_buf_free(&cmd);
            return -1;
        }
        char *f[4] = { header, NULL, NULL, NULL };
        for (int i = 1; i < 4 && f[i - 1]; i++) {
            f[i] = strchr(f[i - 1], '|');
            if (f[i])
                *f[i]++ = 0;
        }
        if (f[1] && f[1][0] == '/' && !sn->cache)
            sn->cache = sky_xstrdup(f[1]);
        if (f[2] && f[3] && f[3][0] == '/') {
            sn->dir = sky_xstrdup(f[3]);
            break;
        }
        close(to);
        close(from);
        close(diag);
        ssh_conn_release(sn->conn, sn->keeper_chan);
        sn->keeper_chan = -1;
        if (f[2] && strcmp(f[2], "other") == 0) {
            struct utsname u;
            uname(&u);
            snprintf(err, errlen, "%s (%s) runs %s; this skyrun's worker is built for %s %s: run skyrun from a "
                     "machine of that kind", node->name, node->host, f[0], u.sysname, u.machine);
        } else if (f[2] && strcmp(f[2], "need") == 0 && attempt == 0 && sn->cache) {
            /* Not cached there: copy it, then start again. */
            if (remote_binary(sp, node, sp->base.worker_path, err, errlen))
                continue;
        } else {
            snprintf(err, errlen, "%s (%s): cannot make a node folder in its temporary folder%s%s", node->name,
                     node->host, header[0] ? ": " : "", header);
        }
        sky_buf_free(&cmd);
        return -1;
    }
    sky_buf_free(&cmd);
    if (sn->keeper_chan < 0)
        return -1;
    close(diag);   /* the keeper reports through records; its stray stderr is dropped */
    sn->kc.in_fd = from;
    sn->kc.out_fd = to;
    return 0;
}

static int start_node(sky_provider *pr, sky_node *node, char *err, size_t errlen)
{
    ssh_provider *sp = (ssh_provider *)pr;
    ssh_node *sn = sky_xcalloc(1, sizeof *sn);
    keeper_client_init(&sn->kc, -1, -1, 0, node->name);
    sn->keeper_chan = -1;
    node->data = sn;
    if ((size_t)node->index >= sp->nhosts) {
        snprintf(err, errlen, "ssh provider: %s has no host (the provider has %zu)", node->name, sp->nhosts);
        return -1;
    }
    resolved r;
    if (resolve_host(sp, sp->hosts[node->index], &r, err, errlen) != 0)
        return -1;
    node->host = sky_xstrdup(r.alias);
    const char *ids[SSH_CONFIG_MAX_IDENTITIES + 5];
    for (size_t i = 0; i < r.nidentities; i++)
        ids[i] = r.identities[i];
    ids[r.nidentities] = NULL;
    sky_buf kh = SKY_BUF_INIT;
    if (sp->known_hosts)
        sky_buf_append_str(&kh, sp->known_hosts);
    else
        sky_buf_printf(&kh, "%s/.ssh/known_hosts", sp->home);
    ssh_target t = { .alias = r.alias, .hostname = r.hostname, .port = r.port, .user = r.user,
                     .identities = ids, .known_hosts = sky_buf_cstr(&kh), .accept_new = sp->accept_new,
                     .connect_seconds = sp->connect_seconds };
    char why[1200];
    sn->conn = ssh_conn_open(&t, why, sizeof why);
    sky_buf_free(&kh);
    free_resolved(&r);
    if (!sn->conn) {
        snprintf(err, errlen, "%s: %s", node->name, why);
        return -1;
    }
    /* Shells for the workers start while the keeper does. */
    sn->want_spare = sp->workers < MAX_SPARE ? sp->workers : MAX_SPARE;
    open_spares(sn);
    if (start_keeper(sp, node, err, errlen) != 0)
        return -1;
    /* This build's worker is in the host's cache now. */
    if (sn->nbins == 0) {
        const char *base = strrchr(pr->worker_path, '/') + 1;
        sn->bins[0].local = sky_xstrdup(pr->worker_path);
        size_t n = strlen(sn->cache) + strlen(base) + 24;
        sn->bins[0].remote = sky_xmalloc(n);
        snprintf(sn->bins[0].remote, n, "%s/%s-%s", sn->cache, base, sp->bins[0].hash);
        sn->nbins = 1;
    }
    char kwhy[300] = "";
    if (keeper_client_next(&sn->kc, keeper_now() + KEEPER_REPLY_SECONDS, kwhy, sizeof kwhy) != 0 ||
        !control_is(&sn->kc.rec, 0, "ready") || sn->kc.rec.n < 3) {
        snprintf(err, errlen, "%s (%s): its keeper did not start: %s", node->name, node->host,
                 kwhy[0] ? kwhy : "no ready record");
        return -1;
    }
    const control_record *rec = &sn->kc.rec;
    node->own_mounts = control_is(rec, 1, "1");
    node->privileged = control_is(rec, 2, "1");
    if (rec->n > 3)
        snprintf(node->why_shared, sizeof node->why_shared, "%.*s", (int)rec->len[3], rec->field[3]);
    node->shares_host_files = 0;
    node->installs_packages = 1;
    size_t dn = strlen(sn->dir) + 16;
    node->workdir = sky_xmalloc(dn);
    snprintf(node->workdir, dn, "%s/work", sn->dir);
    node->private_dir = sky_xmalloc(dn);
    snprintf(node->private_dir, dn, "%s/private", sn->dir);
    return 0;
}

/* Hosts come up at once: each bring-up is mostly waiting for its host. */
typedef struct start_job {
    sky_provider *pr;
    sky_node *node;
    int rc;
    char err[1500];
} start_job;

static void *start_thread(void *arg)
{
    start_job *j = arg;
    j->rc = start_node(j->pr, j->node, j->err, sizeof j->err);
    return NULL;
}

static int start_nodes(sky_provider *pr, sky_node *nodes, int n, char *err, size_t errlen)
{
    ssh_provider *sp = (ssh_provider *)pr;
    if (sp->nbins == 0) {
        local_binary *lb = &sp->bins[0];
        if (hash_file(pr->worker_path, lb->hash) != 0) {
            snprintf(err, errlen, "cannot read %s: %s", pr->worker_path, strerror(errno));
            return -1;
        }
        lb->path = sky_xstrdup(pr->worker_path);
        sp->nbins = 1;
    }
    start_job *jobs = sky_xcalloc((size_t)n, sizeof *jobs);
    pthread_t *threads = sky_xcalloc((size_t)n, sizeof *threads);
    int *started = sky_xcalloc((size_t)n, sizeof *started);
    for (int i = 0; i < n; i++) {
        jobs[i] = (start_job){ .pr = pr, .node = &nodes[i] };
        started[i] = pthread_create(&threads[i], NULL, start_thread, &jobs[i]) == 0;
        if (!started[i])
            start_thread(&jobs[i]);
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        if (jobs[i].rc != 0 && rc == 0) {
            snprintf(err, errlen, "%s", jobs[i].err);
            rc = -1;
        }
    }
    free(jobs);
    free(threads);
    free(started);
    return rc;
}

/* Asks the keeper to kill a process this provider started (it wrote
 * NODE_DIR/pids/PID), with its process group. */
static void keeper_kill(ssh_node *sn, long pid)
{
    sky_buf req = SKY_BUF_INIT;
    control_field_str(&req, "kill");
    control_field_int(&req, pid);
    control_end(&req);
    keeper_client_send(&sn->kc, &req);
    sky_buf_free(&req);
}

static int spawn(sky_provider *pr, sky_node *node, const sky_spawn *spec, sky_proc *proc, char *err, size_t errlen)
{
    ssh_provider *sp = (ssh_provider *)pr;
    ssh_node *sn = node->data;
    const char *argv0 = spec->argv[0];
    /* This build's binaries are known to be there: such a process (a
     * worker) is started without waiting for the host, so that a node's
     * workers come up together. Anything else is waited for, so that a
     * missing program is an error of spawn, as on localhost. */
    int known = is_shippable(argv0);
    if (known && !(argv0 = remote_binary(sp, node, argv0, err, errlen)))
        return -1;
    for (size_t i = 0; spec->env && spec->env[i]; i++)
        if (strchr(spec->env[i], '\n') || !strchr(spec->env[i], '=')) {
            snprintf(err, errlen, "%s: an environment entry holds a newline or no '='", node->name);
            return -1;
        }
    /* cd; leave its pid for the keeper and say it; read the environment
     * from stdin (never argv: process lists show argv); exec. */
    sky_buf cmd = SKY_BUF_INIT;
    sky_buf_append_str(&cmd, "cd ");
    ssh_shell_quote(&cmd, spec->cwd ? spec->cwd : node->workdir);
    sky_buf_append_str(&cmd, " || exit 127; ");
    if (!known) {
        sky_buf_append_str(&cmd, "command -v ");
        ssh_shell_quote(&cmd, argv0);
        sky_buf_append_str(&cmd, " >/dev/null 2>&1 || { echo '!No such file or directory'; exit 127; }; ");
    }
    sky_buf_append_str(&cmd, ": > ");
    ssh_shell_quote(&cmd, sn->dir);
    sky_buf_append_str(&cmd, "/pids/$$ && echo $$ || exit 127; ");
    if (spec->env && spec->env[0])
        sky_buf_append_str(&cmd, "while IFS= read -r skyrun_kv && [ -n \"$skyrun_kv\" ]; do export \"$skyrun_kv\"; "
                                 "done; unset skyrun_kv; ");
    sky_buf_append_str(&cmd, "exec");
    for (size_t i = 0; spec->argv[i]; i++) {
        sky_buf_append_byte(&cmd, ' ');
        ssh_shell_quote(&cmd, i == 0 ? argv0 : spec->argv[i]);
    }
    /* What goes to its stdin before anything else: the command itself when
     * a waiting shell takes it, then the environment. */
    sky_buf input = SKY_BUF_INIT;
    drop_dead_spares(sn);
    int warm = sn->nspare > 0 && !strchr(sky_buf_cstr(&cmd), '\n');
    if (warm)
        sky_buf_printf(&input, "%s\n", sky_buf_cstr(&cmd));
    if (spec->env && spec->env[0]) {
        for (size_t i = 0; spec->env[i]; i++)
            sky_buf_printf(&input, "%s\n", spec->env[i]);
        sky_buf_append_byte(&input, '\n');
    }
    char header[300] = "", why[600] = "";
    int to, from, diag, id;
    if (warm) {
        spare *sh = &sn->spare[--sn->nspare];
        /* Once the first workers are up, one shell waits, no more: each
         * channel counts against the host's sshd MaxSessions. */
        if (sn->want_spare > 1)
            sn->want_spare--;
        id = sh->chan;
        to = sh->to;
        from = sh->from;
        diag = sh->diag;
    } else {
        id = ssh_conn_exec(sn->conn, sky_buf_cstr(&cmd), SSH_EXEC_HEADER | SSH_EXEC_NOWAIT, &to, &from, &diag, NULL,
                           0, 0, why, sizeof why);
    }
    sky_buf_free(&cmd);
    if (id < 0) {
        sky_buf_free(&input);
        snprintf(err, errlen, "%s (%s): %s", node->name, node->host, why);
        return -1;
    }
    /* Small: it waits in the local socket until the channel reads it. */
    size_t done = 0;
    sky_sigpipe_guard g;
    sky_sigpipe_hold(&g);
    while (done < input.len) {
        ssize_t w = write(to, input.data + done, input.len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    sky_sigpipe_release(&g);
    if (input.data)
        explicit_bzero(input.data, input.len);
    sky_buf_free(&input);
    open_spares(sn);   /* the next spawn finds a shell waiting */
    long pid = 0;
    if (!known) {
        char *end = header;
        if (ssh_conn_header(sn->conn, id, keeper_now() + COMMAND_SECONDS, header, sizeof header) == 0)
            pid = strtol(header, &end, 10);
        if (header[0] == '!' || pid <= 1 || *end) {
            close(to);
            close(from);
            close(diag);
            ssh_conn_release(sn->conn, id);
            const char *lost = ssh_conn_lost(sn->conn);
            snprintf(err, errlen, "%s: %s", spec->argv[0],
                     header[0] == '!' ? header + 1 : lost[0] ? lost : "could not start (its folder is missing?)");
            return -1;
        }
    }
    ssh_proc *sproc = sky_xcalloc(1, sizeof *sproc);
    sproc->chan = id;
    sproc->pid = pid;
    proc->to = to;
    proc->from = from;
    proc->diag = diag;
    proc->id = pid;
    proc->handle = sproc;
    return 0;
}

static int end_proc(sky_provider *pr, sky_node *node, sky_proc *proc, double deadline, char *how, size_t howlen)
{
    (void)pr;
    ssh_node *sn = node->data;
    int *fds[] = { &proc->to, &proc->from, &proc->diag };
    for (size_t i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    ssh_proc *sproc = proc->handle;
    if (!sproc) {
        snprintf(how, howlen, "was never started");
        return -1;
    }
    int code = ssh_conn_wait_exit(sn->conn, sproc->chan, deadline, how, howlen);
    if (code == -2) {
        char header[64];
        if (!sproc->pid && ssh_conn_header(sn->conn, sproc->chan, keeper_now() + 1.0, header, sizeof header) == 0)
            sproc->pid = strtol(header, NULL, 10);
        if (sproc->pid > 1)
            keeper_kill(sn, sproc->pid);
        code = ssh_conn_wait_exit(sn->conn, sproc->chan, keeper_now() + KILL_SECONDS, how, howlen);
        if (code == -2) {
            snprintf(how, howlen, "was lost");
            code = -1;
        }
    }
    ssh_conn_release(sn->conn, sproc->chan);
    free(sproc);
    proc->id = 0;
    proc->handle = NULL;
    return code;
}

static int keeper_request(sky_provider *pr, sky_node *node, const sky_buf *record, const control_record **answer,
                          char *err, size_t errlen)
{
    (void)pr;
    ssh_node *sn = node->data;
    if (keeper_client_request(&sn->kc, record, err, errlen) != 0)
        return -1;
    *answer = &sn->kc.rec;
    return 0;
}

static void stop_node(sky_provider *pr, sky_node *node)
{
    (void)pr;
    ssh_node *sn = node->data;
    if (!sn)
        return;
    if (sn->keeper_chan > 0 && sn->conn && !ssh_conn_lost(sn->conn)[0]) {
        double until = keeper_now() + STOP_SECONDS;
        keeper_client_stop(&sn->kc, until);
        keeper_client_close(&sn->kc);
        char how[200];
        if (ssh_conn_wait_exit(sn->conn, sn->keeper_chan, until, how, sizeof how) == -2)
            sky_log(SKY_LOG_WARN, "%s (%s): its keeper did not finish cleaning up in %.0f s", node->name,
                    node->host ? node->host : "?", STOP_SECONDS);
    } else if (sn->conn && ssh_conn_lost(sn->conn)[0]) {
        sky_log(SKY_LOG_WARN, "%s (%s): %s; its keeper cleans up there by itself when it notices", node->name,
                node->host ? node->host : "?", ssh_conn_lost(sn->conn));
    }
    free_ssh_node(sn);
    node->data = NULL;
}

static void free_provider(sky_provider *pr)
{
    ssh_provider *sp = (ssh_provider *)pr;
    for (size_t i = 0; i < sp->nhosts; i++)
        free(sp->hosts[i]);
    free(sp->hosts);
    for (int i = 0; i < sp->nbins; i++)
        free(sp->bins[i].path);
    free(sp->home);
    free(sp->luser);
    free(sp->user);
    free(sp->identity);
    free(sp->known_hosts);
    free(sp->config);
    free(sp);
}

sky_provider *sky_provider_ssh_new(const sky_ssh_options *opts, char *err, size_t errlen)
{
    if (!opts || opts->nhosts == 0) {
        snprintf(err, errlen, "ssh provider: hosts is empty (give hosts = {\"host1\", …})");
        return NULL;
    }
    int accept_new = 0;
    if (opts->host_key_policy && strcmp(opts->host_key_policy, "accept-new") == 0) {
        accept_new = 1;
    } else if (opts->host_key_policy && strcmp(opts->host_key_policy, "strict") != 0) {
        snprintf(err, errlen, "ssh provider: host_key_policy '%s' is not one of: strict (the default), accept-new",
                 opts->host_key_policy);
        return NULL;
    }
    if (opts->port < 0 || opts->port > 65535) {
        snprintf(err, errlen, "ssh provider: port %d is not a TCP port", opts->port);
        return NULL;
    }
    ssh_provider *sp = sky_xcalloc(1, sizeof *sp);
    sp->hosts = sky_xcalloc(opts->nhosts, sizeof *sp->hosts);
    for (size_t i = 0; i < opts->nhosts; i++)
        sp->hosts[i] = sky_xstrdup(opts->hosts[i]);
    sp->nhosts = opts->nhosts;
    sp->user = sky_xstrdup(opts->user);
    sp->identity = sky_xstrdup(opts->identity);
    sp->known_hosts = sky_xstrdup(opts->known_hosts);
    sp->config = sky_xstrdup(opts->ssh_config);
    sp->port = opts->port;
    sp->accept_new = accept_new;
    sp->connect_seconds = opts->connect_seconds > 0 ? opts->connect_seconds : CONNECT_SECONDS;
    sp->workers = opts->workers > 0 ? opts->workers : 1;
    sp->home = home_dir();
    sp->luser = local_user();
    sp->base.name = "ssh";
    sp->base.start_node = start_node;
    sp->base.start_nodes = start_nodes;
    sp->base.spawn = spawn;
    sp->base.end = end_proc;
    sp->base.request = keeper_request;
    sp->base.stop_node = stop_node;
    sp->base.free = free_provider;
    return &sp->base;
}
