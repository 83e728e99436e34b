/*
 * `ringpush chat`: one line of standard input is one message; what arrives is
 * printed as it comes. One poll loop drives the client (poll-driven use of
 * libringpush) and standard input together, so typing never waits for the
 * network and pushes are shown while a line is half typed.
 *
 * Two faces. For a script (standard input or output not a terminal) it
 * prints "<from>: <text>" for the text messages of its conversation and one
 * JSON line for any other frame (another conversation's too), and exits once
 * input has ended and every line is answered. For a
 * person at a terminal it also shows a prompt, marks what it has shown as
 * read (so the peer sees "seen by"), tells when the peer has read one's own
 * messages, shows recalls and group events in words, and takes a few slash
 * commands (/recall, /quit, /help). There the terminal's own line editing
 * is turned off and a small editor takes its place (backspace, Ctrl-U,
 * Ctrl-W, Ctrl-D, Ctrl-L), so that a message arriving while a line is half
 * typed is printed above it and the half-typed line is drawn again below.
 *
 * Every reply is matched to its request by id through a small table of what
 * is in flight, so a refused send is counted as a failure while the replies
 * to the read marks it sends by itself are not.
 */
#include "cli.h"
#include "ops.h"

#include "base/clock.h"
#include "base/err.h"
#include "protocol/ident.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define CHAT_INFLIGHT 256
#define CLEAR_LINE    "\r\033[K"

enum req_kind { REQ_SEND = 1, REQ_READ, REQ_RECALL };

/* Standard input, split into lines without stdio buffering (which would hide lines from poll). */
struct linebuf {
    char data[8192];
    size_t len;
    bool eof;
};

struct chat {
    struct opts *o;
    struct rp_client *c;
    const char *me;
    bool tty;         /* a person at a terminal */
    unsigned pending; /* requests sent, reply not yet seen */
    unsigned failed;  /* sends and recalls refused */
    struct {
        uint32_t id;
        uint8_t kind; /* enum req_kind; 0: a free slot */
    } inflight[CHAT_INFLIGHT];
    char conv[IDENT_CONV_MAX + 1]; /* the conversation: d:<a>:<b> or g:<group> */
    uint64_t own_seq;              /* seq of the last own message the server accepted */
    uint64_t seen_shown;           /* own_seq for which "seen by" was printed */
    uint64_t read_seq;             /* the highest seq marked read */
    uint64_t read_want;            /* the highest seq shown on screen */
    struct linebuf in;
    char edit[4096]; /* at a terminal: the line being typed (the terminal does not echo) */
    size_t edit_len;
};

/* The terminal's settings before chat changed them, restored on every way out. */
static struct termios saved_tio;
static bool tio_changed;

/* ---- output ----------------------------------------------------------- */

/* The prompt and whatever is typed so far. */
static void prompt(const struct chat *ch)
{
    if (ch->tty && !ch->in.eof) {
        printf("%s> %.*s", ch->me, (int)ch->edit_len, ch->edit);
        fflush(stdout);
    }
}

/* Starts an asynchronous line: at a terminal, over the prompt. */
static void line_begin(const struct chat *ch)
{
    if (ch->tty)
        fputs(CLEAR_LINE, stdout);
}

static void line_end(const struct chat *ch)
{
    fputc('\n', stdout);
    prompt(ch);
    fflush(stdout);
}

/* A group event, in words: "* alice invite: bob, carol". */
static void print_event(const msgpack_object *m, const char *from, size_t flen)
{
    const msgpack_object *data = rp_obj_get(m, "data");
    size_t klen = 0;
    const char *kind = data ? rp_obj_str(data, "kind", &klen) : NULL;
    printf("* %.*s %.*s", (int)flen, from, (int)klen, kind ? kind : "event");
    const msgpack_object *users = data ? rp_obj_get(data, "users") : NULL;
    if (users && users->type == MSGPACK_OBJECT_ARRAY && users->via.array.size) {
        for (uint32_t i = 0; i < users->via.array.size; i++) {
            const msgpack_object *u = &users->via.array.ptr[i];
            if (u->type == MSGPACK_OBJECT_STR)
                printf("%s%.*s", i ? ", " : ": ", (int)u->via.str.size, u->via.str.ptr);
        }
    }
}

