/*
 * ssh_config: what an OpenSSH client configuration (~/.ssh/config) says
 * about one host alias — HostName, User, Port and IdentityFile, the
 * keywords a pool needs — with OpenSSH's rules: `Host` patterns (`*`, `?`,
 * `!negation`), the first value obtained for a keyword wins, IdentityFile
 * accumulates, `Key value` or `Key=value`, quoted values. `Match` blocks
 * and `Include` are not followed (their lines are skipped, said in the
 * docs). The parser takes untrusted text and is total (fuzzed:
 * tests/fuzz/fuzz_ssh_config.c).
 */
#ifndef SKY_COMPUTE_SSH_CONFIG_H
#define SKY_COMPUTE_SSH_CONFIG_H

#include <stddef.h>

#define SSH_CONFIG_MAX_IDENTITIES 16

typedef struct ssh_host_config {
    char *hostname;     /* NULL when not set */
    char *user;
    int port;           /* 0 when not set */
    char *identities[SSH_CONFIG_MAX_IDENTITIES];   /* as written: ~ and %-tokens unexpanded */
    size_t nidentities;
} ssh_host_config;

/* Fills out from text (len bytes, need not be NUL-terminated) for alias.
 * Unknown keywords are ignored, as OpenSSH ignores those it is told to. */
void ssh_config_parse(const char *text, size_t len, const char *alias, ssh_host_config *out);

/* Reads path (a missing file is an empty configuration): 0, or -1 with err. */
int ssh_config_load(const char *path, const char *alias, ssh_host_config *out, char *err, size_t errlen);

void ssh_host_config_free(ssh_host_config *c);

#endif
