#include "base/err.h"

#include <string.h>

static const char *const project_errors[RP_ELAST - RP_EBASE] = {
    [0] = "unknown error",
    [RP_EFRAME - RP_EBASE] = "malformed frame",
    [RP_ETOOLARGE - RP_EBASE] = "too large",
    [RP_EREQUEST - RP_EBASE] = "bad request",
    [RP_EAUTH - RP_EBASE] = "unauthorized",
    [RP_EEXPIRED - RP_EBASE] = "expired",
    [RP_ESTORAGE - RP_EBASE] = "storage failure",
    [RP_EFULL - RP_EBASE] = "queue full",
    [RP_ECLOSED - RP_EBASE] = "closed",
};

const char *err_str(int err)
{
    int e = err < 0 ? -err : err;
    if (e > RP_EBASE && e < RP_ELAST)
        return project_errors[e - RP_EBASE];
    if (e == 0)
        return "success";
    return strerror(e);
}
