# The admin HTTP server, compiled into rp_engine (engine/CMakeLists.txt).
# http.c, route.c and prom.c are pure and are also compiled into their unit tests.
set(RP_ADMIN_SOURCES
  admin/admin.c
  admin/backup.c
  admin/http.c
  admin/metrics.c
  admin/prom.c
  admin/route.c
)
