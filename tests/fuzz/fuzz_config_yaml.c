/*
 * fuzz_config_yaml: libFuzzer target for src/util/config.c. Any byte string
 * must load into a tree or fail with a message, never crash, hang or leak;
 * a loaded tree is walked by path lookups to exercise the accessors too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const sky_config *cfg, const sky_config_node *n, int depth)
{
    char where[256], err[256];
    int b;

    if (!n || depth > SKY_CONFIG_MAX_DEPTH + 1)
        return;
    sky_config_where(cfg, n, where, sizeof where);
    (void)sky_config_bool(cfg, n, "", &b, err, sizeof err);
    for (size_t i = 0; i < n->nchildren; i++) {
        const sky_config_node *c = n->children[i];
        if (n->kind == SKY_CONFIG_MAP && sky_config_child(n, c->key) == NULL)
            __builtin_trap();   /* every key of a map must be found again */
        walk(cfg, c, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    sky_config *cfg = sky_config_load_string((const char *)data, size, "fuzz.yaml", err,
                                             sizeof err);
    if (!cfg) {
        if (err[0] == '\0')
            __builtin_trap();   /* a refusal always says why */
        return 0;
    }
    walk(cfg, cfg->root, 0);
    (void)sky_config_string(cfg->root, "storage.lab.endpoint");
    (void)sky_config_get(cfg->root, "providers.0.hosts.1");
    sky_config_free(cfg);
    return 0;
}
