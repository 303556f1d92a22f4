/*
 * node_setup: images and volumes on every node (see node_setup.h).
 *
 * Phases, each on all nodes at once, each a barrier:
 *   checks     keeper probe (FUSE, who runs there) where volumes mount;
 *              apt packages present (dpkg-query) where nothing installs
 *   setup      each image.setup command, in order (sh -c, in the workdir,
 *              with image.env), its output streamed with "[node N] "
 *   includes   is the content-addressed folder on the node? if not, a tar
 *              of the includes is unpacked there (atomic rename)
 *   volumes    per volume: the mount point made (the keeper tracks what it
 *              created), then s3fs with a 0600 credentials file in the
 *              node's private folder (mode "mount"), or a download into
 *              the private folder bind-mounted at the mount point (mode
 *              "copy"); each mount is listed before workers start
 * Teardown: writable copies uploaded back (what changed since the
 * download), volumes unmounted, credentials removed; the keeper then
 * removes the mount points it created with the node.
 */
#include "compute/node_setup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compute/node_exec.h"
#include "compute/tar.h"
#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/sigpipe.h"

#define CHECK_SECONDS 60.0          /* probes, s3fs start-up, a listing, shipping includes */
#define MAX_INCLUDE_BYTES (64u << 20)

/* ---- what a volume is, once checked ------------------------------------------ */

typedef struct manifest_entry {
    char *rel;                      /* path under the copy */
    long long size;
    long long mtime_ns;
} manifest_entry;

typedef struct volume {
    char *bucket, *prefix, *mount;  /* normalised: prefix "" or "a/b/", mount "/x/y" */
    int read_only;
    enum sky_volume_mode mode;
    s3_client *storage;
    /* per node */
    int *mounted;                   /* the node holds it (unmount at teardown) */
    char **secret_file;             /* the credentials file written there, or NULL */
    char **copy_dir;                /* mode copy: the node's copy */
    manifest_entry **manifest;      /* mode copy, writable: what was downloaded */
    size_t *nmanifest;
} volume;

struct sky_node_setup {
    char **apt, **env, **setup;
    char **include_paths;
    size_t napt, nenv, nsetup, nincludes;
    volume *volumes;
    size_t nvolumes;
    int nnodes;
    char **include_dir;             /* per node: the folder of the includes */
    sky_buf includes_tar;           /* built once */
    char includes_hash[65];
    node_output output;
};

static char **copy_list(const char *const *v, size_t *n)
{
    *n = 0;
    while (v && v[*n])
        (*n)++;
    char **c = sky_xcalloc(*n + 1, sizeof *c);
    for (size_t i = 0; i < *n; i++)
        c[i] = sky_xstrdup(v[i]);
    return c;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- checks before any node starts -------------------------------------------- */

/* Folders a volume may not hide: the system's own, and the roots of the
 * places people and programs keep things. */
static int is_system_folder(const char *m)
{
    static const char *const exact[] = { "/", "/home", "/mnt", "/media", "/opt", "/root", "/srv", "/tmp",
                                         "/var", "/run", "/var/tmp", NULL };
    static const char *const trees[] = { "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64",
                                         "/libx32", "/proc", "/sbin", "/sys", "/usr", "/run/", NULL };
    for (size_t i = 0; exact[i]; i++)
        if (strcmp(m, exact[i]) == 0)
            return 1;
    for (size_t i = 0; trees[i]; i++) {
        size_t n = strlen(trees[i]);
        if (strncmp(m, trees[i], n) == 0 && (m[n] == 0 || m[n] == '/' || trees[i][n - 1] == '/'))
            return 1;
    }
    return 0;
}

/* A slash-separated path as its parts, each followed by a slash ("/a//b/"
 * -> "a/b/"): 0, or PATH_DOT when a part is "." or "..", or PATH_LONG when
 * out (cap bytes) cannot hold it. */
enum { PATH_OK, PATH_DOT, PATH_LONG };
static int path_parts(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return PATH_DOT;
        if (o + n + 2 > cap)
            return PATH_LONG;
        memcpy(out + o, p, n);
        o += n;
        out[o++] = '/';
        p += n;
    }
    out[o] = 0;
    return PATH_OK;
}

/* "/data//x/" -> "/data/x"; refuses relative paths and "." or ".." parts. */
static int normalise_mount(const char *in, char *out, size_t cap, char *err, size_t errlen)
{
    if (!in || in[0] != '/') {
        snprintf(err, errlen, "mount '%s' must be an absolute path (like \"/data\")", in ? in : "");
        return -1;
    }
    out[0] = '/';
    int rc = cap > 2 ? path_parts(in, out + 1, cap - 1) : PATH_LONG;
    if (rc == PATH_DOT) {
        snprintf(err, errlen, "mount '%s' must not contain '.' or '..'", in);
        return -1;
    }
    if (rc == PATH_LONG) {
        snprintf(err, errlen, "mount '%.100s…' is too long", in);
        return -1;
    }
    size_t len = strlen(out);
    if (len > 1)
        out[len - 1] = 0;   /* no trailing slash, "/" stays "/" */
    if (strchr(out, '\n')) {
        snprintf(err, errlen, "mount must not contain a newline");
        return -1;
    }
    return 0;
}

/* "/iris//a/" -> "iris/a/"; "" stays ""; refuses "." and ".." parts. */
static int normalise_prefix(const char *in, char *out, size_t cap, const char *mount, char *err, size_t errlen)
{
    int rc = path_parts(in ? in : "", out, cap);
    if (rc == PATH_DOT)
        snprintf(err, errlen, "volume %s: prefix '%s' must not contain '.' or '..' (it could escape)", mount, in);
    else if (rc == PATH_LONG)
        snprintf(err, errlen, "volume %s: prefix is too long", mount);
    return rc == PATH_OK ? 0 : -1;
}

static int stop_at_first(void *ud, const s3_object_info *obj)
{
    (void)ud;
    (void)obj;
    return 1;
}

static int check_bucket(const volume *v, char *err, size_t errlen)
{
    s3_error e;
    memset(&e, 0, sizeof e);
    if (s3_list(v->storage, v->bucket, v->prefix, 0, stop_at_first, NULL, &e) == 0)
        return 0;
    if (strcmp(e.code, "NoSuchBucket") == 0)
        snprintf(err, errlen, "volume %s: bucket '%s' does not exist (NoSuchBucket)", v->mount, v->bucket);
    else if (strcmp(e.code, "AccessDenied") == 0 || e.status == 403)
        snprintf(err, errlen, "volume %s: the credentials cannot list bucket '%s' (%s)", v->mount, v->bucket,
                 e.code[0] ? e.code : "403 Forbidden");
    else
        snprintf(err, errlen, "volume %s: %s", v->mount, e.text);
    return -1;
}