/* A msg push for a person; returns false for one that is not shown in words. */
static bool print_msg_human(struct chat *ch, const msgpack_object *m)
{
    size_t flen, tlen;
    uint64_t seq = 0, target = 0;
    const char *from = rp_obj_str(m, "from", &flen);
    const char *type = rp_obj_str(m, "type", &tlen);
    const msgpack_object *body = rp_obj_get(m, "body");
    if (!from || !type || !body)
        return false;
    rp_obj_uint(m, "seq", &seq);
    size_t clen = 0;
    const char *conv = rp_obj_str(m, "conv", &clen);
    bool ours = conv && clen == strlen(ch->conv) && memcmp(conv, ch->conv, clen) == 0;
    line_begin(ch);
    if (!ours) /* another conversation of the user: shown with its id, not marked read */
        printf("[%.*s] ", (int)clen, conv ? conv : "");
    if (tlen == 6 && memcmp(type, "recall", 6) == 0 && rp_obj_uint(m, "target", &target))
        printf("* %.*s recalled message #%" PRIu64, (int)flen, from, target);
    else if (tlen == 5 && memcmp(type, "event", 5) == 0)
        print_event(m, from, flen);
    else if (body->type == MSGPACK_OBJECT_STR && tlen == 4 && memcmp(type, "text", 4) == 0)
        printf("%.*s: %.*s", (int)flen, from, (int)body->via.str.size, body->via.str.ptr);
    else
        printf("%.*s: [%.*s, %u bytes]", (int)flen, from, (int)tlen, type,
               body->type == MSGPACK_OBJECT_STR ? body->via.str.size : body->via.bin.size);
    line_end(ch);
    if (ours && seq > ch->read_want && !(flen == strlen(ch->me) && memcmp(from, ch->me, flen) == 0))
        ch->read_want = seq;
    return true;
}

/* A read push: "-- seen by bob" once the peer has read one's last message. */
static void print_read(struct chat *ch, const msgpack_object *m)
{
    size_t ulen;
    uint64_t seq;
    const char *user = rp_obj_str(m, "user", &ulen);
    if (!user || !rp_obj_uint(m, "seq", &seq))
        return;
    if (ulen == strlen(ch->me) && memcmp(user, ch->me, ulen) == 0)
        return; /* this user's other device */
    if (ch->own_seq == 0 || seq < ch->own_seq || ch->seen_shown == ch->own_seq)
        return;
    ch->seen_shown = ch->own_seq;
    line_begin(ch);
    printf("-- seen by %.*s", (int)ulen, user);
    line_end(ch);
}

/* Prints a push: words at a terminal, "<from>: <body>" or JSON for a script. */
static void print_push(struct chat *ch, const struct rp_msg *m)
{
    if (ch->tty) {
        if (rp_msg_is(m, "msg") && print_msg_human(ch, &m->obj))
            return;
        if (rp_msg_is(m, "read")) {
            print_read(ch, &m->obj);
            return;
        }
        if (rp_msg_is(m, "synced"))
            return;
        line_begin(ch);
        size_t rlen = 0;
        const char *reason = rp_obj_str(&m->obj, "reason", &rlen);
        if (rp_msg_is(m, "bye")) {
            printf("-- disconnected: %.*s", (int)rlen, reason ? reason : "");
            line_end(ch);
            return;
        }
        rp_obj_print_json(stdout, &m->obj);
        line_end(ch);
        return;
    }
    size_t flen, tlen = 0, clen = 0;
    const char *from = rp_obj_str(&m->obj, "from", &flen);
    const char *type = rp_obj_str(&m->obj, "type", &tlen);
    const char *conv = rp_obj_str(&m->obj, "conv", &clen);
    const msgpack_object *body = rp_obj_get(&m->obj, "body");
    bool text = type && tlen == 4 && memcmp(type, "text", 4) == 0;
    bool ours = conv && clen == strlen(ch->conv) && memcmp(conv, ch->conv, clen) == 0;
    if (rp_msg_is(m, "msg") && ours && text && from && body && body->type == MSGPACK_OBJECT_STR) {
        printf("%.*s: %.*s\n", (int)flen, from, (int)body->via.str.size, body->via.str.ptr);
        fflush(stdout);
        return;
    }
    cli_print_obj(&m->obj);
}

/* ---- requests in flight ---------------------------------------------- */

