/*
 * ringpush: the command-line client.
 *
 *   ringpush token <user>                       mint a token
 *   ringpush send <from> <to|--group g> <text>   send one message
 *   ringpush tail <user>                        print pushes live, acking them
 *   ringpush history <user> <conv>              read a conversation
 *   ringpush sync <user>                        list a user's conversations
 *   ringpush group <sub> <user> ...             groups
 *   ringpush friend <sub> <user> ...            friends
 *   ringpush chat <user> <peer|--group g>       interactive line chat
 *   ringpush stats                              a summary of the server's metrics
 *   ringpush admin <send|presence|kick|backup>  the admin API
 *
 * Each command connects as the user with a token it mints itself from the
 * server's secret (--secret, --secret-file or RINGPUSH_SECRET). Replies and
 * pushes are printed as one JSON line each (bin values as {"$bin":"<hex>"}).
 * stats and admin speak HTTP to the admin port instead (--admin-host,
 * --admin-port) with the admin key (--admin-key, --admin-key-file or
 * RINGPUSH_ADMIN_KEY).
 * Exit status: 0 success, 1 an error reply or a connection failure, 2 usage.
 */
#include "admin.h"
#include "cli.h"
#include "ops.h"
#include "ringpush.h"

#include "base/err.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TTL 3600

struct command {
    const char *name;
    const char *usage;
    int (*run)(struct opts *o);
};

static const struct command *find_command(const char *name);

/* ---- output ----------------------------------------------------------- */

void cli_print_obj(const msgpack_object *o)
{
    rp_obj_print_json(stdout, o);
    fputc('\n', stdout);
    fflush(stdout);
}

int cli_fail(const char *what, int err)
{
    fprintf(stderr, "ringpush: %s: %s\n", what, err_str(err));
    return EXIT_FAIL;
}

/* Prints an ok reply (without op and id) and returns 0, or reports an error reply and returns 1. */
int cli_report(const struct rp_msg *m)
{
    if (rp_msg_code(m) != RP_CODE_OK) {
        size_t clen = 0, mlen = 0;
        const char *code = rp_obj_str(&m->obj, "code", &clen);
        const char *msg = rp_obj_str(&m->obj, "msg", &mlen);
        fprintf(stderr, "error: %.*s: %.*s\n", (int)clen, code ? code : "", (int)mlen,
                msg ? msg : "");
        return EXIT_FAIL;
    }
    msgpack_object_kv *kvs = calloc(m->obj.via.map.size + 1u, sizeof(*kvs));
    if (!kvs)
        return cli_fail("print", -ENOMEM);
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->obj.via.map.size; i++) {
        const msgpack_object_kv *kv = &m->obj.via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 &&
            (memcmp(kv->key.via.str.ptr, "op", 2) == 0 ||
             memcmp(kv->key.via.str.ptr, "id", 2) == 0))
            continue;
        kvs[n++] = *kv;
    }
    msgpack_object o = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = n, .ptr = kvs}};
    cli_print_obj(&o);
    free(kvs);
    return 0;
}

/* Prints each element of the array under key, one line each. */
static void print_each(const struct rp_msg *m, const char *key)
{
    const msgpack_object *a = rp_obj_get(&m->obj, key);
    if (!a || a->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < a->via.array.size; i++)
        cli_print_obj(&a->via.array.ptr[i]);
}