sky_node_setup *sky_node_setup_new(const sky_image *image, const sky_volume *volumes, size_t nvolumes,
                                   char *err, size_t errlen)
{
    sky_node_setup *s = sky_xcalloc(1, sizeof *s);
    sky_image none = { 0 };
    if (!image)
        image = &none;
    s->apt = copy_list(image->apt, &s->napt);
    s->env = copy_list(image->env, &s->nenv);
    s->setup = copy_list(image->setup, &s->nsetup);
    s->include_paths = copy_list(image->includes, &s->nincludes);
    for (size_t i = 0; i < s->nenv; i++) {
        const char *eq = strchr(s->env[i], '=');
        if (!eq || eq == s->env[i]) {
            snprintf(err, errlen, "image env: '%s' is not NAME=value", s->env[i]);
            goto fail;
        }
    }
    for (size_t i = 0; i < s->napt; i++) {
        if (!s->apt[i][0] || strspn(s->apt[i], "abcdefghijklmnopqrstuvwxyz0123456789+-.:=") != strlen(s->apt[i])) {
            snprintf(err, errlen, "image apt: '%s' is not a package name", s->apt[i]);
            goto fail;
        }
    }
    s->volumes = sky_xcalloc(nvolumes ? nvolumes : 1, sizeof *s->volumes);
    s->nvolumes = nvolumes;
    for (size_t i = 0; i < nvolumes; i++) {
        const sky_volume *in = &volumes[i];
        volume *v = &s->volumes[i];
        char mount[1024], prefix[1024];
        if (normalise_mount(in->mount, mount, sizeof mount, err, errlen) != 0)
            goto fail;
        if (is_system_folder(mount)) {
            snprintf(err, errlen, "volume %s: mount must not be / or a system folder (choose one like /data)", mount);
            goto fail;
        }
        if (!in->bucket || !in->bucket[0]) {
            snprintf(err, errlen, "volume %s: a bucket is required", mount);
            goto fail;
        }
        if (normalise_prefix(in->prefix, prefix, sizeof prefix, mount, err, errlen) != 0)
            goto fail;
        if (!in->storage) {
            snprintf(err, errlen, "volume %s: no storage to reach bucket '%s'", mount, in->bucket);
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            const char *other = s->volumes[j].mount;
            size_t a = strlen(other), b = strlen(mount);
            if (strcmp(other, mount) == 0) {
                snprintf(err, errlen, "volumes %zu and %zu both mount at %s", j + 1, i + 1, mount);
                goto fail;
            }
            if ((a < b && strncmp(mount, other, a) == 0 && mount[a] == '/') ||
                (b < a && strncmp(other, mount, b) == 0 && other[b] == '/')) {
                snprintf(err, errlen, "volume mounts %s and %s are nested (one would hide the other)",
                         other, mount);
                goto fail;
            }
        }
        v->bucket = sky_xstrdup(in->bucket);
        v->prefix = sky_xstrdup(prefix);
        v->mount = sky_xstrdup(mount);
        v->read_only = in->read_only;
        v->mode = in->mode;
        v->storage = in->storage;
    }
    for (size_t i = 0; i < nvolumes; i++)
        if (check_bucket(&s->volumes[i], err, errlen) != 0)
            goto fail;
    return s;
fail:
    sky_node_setup_free(s);
    return NULL;
}

int sky_node_setup_needs_mounts(const sky_node_setup *s) { return s && s->nvolumes > 0; }

int sky_node_setup_wants_c_modules(const sky_node_setup *s) { return s && s->napt > 0; }

const char *const *sky_node_setup_env(const sky_node_setup *s)
{
    return s ? (const char *const *)s->env : NULL;
}

const char *sky_node_setup_include_dir(const sky_node_setup *s, int node)
{
    return s && s->include_dir && node < s->nnodes && s->include_dir[node] ? s->include_dir[node] : "";
}

/* ---- the keeper ------------------------------------------------------------- */

static int ask(sky_provider *pr, sky_node *node, const control_record **answer, char *err, size_t errlen,
               const char *verb, const char *a, const char *b, const char *c, size_t c_len)
{
    sky_buf req = SKY_BUF_INIT;
    control_field_str(&req, verb);
    if (a)
        control_field_str(&req, a);
    if (b)
        control_field_str(&req, b);
    if (c)
        control_field(&req, c, c_len);
    control_end(&req);
    const control_record *dummy;
    int rc = pr->request(pr, node, &req, answer ? answer : &dummy, err, errlen);
    explicit_bzero(req.data, req.len);   /* it may have carried credentials */
    sky_buf_free(&req);
    return rc;
}

/* ---- phases ------------------------------------------------------------------ */

/* Which of pkgs each node lacks ("a, b" into missing[i]; empty: none).
 * Returns 0; -1 with err when interrupted, or when a node cannot tell
 * (no dpkg-query) and soft is not set (soft: such a node lacks nothing). */
static int apt_missing(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int n, const char *const *pkgs,
                       size_t npkgs, int soft, sky_buf *missing, char *err, size_t errlen)
{
    const char **argv = sky_xcalloc(npkgs + 4, sizeof *argv);
    argv[0] = "dpkg-query";
    argv[1] = "-W";
    argv[2] = "-f=${Package} ${Status}\\n";
    for (size_t i = 0; i < npkgs; i++)
        argv[3 + i] = pkgs[i];
    node_step *steps = node_steps_same(n, (const char *const *)argv);
    int rc = node_steps_run(&s->output, pr, nodes, n, steps, NULL, CHECK_SECONDS);
    if (rc != 0)
        snprintf(err, errlen, "interrupted while checking image.apt");
    for (int i = 0; rc == 0 && i < n; i++) {
        node_step *st = &steps[i];
        if (!st->active) {
            if (soft)
                continue;
            snprintf(err, errlen, "%s: image.apt needs a Debian-like node with dpkg-query (%s)",
                     nodes[i].name, st->spawn_err);
            rc = -1;
            break;
        }
        for (size_t p = 0; p < npkgs; p++) {
            char want[300];
            snprintf(want, sizeof want, "%s install ok installed", pkgs[p]);
            const char *out = sky_buf_cstr(&st->out);
            int found = 0;
            for (const char *line = out; *line;) {
                size_t len = strcspn(line, "\n");
                /* "name:arch install ok installed" also counts */
                size_t nl = strlen(pkgs[p]);
                if ((len == strlen(want) && strncmp(line, want, len) == 0) ||
                    (strncmp(line, pkgs[p], nl) == 0 && line[nl] == ':' &&
                     len > 22 && strncmp(line + len - 22, " install ok installed", 21) == 0))
                    found = 1;
                line += len + (line[len] == '\n');
            }
            if (!found)
                sky_buf_printf(&missing[i], "%s%s", missing[i].len ? ", " : "", pkgs[p]);
        }
    }
    for (int i = 0; i < n; i++)
        node_step_free(&steps[i]);
    free(steps);
    free(argv);
    return rc;
}

