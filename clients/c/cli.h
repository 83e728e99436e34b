/*
 * The `ringpush` command-line tool's shared parts: the parsed options and the
 * helpers every command uses. cli.c holds main, option parsing and the
 * one-request commands; cli_chat.c the interactive chat; cli_admin.c the
 * commands that speak to the admin port (stats, admin).
 *
 * A command's run function returns the process exit status: 0 success,
 * EXIT_FAIL (an error reply or a connection failure, already reported on
 * stderr), EXIT_USAGE; or -1 for wrong arguments (main then prints the
 * command's usage and exits with EXIT_USAGE).
 *
 * Thread: the tool is single-threaded.
 */
#ifndef RP_CLIENTS_CLI_H
#define RP_CLIENTS_CLI_H

#include "ringpush.h"

#include <stdbool.h>
#include <stdint.h>

#define CLI_MAX_POS      520 /* a group's users list may hold up to 500 ids */
#define EXIT_FAIL        1
#define EXIT_USAGE       2
#define CLI_SECRET_LIMIT 4096

struct opts {
    const char *host;
    uint16_t port;
    const char *secret;
    const char *secret_file;
    const char *device;
    uint64_t ttl;
    int timeout_ms;
    const char *group;
    const char *type;
    const char *cmid;
    const char *note;
    const char *id;
    const char *after_user;
    uint64_t before, after, count;
    uint32_t limit;
    bool bin, no_resume, help;
    const char *admin_host;
    uint16_t admin_port;
    const char *admin_key;
    const char *admin_key_file;
    const char *pos[CLI_MAX_POS];
    int npos;
    char secret_buf[CLI_SECRET_LIMIT + 1];
    size_t secret_len;
    char admin_key_buf[CLI_SECRET_LIMIT + 1];
};

/* Prints obj as one JSON line on stdout and flushes. */
void cli_print_obj(const msgpack_object *o);

/* Reports "ringpush: <what>: <error text>" on stderr; returns EXIT_FAIL. */
int cli_fail(const char *what, int err);

/*
 * For a reply: prints an ok reply (without op and id) as a JSON line and
 * returns 0, or reports an error reply's code and msg on stderr and returns
 * EXIT_FAIL.
 */
int cli_report(const struct rp_msg *m);

/*
 * Connects to --host/--port and says hello as user (device --device) with a
 * token minted from the secret. The client is the caller's to free; NULL
 * when anything failed (the reason is already on stderr).
 */
struct rp_client *cli_session_open(struct opts *o, const char *user, bool resume);

/* A fresh client message id into out (n bytes): time, pid and a counter. */
void cli_make_cmid(char *out, size_t n);

/* True when the count of positional arguments is within [min, max] (max < 0: no bound). */
bool cli_need(const struct opts *o, int min, int max);

/* `chat`: an interactive line chat (cli_chat.c). */
int cli_chat_run(struct opts *o);

/* `stats`: a summary of the admin port's /metrics (cli_admin.c). */
int cli_stats_run(struct opts *o);

/* `admin send|presence|kick|backup`: the admin API (cli_admin.c). */
int cli_admin_run(struct opts *o);

#endif
