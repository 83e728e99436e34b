/* Kinds of the cross-shard messages the runtime itself sends (below XMSG_CHAT_BASE). */
#ifndef RP_ENGINE_XKIND_H
#define RP_ENGINE_XKIND_H

enum xkind {
    XK_NONE,
    XK_ADOPT, /* ptr: struct handoff; adopt a socket handed over by an edge shard */
};

#endif