/* Packages pkgs present on every node. Where some are missing: a node of
 * this machine (localhost) gets an error naming them — nothing is ever
 * installed on the user's own machine —, a node that is a machine of its
 * own (installs_packages) gets them from apt-get, through `sudo -n` when
 * the node's user is not root, with one `apt-get update` if the first try
 * fails. what: "image.apt" or "volumes (s3fs)", for messages. */
static int ensure_packages(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int n, const char *const *pkgs,
                           size_t npkgs, int soft, const char *what, char *err, size_t errlen)
{
    sky_buf *missing = sky_xcalloc((size_t)n, sizeof *missing);
    int rc = apt_missing(s, pr, nodes, n, pkgs, npkgs, soft, missing, err, errlen);
    int install = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!missing[i].len)
            continue;
        if (!nodes[i].installs_packages) {
            const char *list = sky_buf_cstr(&missing[i]);
            snprintf(err, errlen,
                     "%s: %s: missing package%s %s (this provider does not install packages on your "
                     "machine: install them, e.g. sudo apt-get install %s)",
                     nodes[i].name, what, strchr(list, ',') ? "s" : "", list, list);
            rc = -1;
        }
        install = 1;
    }
    if (rc == 0 && install) {
        /* One install command per node, the missing packages as its arguments. */
        static const char script[] =
            "export DEBIAN_FRONTEND=noninteractive; s=''; [ \"$(id -u)\" = 0 ] || s='sudo -n'; "
            "$s apt-get install -y -q --no-install-recommends \"$@\" || "
            "{ $s apt-get update -q -o Acquire::Retries=0 -o Acquire::http::Timeout=20 && "
            "$s apt-get install -y -q --no-install-recommends \"$@\"; }";
        node_step *steps = sky_xcalloc((size_t)n, sizeof *steps);
        const char ***argvs = sky_xcalloc((size_t)n, sizeof *argvs);
        for (int i = 0; i < n; i++) {
            if (!missing[i].len)
                continue;
            size_t k = 0, cap = npkgs + 5;
            argvs[i] = sky_xcalloc(cap, sizeof **argvs);
            argvs[i][k++] = "sh";
            argvs[i][k++] = "-c";
            argvs[i][k++] = script;
            argvs[i][k++] = "sh";
            char *list = (char *)sky_buf_cstr(&missing[i]);   /* "a, b": cut in place at the commas */
            for (char *tok = list, *end = list + missing[i].len; tok < end && k + 1 < cap;) {
                char *comma = memchr(tok, ',', (size_t)(end - tok));
                if (comma)
                    *comma = 0;
                argvs[i][k++] = tok;
                tok = comma ? comma + 2 : end;
            }
            steps[i] = (node_step){ .active = 1, .argv = argvs[i], .show = 1 };
        }
        if (node_steps_run(&s->output, pr, nodes, n, steps, NULL, 0) != 0) {
            snprintf(err, errlen, "interrupted while installing packages for %s", what);
            rc = -1;
        }
        for (int i = 0; rc == 0 && i < n; i++) {
            char phase[200];
            snprintf(phase, sizeof phase, "%s (apt-get install on %s)", what, nodes[i].host ? nodes[i].host : "?");
            if (steps[i].active && !node_step_ok(&steps[i], &nodes[i], phase, err, errlen))
                rc = -1;
        }
        for (int i = 0; i < n; i++) {
            node_step_free(&steps[i]);
            free(argvs[i]);
        }
        free(steps);
        free(argvs);
    }
    for (int i = 0; i < n; i++)
        sky_buf_free(&missing[i]);
    free(missing);
    return rc;
}

static int check_apt(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int n, char *err, size_t errlen)
{
    if (!s->napt)
        return 0;
    return ensure_packages(s, pr, nodes, n, (const char *const *)s->apt, s->napt, 0, "image.apt", err, errlen);
}

/* s3fs where a volume is mounted on nodes that are machines of their own
 * (a node without dpkg is left to the mount's own "has no s3fs" error). */
static int ensure_s3fs(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int n, char *err, size_t errlen)
{
    int mounts = 0, remote = 0;
    for (size_t k = 0; k < s->nvolumes; k++)
        mounts |= s->volumes[k].mode != SKY_VOLUME_COPY;
    for (int i = 0; i < n; i++)
        remote |= nodes[i].installs_packages;
    if (!mounts || !remote)
        return 0;
    static const char *const s3fs[] = { "s3fs" };
    sky_node *only = sky_xcalloc((size_t)n, sizeof *only);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (nodes[i].installs_packages)
            only[m++] = nodes[i];
    int rc = ensure_packages(s, pr, only, m, s3fs, 1, 1, "volumes (s3fs)", err, errlen);
    free(only);
    return rc;
}