/* ---- options ---------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -EINVAL;
    *v = x;
    return 0;
}

/* Sets one option from its name and value; -EINVAL for an unknown name or bad value. */
static int set_opt(struct opts *o, const char *name, const char *val)
{
    uint64_t v = 0;
    bool num = !strcmp(name, "port") || !strcmp(name, "admin-port") || !strcmp(name, "ttl") ||
               !strcmp(name, "timeout") || !strcmp(name, "before") || !strcmp(name, "after") ||
               !strcmp(name, "limit") || !strcmp(name, "count");
    if (num && !strcmp(name, "after") && parse_u64(val, &v) < 0) {
        o->after_user = val; /* group members --after takes a user id */
        return 0;
    }
    if (num && parse_u64(val, &v) < 0)
        return -EINVAL;
    if (!strcmp(name, "host"))
        o->host = val;
    else if (!strcmp(name, "port") && v > 0 && v < 65536)
        o->port = (uint16_t)v;
    else if (!strcmp(name, "admin-port") && v > 0 && v < 65536)
        o->admin_port = (uint16_t)v;
    else if (!strcmp(name, "admin-host"))
        o->admin_host = val;
    else if (!strcmp(name, "admin-key"))
        o->admin_key = val;
    else if (!strcmp(name, "admin-key-file"))
        o->admin_key_file = val;
    else if (!strcmp(name, "secret"))
        o->secret = val;
    else if (!strcmp(name, "secret-file"))
        o->secret_file = val;
    else if (!strcmp(name, "device"))
        o->device = val;
    else if (!strcmp(name, "ttl"))
        o->ttl = v;
    else if (!strcmp(name, "timeout") && v <= INT32_MAX)
        o->timeout_ms = (int)v;
    else if (!strcmp(name, "group"))
        o->group = val;
    else if (!strcmp(name, "type"))
        o->type = val;
    else if (!strcmp(name, "cmid"))
        o->cmid = val;
    else if (!strcmp(name, "note"))
        o->note = val;
    else if (!strcmp(name, "id"))
        o->id = val;
    else if (!strcmp(name, "before"))
        o->before = v;
    else if (!strcmp(name, "after"))
        o->after = v;
    else if (!strcmp(name, "limit") && v <= UINT32_MAX)
        o->limit = (uint32_t)v;
    else if (!strcmp(name, "count"))
        o->count = v;
    else
        return -EINVAL;
    return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc && o->npos < CLI_MAX_POS; i++)
                o->pos[o->npos++] = argv[i];
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (o->npos == CLI_MAX_POS) {
                fprintf(stderr, "ringpush: too many arguments\n");
                return -EINVAL;
            }
            o->pos[o->npos++] = a;
            continue;
        }
        const char *name = a + 2;
        if (!strcmp(name, "help") || !strcmp(name, "bin") || !strcmp(name, "no-resume")) {
            *(!strcmp(name, "help")  ? &o->help
              : !strcmp(name, "bin") ? &o->bin
                                     : &o->no_resume) = true;
            continue;
        }
        char key[32];
        const char *val;
        const char *eq = strchr(name, '=');
        if (eq) {
            snprintf(key, sizeof(key), "%.*s", (int)(eq - name), name);
            val = eq + 1;
        } else {
            snprintf(key, sizeof(key), "%s", name);
            if (i + 1 >= argc) {
                fprintf(stderr, "ringpush: option --%s needs a value\n", key);
                return -EINVAL;
            }
            val = argv[++i];
        }
        if (set_opt(o, key, val) < 0) {
            fprintf(stderr, "ringpush: bad option --%s %s\n", key, val);
            return -EINVAL;
        }
    }
    return 0;
}

/* The secret from --secret, --secret-file (trailing whitespace dropped) or RINGPUSH_SECRET. */
static int load_secret(struct opts *o)
{
    if (o->secret_file) {
        FILE *f = fopen(o->secret_file, "rb");
        if (!f)
            return cli_fail(o->secret_file, -errno);
        size_t n = fread(o->secret_buf, 1, CLI_SECRET_LIMIT, f);
        fclose(f);
        while (n > 0 && strchr(" \t\r\n", o->secret_buf[n - 1]))
            n--;
        o->secret_buf[n] = '\0';
        o->secret = o->secret_buf;
    }
    if (!o->secret)
        o->secret = getenv("RINGPUSH_SECRET");
    if (!o->secret || !*o->secret) {
        fprintf(stderr, "ringpush: no secret: use --secret, --secret-file or RINGPUSH_SECRET\n");
        return EXIT_USAGE;
    }
    o->secret_len = strlen(o->secret);
    return 0;
}

/* ---- session ---------------------------------------------------------- */

/* Connects and logs in as user; prints the reason and returns NULL on failure. */
struct rp_client *cli_session_open(struct opts *o, const char *user, bool resume)
{
    if (load_secret(o))
        return NULL;
    char *tok = NULL;
    int r = rp_token_mint(user, o->ttl, o->secret, o->secret_len, &tok);
    if (r < 0) {
        cli_fail(r == -EINVAL ? "not a valid user id" : "token", r);
        return NULL;
    }
    struct rp_client *c = NULL;
    r = rp_client_connect(&c, o->host, o->port, 0);
    if (r < 0) {
        fprintf(stderr, "ringpush: connect %s:%u: %s\n", o->host, o->port, err_str(r));
        free(tok);
        return NULL;
    }
    rp_client_set_timeout(c, o->timeout_ms);
    struct rp_msg *m = NULL;
    r = rp_hello(c, tok, o->device, resume, &m);
    free(tok);
    if (r < 0) {
        cli_fail("hello", r);
        goto fail;
    }
    if (rp_msg_code(m) != RP_CODE_OK) {
        cli_report(m);
        goto fail;
    }
    rp_msg_free(m);
    return c;
fail:
    rp_msg_free(m);
    rp_client_free(c);
    return NULL;
}

