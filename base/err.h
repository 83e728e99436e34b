/*
 * Error codes. Every fallible function returns 0 (or a non-negative count) on
 * success and a negative code on failure: either -errno from the C library and
 * the kernel, or one of the project codes below, which start far above any errno.
 */
#ifndef RP_BASE_ERR_H
#define RP_BASE_ERR_H

enum {
    RP_EBASE = 4096,
    RP_EFRAME,    /* a frame that is not exactly one well-formed msgpack map */
    RP_ETOOLARGE, /* a frame, body or list over its configured limit */
    RP_EREQUEST,  /* a well-formed frame with a missing or mistyped field */
    RP_EAUTH,     /* a token that does not verify */
    RP_EEXPIRED,  /* a token or action past its time limit */
    RP_ESTORAGE,  /* the storage engine refused or failed a read or write */
    RP_EFULL,     /* a bounded queue is full: back off and retry later */
    RP_ECLOSED,   /* the peer or the queue has been shut down */
    RP_ELAST
};

/* A short description of a negative error code; never NULL. */
const char *err_str(int err);

#endif