static int run_setup_commands(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int n, char *err,
                              size_t errlen)
{
    for (size_t c = 0; c < s->nsetup; c++) {
        const char *argv[] = { "/bin/sh", "-c", s->setup[c], NULL };
        node_step *steps = sky_xcalloc((size_t)n, sizeof *steps);
        for (int i = 0; i < n; i++) {
            steps[i].active = 1;
            steps[i].argv = argv;
            steps[i].show = 1;
        }
        int rc = node_steps_run(&s->output, pr, nodes, n, steps, (const char *const *)s->env, 0);
        if (rc != 0)
            snprintf(err, errlen, "interrupted during image setup command %zu", c + 1);
        for (int i = 0; rc == 0 && i < n; i++) {
            char phase[160];
            snprintf(phase, sizeof phase, "image setup command %zu (%.100s)", c + 1, s->setup[c]);
            if (!node_step_ok(&steps[i], &nodes[i], phase, err, errlen))
                rc = -1;
        }
        for (int i = 0; i < n; i++)
            node_step_free(&steps[i]);
        free(steps);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- includes ------------------------------------------------------------------ */

typedef struct include_file {
    char *rel;                      /* name in the archive */
    char *path;                     /* on this machine */
    mode_t mode;
    int is_dir;
} include_file;

typedef struct include_set {
    include_file *v;
    size_t n, cap;
    size_t bytes;
} include_set;

static void include_add(include_set *set, const char *rel, const char *path, mode_t mode, int is_dir)
{
    if (set->n == set->cap) {
        set->cap = set->cap ? 2 * set->cap : 32;
        set->v = sky_xrealloc(set->v, set->cap * sizeof *set->v);
    }
    set->v[set->n++] = (include_file){ sky_xstrdup(rel), sky_xstrdup(path), mode, is_dir };
}

static int collect(include_set *set, const char *path, const char *rel, int depth, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "image.includes: %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISREG(st.st_mode)) {
        include_add(set, rel, path, st.st_mode & 0777, 0);
        set->bytes += (size_t)st.st_size;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return 0;   /* sockets, devices: not something to ship */
    if (depth > 32) {
        snprintf(err, errlen, "image.includes: %s: folders nested too deep", path);
        return -1;
    }
    include_add(set, rel, path, st.st_mode & 0777, 1);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "image.includes: %s: %s", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (nn == cap) {
            cap = cap ? 2 * cap : 16;
            names = sky_xrealloc(names, cap * sizeof *names);
        }
        names[nn++] = sky_xstrdup(e->d_name);
    }
    closedir(d);
    /* Sorted: the archive, and so its hash, does not depend on readdir's order. */
    for (size_t i = 1; i < nn; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    int rc = 0;
    for (size_t i = 0; i < nn; i++) {
        if (rc == 0) {
            size_t pl = strlen(path) + strlen(names[i]) + 2, rl = strlen(rel) + strlen(names[i]) + 2;
            char *p = sky_xmalloc(pl), *r = sky_xmalloc(rl);
            snprintf(p, pl, "%s/%s", path, names[i]);
            snprintf(r, rl, "%s/%s", rel, names[i]);
            rc = collect(set, p, r, depth + 1, err, errlen);
            free(p);
            free(r);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int read_whole(const char *path, sky_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (;;) {
        sky_buf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
    }
    close(fd);
    return 0;
}

/* The includes as one archive (files and folders at the top level by their
 * own names) and the SHA-256 of what matters in it: names, modes, bytes. */
static int build_includes(sky_node_setup *s, char *err, size_t errlen)
{
    include_set set = { 0 };
    int rc = 0;
    for (size_t i = 0; i < s->nincludes && rc == 0; i++) {
        const char *p = s->include_paths[i];
        size_t len = strlen(p);
        while (len > 1 && p[len - 1] == '/')
            len--;
        char *trimmed = sky_xstrndup(p, len);
        const char *base = strrchr(trimmed, '/');
        base = base ? base + 1 : trimmed;
        if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
            snprintf(err, errlen, "image.includes: '%s' has no name to ship it under", p);
            rc = -1;
        } else {
            for (size_t j = 0; j < set.n && rc == 0; j++)
                if (strcmp(set.v[j].rel, base) == 0) {
                    snprintf(err, errlen, "image.includes: two includes are named '%s'", base);
                    rc = -1;
                }
            if (rc == 0)
                rc = collect(&set, trimmed, base, 0, err, errlen);
        }
        free(trimmed);
    }
    if (rc == 0 && set.bytes > MAX_INCLUDE_BYTES) {
        snprintf(err, errlen, "image.includes: %zu MiB of files; includes are for Lua code (at most %u MiB): "
                 "pass data through a volume", set.bytes >> 20, MAX_INCLUDE_BYTES >> 20);
        rc = -1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        sky_oom("EVP_MD_CTX_new");
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    sky_buf data = SKY_BUF_INIT;
    for (size_t i = 0; i < set.n && rc == 0; i++) {
        include_file *f = &set.v[i];
        char head[64];
        int hl = snprintf(head, sizeof head, "%c %o ", f->is_dir ? 'd' : 'f', (unsigned)f->mode);
        EVP_DigestUpdate(md, head, (size_t)hl);
        EVP_DigestUpdate(md, f->rel, strlen(f->rel) + 1);
        if (f->is_dir) {
            if (tar_add_dir(&s->includes_tar, f->rel, f->mode | 0700, 0) != 0) {
                snprintf(err, errlen, "image.includes: the name %s is too long", f->rel);
                rc = -1;
            }
            continue;
        }
        sky_buf_reset(&data);
        if (read_whole(f->path, &data) != 0) {
            snprintf(err, errlen, "image.includes: cannot read %s: %s", f->path, strerror(errno));
            rc = -1;
            break;
        }
        char size[32];
        int sl = snprintf(size, sizeof size, "%zu ", data.len);
        EVP_DigestUpdate(md, size, (size_t)sl);
        EVP_DigestUpdate(md, data.data ? (const void *)data.data : "", data.len);
        if (tar_add_file(&s->includes_tar, f->rel, f->mode | 0400, 0, data.data, data.len) != 0) {
            snprintf(err, errlen, "image.includes: the name %s is too long", f->rel);
            rc = -1;
        }
    }
    unsigned char digest[32];
    unsigned dl = 0;
    EVP_DigestFinal_ex(md, digest, &dl);
    EVP_MD_CTX_free(md);
    for (unsigned i = 0; i < 32; i++)
        snprintf(s->includes_hash + 2 * i, 3, "%02x", digest[i]);
    tar_finish(&s->includes_tar);
    sky_buf_free(&data);
    for (size_t i = 0; i < set.n; i++) {
        free(set.v[i].rel);
        free(set.v[i].path);
    }
    free(set.v);
    return rc;
}

/* The node's cache of includes: $XDG_CACHE_HOME or ~/.cache, else a
 * folder of the user's own under $TMPDIR. Prints the folder, and "have"
 * when it already holds this exact set. */
static const char LOOK_SCRIPT[] =
    "base=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/skyrun/includes\n"
    "mkdir -p \"$base\" 2>/dev/null && [ -w \"$base\" ] || base=${TMPDIR:-/tmp}/.skyrun-cache-$(id -u)/includes\n"
    "mkdir -p \"$base\" && chmod 700 \"$base\" || exit 1\n"
    "if [ -d \"$base/$1\" ]; then echo \"have $base/$1\"; else echo \"need $base/$1\"; fi\n";

/* Unpacks the archive on stdin into a new folder and renames it into place
 * (another pool may have done it meanwhile: then it is simply dropped). */
static const char SHIP_SCRIPT[] =
    "set -e\n"
    "dir=$1; tmp=$(mktemp -d \"$dir.tmp.XXXXXX\")\n"
    "tar -x -o -f - -C \"$tmp\"\n"
    "mv -T \"$tmp\" \"$dir\" 2>/dev/null || rm -rf \"$tmp\"\n"
    "[ -d \"$dir\" ]\n";

static int ship_includes(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int n, char *err, size_t errlen)
{
    s->include_dir = sky_xcalloc((size_t)n, sizeof *s->include_dir);
    if (!s->nincludes)
        return 0;
    if (build_includes(s, err, errlen) != 0)
        return -1;
    const char *look[] = { "/bin/sh", "-c", LOOK_SCRIPT, "sh", s->includes_hash, NULL };
    node_step *steps = node_steps_same(n, look);
    int rc = node_steps_run(&s->output, pr, nodes, n, steps, NULL, CHECK_SECONDS);
    if (rc != 0)
        snprintf(err, errlen, "interrupted while shipping image.includes");
    char **need = sky_xcalloc((size_t)n, sizeof *need);
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!node_step_ok(&steps[i], &nodes[i], "image.includes", err, errlen)) {
            rc = -1;
            break;
        }
        const char *out = sky_buf_cstr(&steps[i].out);
        size_t len = strcspn(out, "\n");
        if (len > 5 && strncmp(out, "have ", 5) == 0) {
            s->include_dir[i] = sky_xstrndup(out + 5, len - 5);
        } else if (len > 5 && strncmp(out, "need ", 5) == 0) {
            need[i] = sky_xstrndup(out + 5, len - 5);
        } else {
            node_step_error(&steps[i], &nodes[i], "image.includes", "unexpected answer from the node", err, errlen);
            rc = -1;
        }
    }
    for (int i = 0; i < n; i++)
        node_step_free(&steps[i]);
    memset(steps, 0, (size_t)n * sizeof *steps);
    const char **argvs = sky_xcalloc((size_t)n * 6, sizeof *argvs);
    int shipping = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!need[i])
            continue;
        const char **argv = &argvs[i * 6];
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = SHIP_SCRIPT;
        argv[3] = "sh";
        argv[4] = need[i];
        steps[i] = (node_step){ .active = 1, .argv = argv, .input = s->includes_tar.data,
                           .input_len = s->includes_tar.len };
        shipping = 1;
    }
    if (rc == 0 && shipping && node_steps_run(&s->output, pr, nodes, n, steps, NULL, CHECK_SECONDS) != 0) {
        snprintf(err, errlen, "interrupted while shipping image.includes");
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!need[i])
            continue;
        if (!node_step_ok(&steps[i], &nodes[i], "image.includes (unpacking)", err, errlen))
            rc = -1;
        else
            s->include_dir[i] = sky_xstrdup(need[i]);
    }
    for (int i = 0; i < n; i++) {
        node_step_free(&steps[i]);
        free(need[i]);
    }
    free(need);
    free(argvs);
    free(steps);
    return rc;
}

