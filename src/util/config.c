/*
 * config: loads skyrun.yaml with libyaml's event parser into the small tree
 * of config.h, and answers lookups on it.
 *
 * The event parser (not libyaml's document loader) is used so that limits
 * apply while parsing: an alias is refused the moment it appears, depth and
 * node count are checked per event, and nothing unbounded is ever built.
 */
#include "util/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "util/alloc.h"
#include "util/buf.h"

/* Parser state: the open containers, from the root down. */
typedef struct loader {
    const char *name;
    yaml_parser_t parser;
    sky_config_node *stack[SKY_CONFIG_MAX_DEPTH];
    size_t depth;
    char *pending_key;           /* key read in the innermost map, waiting for its value */
    sky_config_node *root;
    size_t nodes;
    int documents;
    char *err;
    size_t errlen;
} loader;

static void node_free(sky_config_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nchildren; i++)
        node_free(n->children[i]);
    free(n->children);
    free(n->key);
    if (n->value)   /* a storage profile may hold a secret key */
        explicit_bzero(n->value, strlen(n->value));
    free(n->value);
    free(n);
}

void sky_config_free(sky_config *cfg)
{
    if (!cfg)
        return;
    node_free(cfg->root);
    free(cfg->source);
    free(cfg);
}

static void fail_at(loader *l, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_at(loader *l, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!l->err || l->errlen == 0)
        return;
    n = snprintf(l->err, l->errlen, "%s:%zu:%zu: ", l->name, mark.line + 1, mark.column + 1);
    if (n < 0 || (size_t)n >= l->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *copy_text(const char *s, size_t n)
{
    char *out = sky_xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

static sky_config_node *node_new(sky_config_kind kind, yaml_mark_t mark)
{
    sky_config_node *n = sky_xcalloc(1, sizeof *n);
    n->kind = kind;
    n->line = (int)mark.line + 1;
    n->column = (int)mark.column + 1;
    return n;
}

static void append_child(sky_config_node *parent, sky_config_node *child)
{
    parent->children = sky_xrealloc(parent->children,
                                    (parent->nchildren + 1) * sizeof *parent->children);
    parent->children[parent->nchildren++] = child;
}

/* Puts a finished node (scalar) or a just-opened container where it
 * belongs: the document root, the next item of a sequence, or the value of
 * the pending key of a map. A scalar seen in a map with no pending key is
 * that key. Returns 1 when the node was consumed as a map key (and freed),
 * 0 when attached, -1 on error (node freed). */
static int place_node(loader *l, sky_config_node *n, yaml_mark_t mark)
{
    sky_config_node *parent = l->depth ? l->stack[l->depth - 1] : NULL;

    if (!parent) {
        l->root = n;
        return 0;
    }
    if (parent->kind == SKY_CONFIG_SEQ) {
        append_child(parent, n);
        return 0;
    }
    if (!l->pending_key) {
        if (n->kind != SKY_CONFIG_SCALAR) {
            fail_at(l, mark, "a map key must be a plain value, not a %s",
                    n->kind == SKY_CONFIG_MAP ? "map" : "list");
            node_free(n);
            return -1;
        }
        if (sky_config_child(parent, n->value)) {
            fail_at(l, mark, "duplicate key '%s'", n->value);
            node_free(n);
            return -1;
        }
        l->pending_key = n->value;
        n->value = NULL;
        node_free(n);
        return 1;
    }
    n->key = l->pending_key;
    l->pending_key = NULL;
    append_child(parent, n);
    return 0;
}

static int count_node(loader *l, yaml_mark_t mark)
{
    if (++l->nodes > SKY_CONFIG_MAX_NODES) {
        fail_at(l, mark, "more than %d values; refusing to load", SKY_CONFIG_MAX_NODES);
        return -1;
    }
    return 0;
}

static int on_scalar(loader *l, yaml_event_t *ev)
{
    sky_config_node *n;

    if (count_node(l, ev->start_mark) != 0)
        return -1;
    n = node_new(SKY_CONFIG_SCALAR, ev->start_mark);
    n->value = copy_text((const char *)ev->data.scalar.value, ev->data.scalar.length);
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (strlen(n->value) != ev->data.scalar.length) {
        fail_at(l, ev->start_mark, "value contains a NUL character");
        node_free(n);
        return -1;
    }
    return place_node(l, n, ev->start_mark) < 0 ? -1 : 0;
}

static int on_container_start(loader *l, yaml_event_t *ev, sky_config_kind kind)
{
    sky_config_node *n;

    if (count_node(l, ev->start_mark) != 0)
        return -1;
    if (l->depth >= SKY_CONFIG_MAX_DEPTH) {
        fail_at(l, ev->start_mark, "nested deeper than %d levels", SKY_CONFIG_MAX_DEPTH);
        return -1;
    }
    n = node_new(kind, ev->start_mark);
    if (place_node(l, n, ev->start_mark) != 0)
        return -1;  /* a container can only be refused as a key, never consumed */
    l->stack[l->depth++] = n;
    return 0;
}

static int on_container_end(loader *l)
{
    /* libyaml guarantees balanced events; a map never ends with a key pending. */
    if (l->depth > 0)
        l->depth--;
    return 0;
}

/* One event; returns 1 at the end of the stream, 0 to go on, -1 on error. */
static int on_event(loader *l, yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return 1;
    case YAML_DOCUMENT_START_EVENT:
        if (++l->documents > 1) {
            fail_at(l, ev->start_mark, "more than one YAML document ('---'); "
                                       "a config file holds one");
            return -1;
        }
        return 0;
    case YAML_ALIAS_EVENT:
        fail_at(l, ev->start_mark, "YAML aliases (*%s) are not allowed in a config file",
                (const char *)ev->data.alias.anchor);
        return -1;
    case YAML_SCALAR_EVENT:
        return on_scalar(l, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_container_start(l, ev, SKY_CONFIG_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_container_start(l, ev, SKY_CONFIG_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_container_end(l);
    default:
        return 0;
    }
}

static void syntax_error(loader *l)
{
    yaml_parser_t *p = &l->parser;
    const char *problem = p->problem ? p->problem : "invalid YAML";

    if (p->context)
        fail_at(l, p->problem_mark, "%s %s", problem, p->context);
    else
        fail_at(l, p->problem_mark, "%s", problem);
}

sky_config *sky_config_load_string(const char *text, size_t len, const char *name,
                                   char *err, size_t errlen)
{
    loader l;
    sky_config *cfg = NULL;
    int rc = 0;

    memset(&l, 0, sizeof l);
    l.name = name ? name : "<config>";
    l.err = err;
    l.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    if (len > SKY_CONFIG_MAX_BYTES) {
        if (err && errlen)
            snprintf(err, errlen, "%s: larger than %u bytes; refusing to load", l.name,
                     SKY_CONFIG_MAX_BYTES);
        return NULL;
    }
    if (!yaml_parser_initialize(&l.parser))
        sky_oom("YAML parser");
    yaml_parser_set_input_string(&l.parser, (const unsigned char *)text, len);
    while (rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&l.parser, &ev)) {
            syntax_error(&l);
            rc = -1;
            break;
        }
        rc = on_event(&l, &ev);
        yaml_event_delete(&ev);
    }
    if (rc < 0)
        goto done;
    cfg = sky_xcalloc(1, sizeof *cfg);
    cfg->source = copy_text(l.name, strlen(l.name));
    cfg->root = l.root;
    l.root = NULL;
done:
    free(l.pending_key);
    node_free(l.root);
    yaml_parser_delete(&l.parser);
    return cfg;
}

sky_config *sky_config_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    sky_buf text = SKY_BUF_INIT;
    sky_config *cfg = NULL;
    char chunk[8192];
    char ignored[8];
    size_t n;

    if (!err) {
        err = ignored;
        errlen = sizeof ignored;
    }
    if (!f) {
        snprintf(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        sky_buf_append(&text, chunk, n);
        if (text.len > SKY_CONFIG_MAX_BYTES)
            break;   /* load_string reports the size */
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
        goto done;
    }
    cfg = sky_config_load_string(text.data ? (const char *)text.data : "", text.len, path, err,
                                 errlen);
done:
    fclose(f);
    sky_buf_free(&text);
    return cfg;
}

/* ---- lookups ------------------------------------------------------------ */

const sky_config_node *sky_config_child(const sky_config_node *map, const char *key)
{
    if (!map || map->kind != SKY_CONFIG_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->nchildren; i++)
        if (strcmp(map->children[i]->key, key) == 0)
            return map->children[i];
    return NULL;
}

static const sky_config_node *step(const sky_config_node *node, const char *seg, size_t len)
{
    char key[256];

    if (len >= sizeof key)
        return NULL;
    memcpy(key, seg, len);
    key[len] = '\0';
    if (node->kind == SKY_CONFIG_MAP)
        return sky_config_child(node, key);
    if (node->kind == SKY_CONFIG_SEQ) {
        char *end;
        unsigned long i;
        if (len == 0 || key[0] < '0' || key[0] > '9')
            return NULL;
        errno = 0;
        i = strtoul(key, &end, 10);
        if (errno || *end || i >= node->nchildren)
            return NULL;
        return node->children[i];
    }
    return NULL;
}

const sky_config_node *sky_config_get(const sky_config_node *node, const char *path)
{
    if (!path)
        return node;
    while (node && *path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        node = step(node, path, len);
        path += len + (dot ? 1 : 0);
    }
    return node;
}

static int is_null_scalar(const sky_config_node *n)
{
    return n->plain && (n->value[0] == '\0' || strcmp(n->value, "~") == 0 ||
                        strcmp(n->value, "null") == 0 || strcmp(n->value, "Null") == 0 ||
                        strcmp(n->value, "NULL") == 0);
}

const char *sky_config_string(const sky_config_node *node, const char *path)
{
    const sky_config_node *n = sky_config_get(node, path);
    if (!n || n->kind != SKY_CONFIG_SCALAR || is_null_scalar(n))
        return NULL;
    return n->value;
}

void sky_config_where(const sky_config *cfg, const sky_config_node *node, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s:%d:%d", cfg && cfg->source ? cfg->source : "<config>",
             node ? node->line : 0, node ? node->column : 0);
}

int sky_config_bool(const sky_config *cfg, const sky_config_node *node, const char *path,
                    int *out, char *err, size_t errlen)
{
    static const char *const yes[] = { "true", "yes", "on", "1", NULL };
    static const char *const no[] = { "false", "no", "off", "0", NULL };
    const sky_config_node *n = sky_config_get(node, path);
    char where[512];

    if (!n || (n->kind == SKY_CONFIG_SCALAR && is_null_scalar(n)))
        return 0;
    if (n->kind == SKY_CONFIG_SCALAR) {
        for (int i = 0; yes[i]; i++)
            if (strcasecmp(n->value, yes[i]) == 0)
                return *out = 1, 1;
        for (int i = 0; no[i]; i++)
            if (strcasecmp(n->value, no[i]) == 0)
                return *out = 0, 1;
    }
    sky_config_where(cfg, n, where, sizeof where);
    snprintf(err, errlen, "%s: %s must be true or false", where, path);
    return -1;
}

/* ---- which file --------------------------------------------------------- */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int set_path(char *out, size_t outlen, const char *path)
{
    return (size_t)snprintf(out, outlen, "%s", path) < outlen;
}

int sky_config_find(const char *explicit_path, char *out, size_t outlen)
{
    const char *env = getenv("SKYRUN_CONFIG");
    const char *home = getenv("HOME");
    char user_config[4096];

    if (explicit_path && *explicit_path)
        return set_path(out, outlen, explicit_path);
    if (env && *env)
        return set_path(out, outlen, env);
    if (file_exists("skyrun.yaml"))
        return set_path(out, outlen, "skyrun.yaml");
    if (home && *home) {
        snprintf(user_config, sizeof user_config, "%s/.config/skyrun/config.yaml", home);
        if (file_exists(user_config))
            return set_path(out, outlen, user_config);
    }
    return 0;
}
