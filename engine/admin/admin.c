/* Placeholder until the admin HTTP server lands: no admin listener. */
#include "engine/admin/admin.h"

int admin_start(struct shard *sh)
{
    (void)sh;
    return 0;
}

void admin_on_cqe(struct shard *sh, struct io_uring_cqe *cqe)
{
    (void)sh;
    (void)cqe;
}

void admin_stop(struct shard *sh)
{
    (void)sh;
}

void admin_free(struct shard *sh)
{
    (void)sh;
}