/* ---- volumes -------------------------------------------------------------------- */

static char *private_path(const sky_node *node, const char *what, size_t k)
{
    size_t len = strlen(node->private_dir) + strlen(what) + 32;
    char *p = sky_xmalloc(len);
    snprintf(p, len, "%s/volume-%zu%s", node->private_dir, k + 1, what);
    return p;
}

/* The mount point: made if missing (the keeper tracks and later removes
 * what it made), and empty. */
static int prepare_mount_point(sky_provider *pr, sky_node *node, const volume *v, char *err, size_t errlen)
{
    const control_record *a;
    char why[600];
    if (ask(pr, node, &a, why, sizeof why, "mkdirs", v->mount, NULL, NULL, 0) != 0) {
        int denied = strstr(why, "Permission denied") != NULL;
        snprintf(err, errlen, "volume %s: %s%s", v->mount, why,
                 denied ? " (choose a mount point this user may create, e.g. under $HOME, or run as root)" : "");
        return -1;
    }
    if (!control_is(a, 2, "1")) {
        snprintf(err, errlen, "volume %s: %s: the mount point is not empty (a volume would hide what is there)",
                 v->mount, node->name);
        return -1;
    }
    return 0;
}

static int need_own_mounts(const sky_node *node, const volume *v, char *err, size_t errlen)
{
    if (node->own_mounts && node->privileged)
        return 0;
    snprintf(err, errlen,
             "volume %s: %s cannot mount: volumes need a mount namespace of the node's own, and %s "
             "(run as root, or allow unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 "
             "and user.max_user_namespaces > 0; mode=\"copy\" needs one too)",
             v->mount, node->name, node->why_shared[0] ? node->why_shared : "it has none");
    return -1;
}

/* s3fs's -o options for a volume. */
static void s3fs_options(const volume *v, const s3_settings *st, const char *passwd, const char *log,
                         sky_buf *o)
{
    sky_buf_printf(o, "url=%s", st->endpoint ? st->endpoint : "https://s3.amazonaws.com");
    if (st->path_style)
        sky_buf_append_str(o, ",use_path_request_style");
    if (st->region && *st->region)
        sky_buf_printf(o, ",endpoint=%s", st->region);
    if (passwd)
        sky_buf_printf(o, ",passwd_file=%s", passwd);
    else if (st->session_token)
        sky_buf_append_str(o, ",use_session_token");
    else
        sky_buf_append_str(o, ",public_bucket=1");
    if (!st->verify_tls)
        sky_buf_append_str(o, ",no_check_certificate,ssl_verify_hostname=0");
    if (v->read_only)
        sky_buf_append_str(o, ",ro");
    /* s3fs goes to the background and reports to syslog: its errors go to a
     * file of the node's private folder instead, for s3fs_log_append. */
    sky_buf_printf(o, ",logfile=%s,dbglevel=err", log);
    /* Reading: large parallel ranged GETs. Metadata: cached for the pool's
     * life (the prefix is the pool's to change). See docs/PERFORMANCE.md. */
    sky_buf_append_str(o, ",parallel_count=8,multipart_size=16,max_stat_cache_size=100000"
                          ",stat_cache_expire=900,enable_noobj_cache,allow_other");
}

/* One entry of s3fs's log worth quoting: an error or a critical one, its
 * message without time stamp and source location. */
static int s3fs_log_entry(const char *line, size_t len, sky_buf *msg)
{
    /* "2026-12-04T04:22:22.900Z [CRT] s3fs.cpp:s3fs_check_service(3590): invalid …" */
    const char *end = line + len;
    const char *level = memchr(line, '[', len);
    if (len < 11 || line[4] != '-' || line[10] != 'T' || !level || end - level < 6)
        return 0;
    if (memcmp(level, "[ERR]", 5) != 0 && memcmp(level, "[CRT]", 5) != 0)
        return 0;
    const char *text = level + 5;
    for (const char *c = text; c + 2 < end; c++)
        if (c[0] == ')' && c[1] == ':' && c[2] == ' ') {
            text = c + 3;
            break;
        }
    while (text < end && *text == ' ')
        text++;
    if ((size_t)(end - text) >= 19 && memcmp(text, "change debug level", 18) == 0)
        return 0;
    sky_buf_reset(msg);
    sky_buf_append(msg, text, (size_t)(end - text));
    return 1;
}

