/* http internals shared by the module's files (not part of the public API). */
#ifndef VG_HTTP_INT_H
#define VG_HTTP_INT_H

#include "http/http.h"

/* Runs a route's handler. */
void http__route_call(const http_route *rt, http_req *req);

#endif
