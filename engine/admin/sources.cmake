set(RP_ADMIN_SOURCES admin/admin.c)