static void track(struct chat *ch, uint32_t id, enum req_kind kind)
{
    ch->pending++;
    for (size_t i = 0; i < CHAT_INFLIGHT; i++) {
        if (!ch->inflight[i].kind) {
            ch->inflight[i].id = id;
            ch->inflight[i].kind = (uint8_t)kind;
            return;
        }
    }
    /* Table full (a paste of hundreds of lines): the reply still counts, as a send. */
}

static enum req_kind untrack(struct chat *ch, uint32_t id)
{
    if (ch->pending)
        ch->pending--;
    for (size_t i = 0; i < CHAT_INFLIGHT; i++) {
        if (ch->inflight[i].kind && ch->inflight[i].id == id) {
            enum req_kind k = ch->inflight[i].kind;
            ch->inflight[i].kind = 0;
            return k;
        }
    }
    return REQ_SEND;
}

static void on_reply(struct chat *ch, const struct rp_msg *m)
{
    uint64_t id = 0, seq = 0;
    rp_obj_uint(&m->obj, "id", &id);
    enum req_kind kind = untrack(ch, (uint32_t)id);
    if (rp_msg_code(m) != RP_CODE_OK) {
        if (ch->tty)
            fputs(CLEAR_LINE, stdout);
        fflush(stdout);
        cli_report(m);
        if (kind != REQ_READ)
            ch->failed++;
        prompt(ch);
        return;
    }
    if (kind == REQ_SEND && rp_obj_uint(&m->obj, "seq", &seq) && seq > ch->own_seq)
        ch->own_seq = seq;
    if (kind == REQ_RECALL && ch->tty) {
        line_begin(ch);
        printf("-- recalled");
        line_end(ch);
    }
}

/* Handles every queued frame; returns true when the session is over. */
static bool chat_drain(struct chat *ch)
{
    struct rp_msg *m;
    bool over = false;
    while (rp_client_next(ch->c, &m) == 0) {
        if (rp_obj_get(&m->obj, "id")) {
            on_reply(ch, m);
        } else {
            print_push(ch, m);
            uint64_t seq;
            size_t clen;
            const char *conv = rp_obj_str(&m->obj, "conv", &clen);
            if (rp_msg_is(m, "msg") && conv && rp_obj_uint(&m->obj, "seq", &seq)) {
                char cv[clen + 1];
                memcpy(cv, conv, clen);
                cv[clen] = '\0';
                rp_ack(ch->c, cv, seq);
            }
            over |= rp_msg_is(m, "bye") || rp_msg_is(m, "error");
        }
        rp_msg_free(m);
    }
    /* A person has seen what was printed: one read mark for the whole batch. */
    if (ch->tty && ch->conv[0] && ch->read_want > ch->read_seq) {
        struct rp_field f[] = {RP_FSTR("conv", ch->conv), RP_FUINT("seq", ch->read_want)};
        uint32_t id;
        if (rp_client_send(ch->c, "read", f, 2, &id) == 0) {
            track(ch, id, REQ_READ);
            ch->read_seq = ch->read_want;
        }
    }
    return over;
}

/* ---- input ------------------------------------------------------------ */

static int chat_send(struct chat *ch, const char *line, size_t len)
{
    char cmid[64];
    cli_make_cmid(cmid, sizeof(cmid));
    struct opts *o = ch->o;
    struct rp_field f[] = {
        o->group ? RP_FSTR("group", o->group) : RP_FSTR("to", o->pos[1]),
        RP_FSTR("cmid", cmid),
        RP_FSTR("type", o->type),
        {.key = "body", .type = o->bin ? RP_F_BIN : RP_F_STR, .str = line, .len = len},
    };
    uint32_t id;
    int r = rp_client_send(ch->c, "send", f, 4, &id);
    if (r == 0)
        track(ch, id, REQ_SEND);
    return r;
}

static bool is_cmd(const char *line, size_t len, const char *cmd)
{
    size_t n = strlen(cmd);
    return len == n && memcmp(line, cmd, n) == 0;
}