/* Runs one request helper's result: prints the reply, frees everything, returns the exit code. */
static int finish(struct rp_client *c, int r, struct rp_msg *m, const char *list_key)
{
    int rc;
    if (r < 0) {
        rc = cli_fail("request", r);
    } else if (list_key && rp_msg_code(m) == RP_CODE_OK) {
        print_each(m, list_key);
        if (strcmp(list_key, "msgs") == 0)
            printf("{\"more\":%s}\n", rp_obj_bool(&m->obj, "more", false) ? "true" : "false");
        rc = 0;
    } else {
        rc = cli_report(m);
    }
    rp_msg_free(m);
    rp_client_free(c);
    return rc;
}

void cli_make_cmid(char *out, size_t n)
{
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, n, "cli-%llx-%x-%u", (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec,
             (unsigned)getpid(), counter++);
}

static int send_text(struct opts *o, struct rp_client *c, const char *to, const char *text,
                     struct rp_msg **m)
{
    char cmid[64];
    if (!o->cmid)
        cli_make_cmid(cmid, sizeof(cmid));
    return rp_send(c, to, to ? NULL : o->group, o->cmid ? o->cmid : cmid, o->type, text,
                   strlen(text), o->bin, m);
}

/* ---- commands --------------------------------------------------------- */

bool cli_need(const struct opts *o, int min, int max)
{
    return o->npos >= min && (max < 0 || o->npos <= max);
}

static int cmd_token(struct opts *o)
{
    if (!cli_need(o, 1, 1))
        return -1;
    int r = load_secret(o);
    if (r)
        return r;
    char *tok;
    r = rp_token_mint(o->pos[0], o->ttl, o->secret, o->secret_len, &tok);
    if (r < 0)
        return cli_fail(r == -EINVAL ? "not a valid user id" : "token", r);
    printf("%s\n", tok);
    free(tok);
    return 0;
}

static int cmd_send(struct opts *o)
{
    if (!(o->group ? cli_need(o, 2, 2) : cli_need(o, 3, 3)))
        return -1;
    struct rp_client *c = cli_session_open(o, o->pos[0], false);
    if (!c)
        return EXIT_FAIL;
    struct rp_msg *m = NULL;
    const char *to = o->group ? NULL : o->pos[1];
    int r = send_text(o, c, to, o->pos[o->npos - 1], &m);
    return finish(c, r, m, NULL);
}

static int cmd_tail(struct opts *o)
{
    if (!cli_need(o, 1, 1))
        return -1;
    struct rp_client *c = cli_session_open(o, o->pos[0], !o->no_resume);
    if (!c)
        return EXIT_FAIL;
    int rc = 0;
    for (uint64_t seen = 0; !o->count || seen < o->count; seen++) {
        struct rp_msg *m;
        int r = rp_client_push(c, -1, &m);
        if (r < 0) {
            /* the connection dropped without a bye: a connection failure */
            rc = cli_fail("receive", r);
            break;
        }
        cli_print_obj(&m->obj);
        size_t clen;
        uint64_t seq;
        const char *conv = rp_obj_str(&m->obj, "conv", &clen);
        if (rp_msg_is(m, "msg") && conv && rp_obj_uint(&m->obj, "seq", &seq)) {
            char cv[clen + 1];
            memcpy(cv, conv, clen);
            cv[clen] = '\0';
            rp_ack(c, cv, seq);
            rp_client_flush(c);
        }
        /* a bye (printed above) ends the tail cleanly: status 0 */
        bool bye = rp_msg_is(m, "bye") || rp_msg_code(m) != RP_CODE_OK;
        rp_msg_free(m);
        if (bye)
            break;
    }
    rp_client_free(c);
    return rc;
}

static int cmd_history(struct opts *o)
{
    if (!cli_need(o, 2, 2))
        return -1;
    struct rp_client *c = cli_session_open(o, o->pos[0], false);
    if (!c)
        return EXIT_FAIL;
    struct rp_msg *m = NULL;
    int r = rp_history(c, o->pos[1], o->before, o->after, o->limit, &m);
    return finish(c, r, m, "msgs");
}

typedef int (*page_fn)(struct rp_client *c, const char *after, struct rp_msg **reply);

/* sync's and friend.list's cursor for the next page: the reply's "next". */
static const char *sync_next(const struct rp_msg *m, size_t *len)
{
    return rp_obj_str(&m->obj, "next", len);
}

/* group.list's cursor for the next page: the last group's id. */
static const char *group_list_next(const struct rp_msg *m, size_t *len)
{
    const msgpack_object *a = rp_obj_get(&m->obj, "groups");
    if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0)
        return NULL;
    return rp_obj_str(&a->via.array.ptr[a->via.array.size - 1], "group", len);
}

