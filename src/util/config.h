/*
 * config: skyrun's YAML configuration (skyrun.yaml) as a small tree of
 * maps, sequences and scalars, with lookups by dotted path
 * ("storage.lab.endpoint", "providers.gpu-boxes.hosts.0").
 *
 * Loading is strict and bounded because the file may come from anywhere a
 * user cd's into: aliases are refused (no alias bombs), nesting is limited,
 * the file size and node count are capped, duplicate keys are errors, and
 * every error names file:line:column. The tree keeps each node's position
 * so callers can report bad values the same way. No Lua here: the bindings
 * walk the tree themselves.
 */
#ifndef SKY_UTIL_CONFIG_H
#define SKY_UTIL_CONFIG_H

#include <stddef.h>

#define SKY_CONFIG_MAX_DEPTH 64
#define SKY_CONFIG_MAX_NODES 100000
#define SKY_CONFIG_MAX_BYTES (4u << 20)

typedef enum sky_config_kind {
    SKY_CONFIG_SCALAR,
    SKY_CONFIG_MAP,
    SKY_CONFIG_SEQ
} sky_config_kind;

typedef struct sky_config_node sky_config_node;
struct sky_config_node {
    sky_config_kind kind;
    char *key;                   /* this node's key in its parent map, else NULL */
    char *value;                 /* scalars: the text ("" for an empty value) */
    int plain;                   /* scalars: 1 when unquoted (so `~`/`null` mean null) */
    sky_config_node **children;  /* maps (in file order) and sequences */
    size_t nchildren;
    int line, column;            /* 1-based position in the file */
};

typedef struct sky_config {
    char *source;                /* file name, or the name given to load_string */
    sky_config_node *root;       /* NULL for an empty document */
} sky_config;

/* Loads a file. Returns NULL with "file:line:col: what" in err. */
sky_config *sky_config_load_file(const char *path, char *err, size_t errlen);
/* Loads text; `name` is used in error messages and as cfg->source. */
sky_config *sky_config_load_string(const char *text, size_t len, const char *name,
                                   char *err, size_t errlen);
void sky_config_free(sky_config *cfg);

/* The node at a dotted path below `node` (map keys; decimal indices into
 * sequences), or NULL. An empty path is `node` itself. Keys containing '.'
 * are reached with sky_config_child(). */
const sky_config_node *sky_config_get(const sky_config_node *node, const char *path);
/* The entry `key` of a map node, or NULL. */
const sky_config_node *sky_config_child(const sky_config_node *map, const char *key);
/* The text of the scalar at path, or NULL if absent, null or not a scalar. */
const char *sky_config_string(const sky_config_node *node, const char *path);
/* Reads a boolean (true/false, yes/no, on/off, 1/0) at path into *out.
 * Returns 1 when found, 0 when absent (out untouched), -1 with
 * "file:line:col: <path> must be true or false" in err when it is not one. */
int sky_config_bool(const sky_config *cfg, const sky_config_node *node, const char *path,
                    int *out, char *err, size_t errlen);
/* "file:line:col" of node, for error messages. */
void sky_config_where(const sky_config *cfg, const sky_config_node *node, char *out, size_t outlen);

/* Which skyrun.yaml to read: `explicit_path` (--config) when not NULL, else
 * $SKYRUN_CONFIG, else ./skyrun.yaml if it exists, else
 * $HOME/.config/skyrun/config.yaml if it exists. Writes the path to out and
 * returns 1, or returns 0 when there is none (not an error: config is
 * optional). An explicit or $SKYRUN_CONFIG path is returned even if it does
 * not exist, so loading it reports the missing file. */
int sky_config_find(const char *explicit_path, char *out, size_t outlen);

#endif