/* A slash command typed at a terminal; false when line is none (it is sent as text). */
static bool chat_command(struct chat *ch, const char *line, size_t len, int *err)
{
    *err = 0;
    if (!ch->tty || len == 0 || line[0] != '/')
        return false;
    if (is_cmd(line, len, "/quit")) {
        ch->in.eof = true;
    } else if (is_cmd(line, len, "/recall")) {
        if (!ch->own_seq || !ch->conv[0]) {
            printf("-- nothing to recall\n");
            return true;
        }
        struct rp_field f[] = {RP_FSTR("conv", ch->conv), RP_FUINT("seq", ch->own_seq)};
        uint32_t id;
        *err = rp_client_send(ch->c, "recall", f, 2, &id);
        if (*err == 0)
            track(ch, id, REQ_RECALL);
    } else if (is_cmd(line, len, "/help")) {
        printf("-- /recall  take back your last message\n"
               "-- /quit    leave (or Ctrl-D)\n"
               "-- a line starting with // sends it without the first /\n");
    } else if (len > 1 && line[1] == '/') {
        return false; /* "//text": sent as "/text" by the caller */
    } else {
        printf("-- unknown command (try /help)\n");
    }
    return true;
}

static int chat_line(struct chat *ch, const char *line, size_t len)
{
    int err;
    if (len == 0 || chat_command(ch, line, len, &err))
        return len == 0 ? 0 : err;
    if (ch->tty && len > 1 && line[0] == '/' && line[1] == '/')
        line++, len--;
    return chat_send(ch, line, len);
}

/* ---- the terminal face's line editor ---------------------------------- */

