/*
 * s3_command: `skyrun s3 …`, the storage client from the shell (s3_command.c).
 */
#ifndef SKY_CLI_S3_COMMAND_H
#define SKY_CLI_S3_COMMAND_H

/* Runs `skyrun s3 ARGS…` (argv[0] is "s3") with skyrun's own options
 * (progress: -1 terminal, 0 never; config_path and profile may be NULL).
 * Returns the exit status: 0 done, 1 failed, 2 usage error, 128+N after
 * signal N. */
int sky_cli_s3(int argc, char **argv, int progress, const char *config_path, const char *profile);

#endif
