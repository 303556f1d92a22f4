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

typedef struct ssh_node {
    ssh_conn *conn;
    keeper_client kc;
    int keeper_chan;
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
    char *user, *identity, *known_hosts, *config;
    int port;
    int accept_new;
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
    char *home = home_dir(), *luser = local_user();
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
    free(home);
    free(luser);
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

static void free_ssh_node(ssh_node *sn)
{
    if (!sn)
        return;
    keeper_client_close(&sn->kc);
    if (sn->conn)
        ssh_conn_close(sn->conn);
    for (int i = 0; i < sn->nbins; i++) {
        free(sn->bins[i].local);
        free(sn->bins[i].remote);
    }
    free(sn->cache);
    free(sn);
}

/* The host is the machine this build's worker runs on: same OS and
 * processor (the static worker needs nothing else). */
static int check_platform(sky_node *node, const char *remote_uname, char *err, size_t errlen)
{
    struct utsname u;
    uname(&u);
    char here[200];
    snprintf(here, sizeof here, "%s %s", u.sysname, u.machine);
    if (strcmp(remote_uname, here) != 0) {
        snprintf(err, errlen, "%s (%s) runs %s; this skyrun's worker is built for %s: run skyrun from a "
                 "machine of that kind", node->name, node->host, remote_uname, here);
        return -1;
    }
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
    char *home = home_dir();
    sky_buf kh = SKY_BUF_INIT;
    if (sp->known_hosts)
        sky_buf_append_str(&kh, sp->known_hosts);
    else
        sky_buf_printf(&kh, "%s/.ssh/known_hosts", home);
    free(home);
    ssh_target t = { .alias = r.alias, .hostname = r.hostname, .port = r.port, .user = r.user,
                     .identities = ids, .known_hosts = sky_buf_cstr(&kh), .accept_new = sp->accept_new,
                     .connect_seconds = sp->connect_seconds };
    char why[1200];
    sn->conn = ssh_conn_open(&t, why, sizeof why);
    sky_buf_free(&kh);
    if (!sn->conn) {
        snprintf(err, errlen, "%s: %s", node->name, why);
        free_resolved(&r);
        return -1;
    }
    free_resolved(&r);

    /* What the host is, and where its cache is. */
    sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    int rc = ssh_conn_run(sn->conn, "uname -sm; printf '%s\\n' \"${XDG_CACHE_HOME:-$HOME/.cache}/skyrun\"", NULL,
                          0, &out, &eout, keeper_now() + COMMAND_SECONDS, why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "%s (%s): cannot run a command there: %s", node->name, node->host,
                 rc < 0 ? why : sky_buf_cstr(&eout));
        sky_buf_free(&out);
        sky_buf_free(&eout);
        return -1;
    }
    char *text = sky_xstrdup(sky_buf_cstr(&out));
    sky_buf_free(&out);
    sky_buf_free(&eout);
    char *nl = strchr(text, '\n');
    char *cache = nl ? nl + 1 : NULL;
    if (nl)
        *nl = 0;
    char *end = cache ? strchr(cache, '\n') : NULL;
    if (end)
        *end = 0;
    if (!cache || cache[0] != '/') {
        snprintf(err, errlen, "%s (%s): cannot tell its cache folder (is HOME set there?)", node->name, node->host);
        free(text);
        return -1;
    }
    if (check_platform(node, text, err, errlen) != 0) {
        free(text);
        return -1;
    }
    sn->cache = sky_xstrdup(cache);
    free(text);

    const char *worker = remote_binary(sp, node, pr->worker_path, err, errlen);
    if (!worker)
        return -1;
    /* The keeper, in a node folder of its own; its first line is "PID DIR". */
    sky_buf cmd = SKY_BUF_INIT;
    sky_buf_append_str(&cmd, "d=$(mktemp -d \"${TMPDIR:-/tmp}/skyrun-XXXXXX\") && mkdir -m 700 \"$d/work\" "
                             "\"$d/private\" && echo \"$$ $d\" && exec ");
    ssh_shell_quote(&cmd, worker);
    sky_buf_append_str(&cmd, " --keeper \"$d\" --stdio --shared-mounts");
    int to, from, diag;
    char header[600] = "";
    sn->keeper_chan = ssh_conn_exec(sn->conn, sky_buf_cstr(&cmd), &to, &from, &diag, header, sizeof header,
                                    keeper_now() + COMMAND_SECONDS, why, sizeof why);
    sky_buf_free(&cmd);
    if (sn->keeper_chan < 0) {
        snprintf(err, errlen, "%s (%s): cannot start its keeper: %s", node->name, node->host, why);
        return -1;
    }
    close(diag);   /* the keeper reports through records; its stray stderr is dropped */
    char *dir = strchr(header, ' ');
    if (!dir || dir[1] != '/') {
        close(to);
        close(from);
        snprintf(err, errlen, "%s (%s): cannot make a node folder in its temporary folder", node->name, node->host);
        return -1;
    }
    dir++;
    sn->kc.in_fd = from;
    sn->kc.out_fd = to;
    char kwhy[300] = "";
    if (keeper_client_next(&sn->kc, keeper_now() + KEEPER_REPLY_SECONDS, kwhy, sizeof kwhy) != 0 ||
        !control_is(&sn->kc.rec, 0, "ready") || sn->kc.rec.n < 3) {
        snprintf(err, errlen, "%s (%s): its keeper (%s) did not start: %s", node->name, node->host, worker,
                 kwhy[0] ? kwhy : "no ready record");
        return -1;
    }
    const control_record *rec = &sn->kc.rec;
    node->own_mounts = control_is(rec, 1, "1");
    node->privileged = control_is(rec, 2, "1");
    if (rec->n > 3)
        snprintf(node->why_shared, sizeof node->why_shared, "%.*s", (int)rec->len[3], rec->field[3]);
    node->shares_host_files = 0;
    size_t dn = strlen(dir) + 16;
    node->workdir = sky_xmalloc(dn);
    snprintf(node->workdir, dn, "%s/work", dir);
    node->private_dir = sky_xmalloc(dn);
    snprintf(node->private_dir, dn, "%s/private", dir);
    return 0;
}