/*
 * Prints every row of a paged list, one per line: each page's rows under
 * keys (NULL-terminated), then the page after next(page) while the reply
 * says "more". Frees c.
 */
static int print_pages(struct rp_client *c, page_fn page, const char *const *keys,
                       const char *(*next)(const struct rp_msg *, size_t *))
{
    char after[256];
    bool first = true;
    int rc = 0;
    for (;;) {
        struct rp_msg *m = NULL;
        int r = page(c, first ? NULL : after, &m);
        if (r < 0) {
            rc = cli_fail("request", r);
            break;
        }
        if (rp_msg_code(m) != RP_CODE_OK) {
            rc = cli_report(m);
            rp_msg_free(m);
            break;
        }
        for (const char *const *k = keys; *k; k++)
            print_each(m, *k);
        bool more = rp_obj_bool(&m->obj, "more", false);
        size_t len = 0;
        const char *cur = more ? next(m, &len) : NULL;
        bool stuck = cur && !first && len == strlen(after) && memcmp(cur, after, len) == 0;
        if (more && (!cur || len >= sizeof(after) || stuck)) {
            fprintf(stderr, "ringpush: %s: the server said more without a usable cursor\n",
                    keys[0]);
            rc = EXIT_FAIL;
        } else if (more) {
            memcpy(after, cur, len);
            after[len] = '\0';
        }
        rp_msg_free(m);
        if (!more || rc)
            break;
        first = false;
    }
    rp_client_free(c);
    return rc;
}

static int cmd_sync(struct opts *o)
{
    if (!cli_need(o, 1, 1))
        return -1;
    struct rp_client *c = cli_session_open(o, o->pos[0], false);
    if (!c)
        return EXIT_FAIL;
    return print_pages(c, rp_sync, (const char *const[]){"convs", NULL}, sync_next);
}

static int cmd_group(struct opts *o)
{
    if (!cli_need(o, 2, -1))
        return -1;
    const char *sub = o->pos[0];
    const char *const *rest = o->pos + 3;
    size_t nrest = o->npos > 3 ? (size_t)(o->npos - 3) : 0;
    bool list = !strcmp(sub, "list");
    if (list ? o->npos != 2 : o->npos < 3)
        return -1;
    bool with_users = !strcmp(sub, "invite") || !strcmp(sub, "kick");
    bool simple = !strcmp(sub, "join") || !strcmp(sub, "leave") || !strcmp(sub, "dismiss") ||
                  !strcmp(sub, "info");
    if (strcmp(sub, "create") && strcmp(sub, "members") && !list && !with_users && !simple)
        return -1;
    if ((with_users && nrest == 0) || ((simple || !strcmp(sub, "members")) && nrest))
        return -1;
    struct rp_client *c = cli_session_open(o, o->pos[1], false);
    if (!c)
        return EXIT_FAIL;
    if (list)
        return print_pages(c, rp_group_list, (const char *const[]){"groups", NULL},
                           group_list_next);
    struct rp_msg *m = NULL;
    int r;
    if (!strcmp(sub, "create"))
        r = rp_group_create(c, o->pos[2], o->id, nrest ? rest : NULL, nrest, &m);
    else if (!strcmp(sub, "invite"))
        r = rp_group_invite(c, o->pos[2], rest, nrest, &m);
    else if (!strcmp(sub, "kick"))
        r = rp_group_kick(c, o->pos[2], rest, nrest, &m);
    else if (!strcmp(sub, "members"))
        r = rp_group_members(c, o->pos[2], o->after_user, o->limit, &m);
    else
        r = rp_group_simple(c, sub, o->pos[2], &m);
    return finish(c, r, m, NULL);
}

static int cmd_friend(struct opts *o)
{
    if (!cli_need(o, 2, 3))
        return -1;
    const char *sub = o->pos[0];
    bool list = !strcmp(sub, "list");
    if (list ? o->npos != 2 : o->npos != 3)
        return -1;
    if (!list && strcmp(sub, "request") && strcmp(sub, "accept") && strcmp(sub, "remove"))
        return -1;
    struct rp_client *c = cli_session_open(o, o->pos[1], false);
    if (!c)
        return EXIT_FAIL;
    if (list)
        return print_pages(c, rp_friend_list, (const char *const[]){"friends", "requests", NULL},
                           sync_next);
    struct rp_msg *m = NULL;
    int r = rp_friend(c, sub, o->pos[2], !strcmp(sub, "request") ? o->note : NULL, &m);
    return finish(c, r, m, NULL);
}