/* Appends to err the last errors s3fs wrote to its log on node (read there
 * with tail, through the provider like any step), so that a failed mount
 * names s3fs's own reason ("invalid credentials", "bucket not found", …). */
static void s3fs_log_append(const sky_node_setup *s, sky_provider *pr, sky_node *node, const char *log,
                            char *err, size_t errlen)
{
    const char *tail[] = { "tail", "-c", "8192", log, NULL };
    node_step step = { .active = 1, .argv = tail };
    if (node_steps_run(&s->output, pr, node, 1, &step, NULL, CHECK_SECONDS) != 0 || !step.active ||
        step.status != 0 || step.out.len == 0) {
        node_step_free(&step);
        return;
    }
    enum { KEEP = 3 };
    sky_buf entries[KEEP] = { SKY_BUF_INIT, SKY_BUF_INIT, SKY_BUF_INIT };
    sky_buf current = SKY_BUF_INIT;
    size_t kept = 0;
    int in_entry = 0;
    const char *data = (const char *)step.out.data;
    for (size_t i = 0; i <= step.out.len;) {
        size_t e = i;
        while (e < step.out.len && data[e] != '\n')
            e++;
        int starts = e - i >= 11 && data[i + 4] == '-' && data[i + 10] == 'T';
        if (starts || e >= step.out.len) {
            if (in_entry) {
                sky_buf done = entries[kept % KEEP];
                entries[kept % KEEP] = current;
                current = done;
                sky_buf_reset(&current);
                kept++;
            }
            in_entry = starts && s3fs_log_entry(data + i, e - i, &current);
        } else if (in_entry && e > i) {   /* a continuation: an S3 error body */
            sky_buf_append_str(&current, " ");
            sky_buf_append(&current, data + i, e - i);
        }
        i = e + 1;
    }
    if (kept) {
        size_t used = strlen(err);
        snprintf(err + used, errlen - used, "\n  s3fs said:");
        for (size_t j = kept > KEEP ? kept - KEEP : 0; j < kept; j++) {
            used = strlen(err);
            snprintf(err + used, errlen - used, "\n    %.300s", sky_buf_cstr(&entries[j % KEEP]));
        }
        sky_redact(err);
    }
    for (size_t j = 0; j < KEEP; j++)
        sky_buf_free(&entries[j]);
    sky_buf_free(&current);
    node_step_free(&step);
}

static int mount_volumes_s3fs(sky_node_setup *s, size_t k, sky_provider *pr, sky_node *nodes, int n,
                              char *err, size_t errlen)
{
    volume *v = &s->volumes[k];
    const s3_settings *st = s3_client_settings(v->storage);
    const control_record *a;
    char why[600];
    for (int i = 0; i < n; i++) {
        if (need_own_mounts(&nodes[i], v, err, errlen) != 0)
            return -1;
        if (ask(pr, &nodes[i], &a, why, sizeof why, "probe", NULL, NULL, NULL, 0) != 0) {
            snprintf(err, errlen, "volume %s: %s", v->mount, why);
            return -1;
        }
        if (!control_is(a, 2, "ok")) {
            snprintf(err, errlen,
                     "volume %s: %s cannot use FUSE (%.*s): s3fs needs /dev/fuse (in a container: "
                     "--device /dev/fuse --cap-add SYS_ADMIN); or use mode=\"copy\"",
                     v->mount, nodes[i].name, (int)(a->n > 2 ? a->len[2] : 0), a->n > 2 ? a->field[2] : "");
            return -1;
        }
        if (prepare_mount_point(pr, &nodes[i], v, err, errlen) != 0)
            return -1;
        /* Credentials: a 0600 file in the node's private folder, never argv. */
        if (st->access_key && st->secret_key && !st->session_token) {
            v->secret_file[i] = private_path(&nodes[i], ".passwd", k);
            sky_buf line = SKY_BUF_INIT;
            sky_buf_printf(&line, "%s:%s\n", st->access_key, st->secret_key);
            int rc = ask(pr, &nodes[i], NULL, why, sizeof why, "write", v->secret_file[i], NULL,
                         (const char *)line.data, line.len);
            explicit_bzero(line.data, line.len);
            sky_buf_free(&line);
            if (rc != 0) {
                snprintf(err, errlen, "volume %s: %s", v->mount, why);
                return -1;
            }
        }
        if (ask(pr, &nodes[i], NULL, why, sizeof why, "track", "mount", v->mount, NULL, 0) != 0) {
            snprintf(err, errlen, "volume %s: %s", v->mount, why);
            return -1;
        }
    }
    /* s3fs on every node at once; it returns once the mount is made. */
    node_step *steps = sky_xcalloc((size_t)n, sizeof *steps);
    const char **argvs = sky_xcalloc((size_t)n * 6, sizeof *argvs);
    sky_buf *opts = sky_xcalloc((size_t)n, sizeof *opts);
    char **logs = sky_xcalloc((size_t)n, sizeof *logs);
    sky_buf source = SKY_BUF_INIT;
    sky_buf_printf(&source, "%s", v->bucket);
    if (v->prefix[0])
        sky_buf_printf(&source, ":/%.*s", (int)strlen(v->prefix) - 1, v->prefix);
    for (int i = 0; i < n; i++) {
        logs[i] = private_path(&nodes[i], ".s3fs.log", k);
        s3fs_options(v, st, v->secret_file[i], logs[i], &opts[i]);
        const char **argv = &argvs[i * 6];
        argv[0] = "s3fs";
        argv[1] = sky_buf_cstr(&source);
        argv[2] = v->mount;
        argv[3] = "-o";
        argv[4] = sky_buf_cstr(&opts[i]);
        steps[i] = (node_step){ .active = 1, .argv = argv };
    }
    /* A session token reaches s3fs alone, through its environment. */
    sky_buf tok[3] = { SKY_BUF_INIT, SKY_BUF_INIT, SKY_BUF_INIT };
    const char *token_env[4] = { NULL };
    if (st->session_token && st->access_key && st->secret_key) {
        sky_buf_printf(&tok[0], "AWSACCESSKEYID=%s", st->access_key);
        sky_buf_printf(&tok[1], "AWSSECRETACCESSKEY=%s", st->secret_key);
        sky_buf_printf(&tok[2], "AWSSESSIONTOKEN=%s", st->session_token);
        for (int j = 0; j < 3; j++)
            token_env[j] = sky_buf_cstr(&tok[j]);
    }
    int rc = node_steps_run(&s->output, pr, nodes, n, steps, token_env[0] ? token_env : NULL, CHECK_SECONDS);
    for (int j = 0; j < 3; j++) {
        if (tok[j].data)
            explicit_bzero(tok[j].data, tok[j].len);
        sky_buf_free(&tok[j]);
    }
    if (rc != 0)
        snprintf(err, errlen, "interrupted while mounting volume %s", v->mount);
    for (int i = 0; rc == 0 && i < n; i++) {
        node_step *stp = &steps[i];
        if (!stp->active && strstr(stp->spawn_err, "No such file")) {
            snprintf(err, errlen, "volume %s: %s has no s3fs (install it: apt-get install s3fs); "
                     "or use mode=\"copy\"", v->mount, nodes[i].name);
            rc = -1;
        } else if (!stp->active || stp->status != 0) {
            char phase[200];
            snprintf(phase, sizeof phase, "volume %s (s3fs %s)", v->mount, sky_buf_cstr(&source));
            node_step_ok(stp, &nodes[i], phase, err, errlen);
            s3fs_log_append(s, pr, &nodes[i], logs[i], err, errlen);
            rc = -1;
        } else {
            v->mounted[i] = 1;
        }
    }
    for (int i = 0; i < n; i++) {
        node_step_free(&steps[i]);
        sky_buf_free(&opts[i]);
    }
    memset(steps, 0, (size_t)n * sizeof *steps);
    /* Verified: the mount lists, and is still s3fs's afterwards. s3fs checks
     * the bucket only once it has mounted and gone to the background; when
     * that check fails it unmounts and exits, and a listing that comes after
     * would read the bare mount point and succeed. So the mount table is
     * asked too, after the listing. */
    /* (sh alone reads the mount table: a chroot may have no findmnt) */
    const char *ls[] = { "sh", "-c",
                         "ls -A -- \"$1\" >/dev/null || exit 1; [ -r /proc/self/mountinfo ] || exit 0; "
                         "while read -r _ _ _ _ mp rest; do [ \"$mp\" = \"$1\" ] || continue; "
                         "case \"$rest\" in *' - fuse.s3fs '*) exit 0;; esac; done < /proc/self/mountinfo; "
                         "echo \"$1 is no longer mounted: s3fs exited after mounting\" >&2; exit 1",
                         "sh", v->mount, NULL };
    for (int i = 0; i < n; i++)
        steps[i] = (node_step){ .active = rc == 0, .argv = ls };
    if (rc == 0 && node_steps_run(&s->output, pr, nodes, n, steps, NULL, CHECK_SECONDS) != 0) {
        snprintf(err, errlen, "interrupted while checking volume %s", v->mount);
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        char phase[200];
        snprintf(phase, sizeof phase, "volume %s (listing the mount)", v->mount);
        if (!node_step_ok(&steps[i], &nodes[i], phase, err, errlen)) {
            s3fs_log_append(s, pr, &nodes[i], logs[i], err, errlen);
            rc = -1;
        }
    }
    for (int i = 0; i < n; i++) {
        node_step_free(&steps[i]);
        free(logs[i]);
    }
    free(logs);
    sky_buf_free(&source);
    free(opts);
    free(argvs);
    free(steps);
    return rc;
}