static void tio_restore(void)
{
    if (tio_changed)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

static void on_fatal_signal(int sig)
{
    tio_restore(); /* tcsetattr is async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Turns off the terminal's echo and line editing (signals stay: Ctrl-C still ends chat). */
static void tio_raw(void)
{
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
        return;
    t = saved_tio;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0)
        return;
    tio_changed = true;
    atexit(tio_restore);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
}

static void redraw(const struct chat *ch)
{
    fputs(CLEAR_LINE, stdout);
    prompt(ch);
}

/* One typed byte. esc: where an escape sequence (arrow keys...) stands; they are ignored. */
static int edit_byte(struct chat *ch, unsigned char b, int *esc)
{
    if (*esc) {
        if (*esc == 1 && (b == '[' || b == 'O'))
            *esc = 2;
        else if (*esc == 1 || (b >= 0x40 && b <= 0x7e))
            *esc = 0;
        return 0;
    }
    switch (b) {
    case '\r':
    case '\n': {
        char line[sizeof(ch->edit)];
        size_t len = ch->edit_len;
        memcpy(line, ch->edit, len);
        ch->edit_len = 0;
        fputc('\n', stdout);
        int r = chat_line(ch, line, len);
        prompt(ch);
        return r;
    }
    case 0x7f: /* backspace: one UTF-8 character */
    case 0x08:
        while (ch->edit_len && ((unsigned char)ch->edit[ch->edit_len - 1] & 0xc0) == 0x80)
            ch->edit_len--;
        if (ch->edit_len)
            ch->edit_len--;
        break;
    case 0x15: /* Ctrl-U */
        ch->edit_len = 0;
        break;
    case 0x17: /* Ctrl-W: the last word */
        while (ch->edit_len && ch->edit[ch->edit_len - 1] == ' ')
            ch->edit_len--;
        while (ch->edit_len && ch->edit[ch->edit_len - 1] != ' ')
            ch->edit_len--;
        break;
    case 0x04: /* Ctrl-D leaves on an empty line, as at a shell */
        if (ch->edit_len == 0) {
            ch->in.eof = true;
            fputs(CLEAR_LINE, stdout);
        }
        return 0;
    case 0x0c: /* Ctrl-L */
        fputs("\033[H\033[2J", stdout);
        break;
    case 0x1b:
        *esc = 1;
        return 0;
    default:
        if ((b < 0x20 && b != '\t') || ch->edit_len == sizeof(ch->edit) - 1)
            return 0;
        ch->edit[ch->edit_len++] = (char)b;
        fputc(b, stdout);
        return 0;
    }
    redraw(ch);
    return 0;
}

static int edit_input(struct chat *ch)
{
    unsigned char tmp[512];
    static int esc;
    ssize_t n = read(STDIN_FILENO, tmp, sizeof(tmp));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -errno;
    if (n == 0) {
        ch->in.eof = true; /* the terminal is gone */
        return 0;
    }
    for (ssize_t i = 0; i < n && !ch->in.eof; i++) {
        int r = edit_byte(ch, tmp[i], &esc);
        if (r < 0)
            return r;
    }
    fflush(stdout);
    return 0;
}

/* Reads what stdin has and handles every complete line (and the rest at end of input). */
static int chat_input(struct chat *ch)
{
    if (ch->tty)
        return edit_input(ch);
    struct linebuf *in = &ch->in;
    ssize_t n = read(STDIN_FILENO, in->data + in->len, sizeof(in->data) - in->len);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -errno;
    in->len += (size_t)n;
    in->eof = n == 0;
    size_t start = 0;
    for (size_t i = 0; i < in->len; i++) {
        if (in->data[i] != '\n')
            continue;
        int r = chat_line(ch, in->data + start, i - start);
        if (r < 0)
            return r;
        start = i + 1;
    }
    /* A line longer than the buffer, or the last line without a newline, goes as it is. */
    if (start == 0 && in->len && (in->len == sizeof(in->data) || in->eof)) {
        int r = chat_line(ch, in->data, in->len);
        if (r < 0)
            return r;
        start = in->len;
    }
    memmove(in->data, in->data + start, in->len - start);
    in->len -= start;
    return 0;
}

int cli_chat_run(struct opts *o)
{
    if (!(o->group ? cli_need(o, 1, 1) : cli_need(o, 2, 2)))
        return -1;
    static struct chat ch;
    ch.o = o;
    ch.me = o->pos[0];
    /* the conversation's id (PROTOCOL §2) */
    struct strv me = strv_c(o->pos[0]), peer = strv_c(o->group ? o->group : o->pos[1]);
    if (!ident_user_ok(me) || !ident_user_ok(peer)) {
        fprintf(stderr, "ringpush: chat: not a valid user or group id\n");
        return 2;
    }
    uint32_t n = o->group ? ident_conv_group(ch.conv, peer) : ident_conv_direct(ch.conv, me, peer);
    ch.conv[n] = '\0';
    ch.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    ch.c = cli_session_open(o, o->pos[0], !o->no_resume);
    if (!ch.c)
        return EXIT_FAIL;
    if (ch.tty) {
        tio_raw();
        printf("-- %s, chatting with %s%s (/help for commands, Ctrl-D to leave)\n", ch.me,
               o->group ? "group " : "", o->group ? o->group : o->pos[1]);
        prompt(&ch);
    }
    int rc = 0;
    uint64_t leave_by = 0; /* once input ended: wait this long at most for the last replies */
    for (;;) {
        if (chat_drain(&ch))
            break;
        if (ch.in.eof && ch.pending == 0)
            break;
        if (ch.in.eof && !leave_by)
            leave_by = clock_mono_ns() / 1000000u + (uint64_t)o->timeout_ms;
        if (leave_by && clock_mono_ns() / 1000000u >= leave_by) {
            if (getenv("RINGPUSH_DEBUG"))
                fprintf(stderr, "chat: leaving with %u request(s) unanswered\n", ch.pending);
            break; /* keepalive traffic must not keep an ended session waiting */
        }
        struct pollfd p[2] = {
            {.fd = rp_client_fd(ch.c),
             .events = POLLIN | (rp_client_want_write(ch.c) ? POLLOUT : 0)},
            {.fd = ch.in.eof ? -1 : STDIN_FILENO, .events = POLLIN},
        };
        int wait = rp_client_tick(ch.c);
        if (wait < 0) {
            rc = cli_fail("send", wait);
            break;
        }
        if (ch.in.eof && wait > o->timeout_ms)
            wait = o->timeout_ms;
        if (poll(p, 2, wait == INT32_MAX ? -1 : wait) <= 0 && ch.in.eof)
            break; /* replies to the last lines did not come in time */
        if (p[0].revents & POLLOUT)
            rp_client_flush(ch.c);
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = rp_client_feed(ch.c);
            if (r < 0) {
                /* after a bye the server closes: a clean end; without one, the
                 * connection was lost (a connection failure, as for tail) */
                bool bye = chat_drain(&ch);
                rc = bye ? 0 : cli_fail("receive", r);
                break;
            }
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = chat_input(&ch);
            if (r < 0) {
                rc = cli_fail("send", r);
                break;
            }
        }
    }
    if (ch.tty)
        fputs(CLEAR_LINE, stdout);
    fflush(stdout);
    tio_restore();
    rp_client_free(ch.c);
    /* Lines the server refused were reported as they came; the exit status tells a script. */
    unsigned reads = 0; /* an unanswered read mark is no failure of the user's */
    for (size_t i = 0; i < CHAT_INFLIGHT; i++)
        reads += ch.inflight[i].kind == REQ_READ;
    return rc ? rc : ch.failed || ch.pending > reads ? EXIT_FAIL : 0;
}