static int cmd_help(struct opts *o);

static const struct command commands[] = {
    {"token", "token <user> [--ttl S]\n  Prints a token for <user>, valid for S seconds (3600).",
     cmd_token},
    {"send",
     "send <from> <to> <text> | send <from> --group <g> <text>\n"
     "  [--type T] [--cmid C] [--bin]   Sends one message; prints conv, seq, ts.",
     cmd_send},
    {"tail",
     "tail <user> [--device D] [--no-resume] [--count N]\n"
     "  Prints pushes as they arrive, one JSON line each, acking every message.",
     cmd_tail},
    {"history",
     "history <user> <conv> [--before S | --after S] [--limit L]\n"
     "  Prints one message a line, then {\"more\":bool}.",
     cmd_history},
    {"sync",
     "sync <user>\n  Prints every one of the user's conversations, newest first, one a line.",
     cmd_sync},
    {"group",
     "group create <user> <name> [members...] [--id G]\n"
     "group invite|kick <user> <group> <users...>\n"
     "group join|leave|dismiss|info <user> <group>\n"
     "group members <user> <group> [--after U] [--limit L]\n"
     "group list <user>   (every group of the user, one a line)",
     cmd_group},
    {"friend",
     "friend request <user> <peer> [--note N]\n"
     "friend accept|remove <user> <peer>\n"
     "friend list <user>   (friends, {user, since}, and requests, {from, note, ts}: one a line)",
     cmd_friend},
    {"chat",
     "chat <user> <peer> | chat <user> --group <g> [--no-resume]\n"
     "  Sends each line of standard input; prints what arrives. Exits at the end of\n"
     "  input once every line is answered: 1 if any was refused or unanswered.\n"
     "  At a terminal: a prompt, \"-- seen by <peer>\" read receipts, and the commands\n"
     "  /recall (your last message), /help, /quit (or Ctrl-D).",
     cli_chat_run},
    {"stats",
     "stats [--admin-host H] [--admin-port P]\n"
     "  Prints a summary of the server's /metrics: connections per shard, hellos,\n"
     "  frames and bytes, slow and rate-limited clients, ring depths, storage\n"
     "  commits and their latency (p50/p99).",
     cli_stats_run},
    {"admin",
     "admin send <from> <to> <text> | admin send <from> --group <g> <text>\n"
     "  [--type T] [--cmid C]   Sends on behalf of <from>; prints conv, seq, ts.\n"
     "admin presence <user>     Prints {\"online\":bool,\"devices\":[...]}.\n"
     "admin kick <user>         Closes every session of <user> (bye kicked).\n"
     "admin backup <dir>        A checkpoint of the database in <dir> (absolute, new).",
     cli_admin_run},
    {"help", "help [command]", cmd_help},
};

static const char common_usage[] =
    "common options: --host H (127.0.0.1) --port P (7400) --device D (cli)\n"
    "  --secret S | --secret-file F | RINGPUSH_SECRET   --timeout MS (10000) --type T (text)\n"
    "admin options: --admin-host H (127.0.0.1) --admin-port P (7401)\n"
    "  --admin-key K | --admin-key-file F | RINGPUSH_ADMIN_KEY\n";

static void usage(FILE *f, const struct command *cmd)
{
    if (cmd) {
        fprintf(f, "usage: ringpush %s\n%s", cmd->usage, common_usage);
        return;
    }
    fprintf(f, "usage: ringpush <command> [args] [options]\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %s\n", commands[i].name);
    fprintf(f, "%s'ringpush <command> --help' describes one.\n", common_usage);
}

static int cmd_help(struct opts *o)
{
    usage(stdout, o->npos ? find_command(o->pos[0]) : NULL);
    return 0;
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    static struct opts o = {
        .host = "127.0.0.1",
        .port = RP_DEFAULT_PORT,
        .device = "cli",
        .ttl = DEFAULT_TTL,
        .timeout_ms = RP_DEFAULT_TIMEOUT,
        .type = "text",
        .admin_host = "127.0.0.1",
        .admin_port = RP_ADMIN_DEFAULT_PORT,
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const struct command *cmd = find_command(argv[1]);
    if (!cmd) {
        fprintf(stderr, "ringpush: unknown command '%s'\n", argv[1]);
        usage(stderr, NULL);
        return EXIT_USAGE;
    }
    if (parse_args(&o, argc - 2, argv + 2) < 0)
        return EXIT_USAGE;
    if (o.help) {
        usage(stdout, cmd);
        return 0;
    }
    int rc = cmd->run(&o);
    if (rc < 0) {
        usage(stderr, cmd);
        return EXIT_USAGE;
    }
    return rc;
}