/* A writable copy's files as downloaded: what teardown compares against. */
typedef struct walk_state {
    const char *root;
    size_t root_len;
    manifest_entry *v;
    size_t n, cap;
} walk_state;

static walk_state *g_walk;   /* nftw has no user pointer; one walk at a time */

static int walk_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode))
        return 0;
    walk_state *w = g_walk;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->v = sky_xrealloc(w->v, w->cap * sizeof *w->v);
    }
    w->v[w->n++] = (manifest_entry){ sky_xstrdup(path + w->root_len + 1), (long long)st->st_size,
                                     (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec };
    return 0;
}

static void walk(const char *root, manifest_entry **v, size_t *n)
{
    walk_state w = { root, strlen(root), NULL, 0, 0 };
    g_walk = &w;
    nftw(root, walk_entry, 16, FTW_PHYS | FTW_MOUNT);
    g_walk = NULL;
    *v = w.v;
    *n = w.n;
}

static int copy_volume(sky_node_setup *s, size_t k, sky_provider *pr, sky_node *nodes, int n,
                       char *err, size_t errlen)
{
    (void)s;
    volume *v = &s->volumes[k];
    char why[600];
    for (int i = 0; i < n; i++) {
        if (need_own_mounts(&nodes[i], v, err, errlen) != 0)
            return -1;
        if (!nodes[i].shares_host_files) {
            snprintf(err, errlen, "volume %s: %s: mode=\"copy\" is not available on the %s provider",
                     v->mount, nodes[i].name, pr->name);
            return -1;
        }
        v->copy_dir[i] = private_path(&nodes[i], "", k);
        if (ask(pr, &nodes[i], NULL, why, sizeof why, "mkdirs", v->copy_dir[i], NULL, NULL, 0) != 0) {
            snprintf(err, errlen, "volume %s: %s", v->mount, why);
            return -1;
        }
        s3_error e;
        memset(&e, 0, sizeof e);
        size_t count = 0;
        if (s3_download_prefix(v->storage, v->bucket, v->prefix, v->copy_dir[i], &count, &e) != 0) {
            snprintf(err, errlen, "volume %s: %s: copying the prefix: %s", v->mount, nodes[i].name, e.text);
            return -1;
        }
        if (!v->read_only)
            walk(v->copy_dir[i], &v->manifest[i], &v->nmanifest[i]);
        if (prepare_mount_point(pr, &nodes[i], v, err, errlen) != 0)
            return -1;
        if (ask(pr, &nodes[i], NULL, why, sizeof why, "bind", v->copy_dir[i], v->mount,
                v->read_only ? "1" : "0", 1) != 0) {
            snprintf(err, errlen, "volume %s: %s", v->mount, why);
            return -1;
        }
        v->mounted[i] = 1;
    }
    return 0;
}

