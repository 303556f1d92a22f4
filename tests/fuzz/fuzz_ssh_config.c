/*
 * fuzz_ssh_config: libFuzzer target for src/compute/providers/ssh_config.c,
 * the reader of ~/.ssh/config (a file any tool or person may have written).
 * Any byte string must parse for any alias without crashing, hanging or
 * leaking; what it yields must be sane: a port in 1..65535 when set, at
 * most SSH_CONFIG_MAX_IDENTITIES identity files, every string NUL-ended.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "compute/providers/ssh_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const aliases[] = { "h1", "gpu-box", "10.0.0.1", "" };
    for (size_t a = 0; a < sizeof aliases / sizeof aliases[0]; a++) {
        ssh_host_config c;
        ssh_config_parse((const char *)data, size, aliases[a], &c);
        if (c.port < 0 || c.port > 65535 || c.nidentities > SSH_CONFIG_MAX_IDENTITIES)
            __builtin_trap();
        if ((c.hostname && strlen(c.hostname) > size) || (c.user && strlen(c.user) > size))
            __builtin_trap();
        for (size_t i = 0; i < c.nidentities; i++)
            if (!c.identities[i] || strlen(c.identities[i]) > size)
                __builtin_trap();
        ssh_host_config_free(&c);
    }
    return 0;
}