static int keeper_say(ssh_node *sn, const char *what, const char *kind, long pid, int wait_answer)
{
    sky_buf req = SKY_BUF_INIT;
    char text[32];
    snprintf(text, sizeof text, "%ld", pid);
    control_field_str(&req, what);
    if (kind)
        control_field_str(&req, kind);
    control_field_str(&req, text);
    control_end(&req);
    char err[300];
    int rc = wait_answer ? keeper_client_request(&sn->kc, &req, err, sizeof err) : keeper_client_send(&sn->kc, &req);
    sky_buf_free(&req);
    return rc;
}

static int spawn(sky_provider *pr, sky_node *node, const sky_spawn *spec, sky_proc *proc, char *err, size_t errlen)
{
    ssh_provider *sp = (ssh_provider *)pr;
    ssh_node *sn = node->data;
    const char *argv0 = spec->argv[0];
    if (is_shippable(argv0) && !(argv0 = remote_binary(sp, node, argv0, err, errlen)))
        return -1;
    for (size_t i = 0; spec->env && spec->env[i]; i++)
        if (strchr(spec->env[i], '\n') || !strchr(spec->env[i], '=')) {
            snprintf(err, errlen, "%s: an environment entry holds a newline or no '='", node->name);
            return -1;
        }
    /* cd; say the pid (or that the program is missing); read the
     * environment from stdin (never argv: process lists show argv); exec. */
    sky_buf cmd = SKY_BUF_INIT;
    sky_buf_append_str(&cmd, "cd ");
    ssh_shell_quote(&cmd, spec->cwd ? spec->cwd : node->workdir);
    sky_buf_append_str(&cmd, " || exit 127; command -v ");
    ssh_shell_quote(&cmd, argv0);
    sky_buf_append_str(&cmd, " >/dev/null 2>&1 || { echo '!No such file or directory'; exit 127; }; echo $$; ");
    if (spec->env && spec->env[0])
        sky_buf_append_str(&cmd, "while IFS= read -r skyrun_kv && [ -n \"$skyrun_kv\" ]; do export \"$skyrun_kv\"; "
                                 "done; unset skyrun_kv; ");
    sky_buf_append_str(&cmd, "exec");
    for (size_t i = 0; spec->argv[i]; i++) {
        sky_buf_append_byte(&cmd, ' ');
        ssh_shell_quote(&cmd, i == 0 ? argv0 : spec->argv[i]);
    }
    char header[300] = "", why[600];
    int to, from, diag;
    int id = ssh_conn_exec(sn->conn, sky_buf_cstr(&cmd), &to, &from, &diag, header, sizeof header,
                           keeper_now() + COMMAND_SECONDS, why, sizeof why);
    sky_buf_free(&cmd);
    if (id < 0) {
        snprintf(err, errlen, "%s (%s): %s", node->name, node->host, why);
        return -1;
    }
    char *end;
    long pid = strtol(header, &end, 10);
    if (header[0] == '!' || pid <= 1 || *end) {
        close(to);
        close(from);
        close(diag);
        ssh_conn_release(sn->conn, id);
        snprintf(err, errlen, "%s: %s",  spec->argv[0],
                 header[0] == '!' ? header + 1 : "could not start (its folder is missing?)");
        return -1;
    }
    if (spec->env && spec->env[0]) {
        sky_buf envb = SKY_BUF_INIT;
        for (size_t i = 0; spec->env[i]; i++)
            sky_buf_printf(&envb, "%s\n", spec->env[i]);
        sky_buf_append_byte(&envb, '\n');
        size_t done = 0;
        sky_sigpipe_guard g;
        sky_sigpipe_hold(&g);
        while (done < envb.len) {
            ssize_t w = write(to, envb.data + done, envb.len - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        sky_sigpipe_release(&g);
        explicit_bzero(envb.data, envb.len);
        sky_buf_free(&envb);
    }
    /* If the host loses us, the keeper ends it. */
    keeper_say(sn, "track", "pid", pid, 1);
    proc->to = to;
    proc->from = from;
    proc->diag = diag;
    proc->id = pid;
    proc->handle = (void *)(intptr_t)id;
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
    if (proc->id <= 0 || !proc->handle) {
        snprintf(how, howlen, "was never started");
        return -1;
    }
    int id = (int)(intptr_t)proc->handle;
    int code = ssh_conn_wait_exit(sn->conn, id, deadline, how, howlen);
    if (code == -2) {
        keeper_say(sn, "kill", NULL, proc->id, 0);
        code = ssh_conn_wait_exit(sn->conn, id, keeper_now() + KILL_SECONDS, how, howlen);
        if (code == -2) {
            snprintf(how, howlen, "was lost");
            code = -1;
        }
    }
    if (!ssh_conn_lost(sn->conn)[0])
        keeper_say(sn, "untrack", "pid", proc->id, 1);
    ssh_conn_release(sn->conn, id);
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
        sky_buf req = SKY_BUF_INIT;
        control_field_str(&req, "stop");
        control_end(&req);
        char err[300] = "";
        double until = keeper_now() + STOP_SECONDS;
        if (keeper_client_send(&sn->kc, &req) == 0) {
            while (keeper_client_next(&sn->kc, until, err, sizeof err) == 0 && !control_is(&sn->kc.rec, 0, "stopped"))
                ;
        }
        sky_buf_free(&req);
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
    sp->base.name = "ssh";
    sp->base.start_node = start_node;
    sp->base.spawn = spawn;
    sp->base.end = end_proc;
    sp->base.request = keeper_request;
    sp->base.stop_node = stop_node;
    sp->base.free = free_provider;
    return &sp->base;
}