int sky_node_setup_run(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int nnodes,
                       sky_setup_output out, void *out_ud, int quiet, char *err, size_t errlen)
{
    s->output = (node_output){ out, out_ud, quiet };
    s->nnodes = nnodes;
    for (size_t k = 0; k < s->nvolumes; k++) {
        volume *v = &s->volumes[k];
        v->mounted = sky_xcalloc((size_t)nnodes, sizeof *v->mounted);
        v->secret_file = sky_xcalloc((size_t)nnodes, sizeof *v->secret_file);
        v->copy_dir = sky_xcalloc((size_t)nnodes, sizeof *v->copy_dir);
        v->manifest = sky_xcalloc((size_t)nnodes, sizeof *v->manifest);
        v->nmanifest = sky_xcalloc((size_t)nnodes, sizeof *v->nmanifest);
    }
    if (check_apt(s, pr, nodes, nnodes, err, errlen) != 0 || ensure_s3fs(s, pr, nodes, nnodes, err, errlen) != 0 ||
        run_setup_commands(s, pr, nodes, nnodes, err, errlen) != 0 ||
        ship_includes(s, pr, nodes, nnodes, err, errlen) != 0)
        return -1;
    for (size_t k = 0; k < s->nvolumes; k++) {
        int rc = s->volumes[k].mode == SKY_VOLUME_COPY ? copy_volume(s, k, pr, nodes, nnodes, err, errlen)
                                                       : mount_volumes_s3fs(s, k, pr, nodes, nnodes, err, errlen);
        if (rc != 0)
            return -1;
    }
    return 0;
}

void sky_node_setup_choose_worker(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int nnodes,
                                  const char *static_path, const char *dynamic_path, const char **out)
{
    for (int i = 0; i < nnodes; i++)
        out[i] = static_path;
    if (!dynamic_path)
        return;
    const char *argv[] = { dynamic_path, "--version", NULL };
    node_step *steps = sky_xcalloc((size_t)nnodes, sizeof *steps);
    for (int i = 0; i < nnodes; i++)
        steps[i] = (node_step){ .active = 1, .argv = argv };
    if (node_steps_run(&s->output, pr, nodes, nnodes, steps, NULL, CHECK_SECONDS) == 0)
        for (int i = 0; i < nnodes; i++)
            if (steps[i].active && steps[i].status == 0 &&
                strncmp(sky_buf_cstr(&steps[i].out), "skyrun-worker ", 14) == 0)
                out[i] = dynamic_path;
    for (int i = 0; i < nnodes; i++)
        node_step_free(&steps[i]);
    free(steps);
}

/* ---- teardown ------------------------------------------------------------------ */

static const manifest_entry *find_entry(const manifest_entry *v, size_t n, const char *rel)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].rel, rel) == 0)
            return &v[i];
    return NULL;
}

/* New and changed files go up; files removed since the download are
 * removed from the bucket. Returns the number of failures (logged). */
static int upload_changes(volume *v, int node)
{
    manifest_entry *now = NULL;
    size_t nnow = 0;
    int failures = 0;
    walk(v->copy_dir[node], &now, &nnow);
    sky_buf key = SKY_BUF_INIT, path = SKY_BUF_INIT;
    for (size_t i = 0; i < nnow; i++) {
        const manifest_entry *was = find_entry(v->manifest[node], v->nmanifest[node], now[i].rel);
        if (was && was->size == now[i].size && was->mtime_ns == now[i].mtime_ns)
            continue;
        sky_buf_reset(&key);
        sky_buf_printf(&key, "%s%s", v->prefix, now[i].rel);
        sky_buf_reset(&path);
        sky_buf_printf(&path, "%s/%s", v->copy_dir[node], now[i].rel);
        s3_error e;
        memset(&e, 0, sizeof e);
        if (s3_upload_file(v->storage, v->bucket, sky_buf_cstr(&key), sky_buf_cstr(&path), NULL, &e) != 0) {
            sky_log(SKY_LOG_ERROR, "volume %s: node %d: %s", v->mount, node, e.text);
            failures++;
        }
    }
    for (size_t i = 0; i < v->nmanifest[node]; i++) {
        if (find_entry(now, nnow, v->manifest[node][i].rel))
            continue;
        sky_buf_reset(&key);
        sky_buf_printf(&key, "%s%s", v->prefix, v->manifest[node][i].rel);
        s3_error e;
        memset(&e, 0, sizeof e);
        if (s3_delete_object(v->storage, v->bucket, sky_buf_cstr(&key), &e) != 0) {
            sky_log(SKY_LOG_ERROR, "volume %s: node %d: %s", v->mount, node, e.text);
            failures++;
        }
    }
    sky_buf_free(&key);
    sky_buf_free(&path);
    for (size_t i = 0; i < nnow; i++)
        free(now[i].rel);
    free(now);
    return failures;
}

int sky_node_setup_teardown(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int nnodes)
{
    int problems = 0;
    if (!s)
        return 0;
    for (size_t k = s->nvolumes; k-- > 0;) {
        volume *v = &s->volumes[k];
        if (!v->mounted)
            continue;
        for (int i = 0; i < nnodes; i++) {
            char why[600];
            if (v->mode == SKY_VOLUME_COPY && !v->read_only && v->copy_dir[i] && v->mounted[i])
                problems += upload_changes(v, i);
            /* s3fs wrote each file when it was closed: unmounting loses nothing. */
            if (v->mounted[i] && ask(pr, &nodes[i], NULL, why, sizeof why, "umount", v->mount, NULL, NULL, 0) != 0) {
                sky_log(SKY_LOG_WARN, "volume %s: %s (its keeper detaches it)", v->mount, why);
                problems++;
            }
            v->mounted[i] = 0;
            if (v->secret_file[i] &&
                ask(pr, &nodes[i], NULL, why, sizeof why, "remove", v->secret_file[i], NULL, NULL, 0) != 0) {
                sky_log(SKY_LOG_WARN, "volume %s: %s", v->mount, why);
                problems++;
            }
        }
    }
    return problems;
}

void sky_node_setup_free(sky_node_setup *s)
{
    if (!s)
        return;
    free_list(s->apt, s->napt);
    free_list(s->env, s->nenv);
    free_list(s->setup, s->nsetup);
    free_list(s->include_paths, s->nincludes);
    for (size_t k = 0; k < s->nvolumes; k++) {
        volume *v = &s->volumes[k];
        for (int i = 0; i < s->nnodes; i++) {
            if (v->secret_file)
                free(v->secret_file[i]);
            if (v->copy_dir)
                free(v->copy_dir[i]);
            for (size_t j = 0; v->manifest && j < v->nmanifest[i]; j++)
                free(v->manifest[i][j].rel);
            if (v->manifest)
                free(v->manifest[i]);
        }
        free(v->mounted);
        free(v->secret_file);
        free(v->copy_dir);
        free(v->manifest);
        free(v->nmanifest);
        free(v->bucket);
        free(v->prefix);
        free(v->mount);
    }
    free(s->volumes);
    if (s->include_dir)
        for (int i = 0; i < s->nnodes; i++)
            free(s->include_dir[i]);
    free(s->include_dir);
    sky_buf_free(&s->includes_tar);
    free(s);
}
