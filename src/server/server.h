/*
 * server: `vigil serve` put together. Opens the store under the data directory, bootstraps the
 * admin key, builds the in-memory match index from the store, wires the analysis pipeline when
 * it is built in, registers every API route and starts the HTTP server; on SIGTERM/SIGINT it
 * stops accepting, lets in-flight requests finish within the grace period and closes the store
 * cleanly.
 *
 * Threads: server_open and server_run/server_close run on the main thread; handlers run on the
 * HTTP network threads and share the server read-only (store, index and key cache are
 * thread-safe themselves).
 */
#ifndef VG_SERVER_H
#define VG_SERVER_H

#include <stdint.h>

#include "conf/conf.h"
#include "http/http.h"

typedef struct server server;

/* Opens everything and starts listening. cfg is borrowed and must outlive the server. Signals
 * SIGTERM/SIGINT/SIGPIPE must already be blocked in the calling thread (server_block_signals)
 * so the network threads inherit the mask. Prints a generated admin key to stdout once, on the
 * first start without a configured one. Returns owned (server_close). */
int server_open(const conf_settings *cfg, server **out);
/* Blocks until SIGTERM or SIGINT, then shuts down gracefully: quiesce, drain within
 * shutdown_grace; analyses still queued near its end are answered 503 + Retry-After and the
 * batches running finish. Returns VG_OK once every request is answered, or VG_ETIMEDOUT when one
 * is still in flight after the grace period (plus SERVER_SHUTDOWN_FLUSH_MIN_MS for replies made
 * after it). */
int server_run(server *s);
/* Frees everything (after server_run, or instead of it). NULL is a no-op. */
void server_close(server *s);
/* The bound HTTP port. */
uint16_t server_port(const server *s);
/* Blocks the shutdown signals in the calling thread (call before any thread is started). */
void server_block_signals(void);

/* Registers every API route on r with handlers bound to s (s may be NULL for introspection:
 * the OpenAPI test lists routes without opening anything). */
int server_add_routes(server *s, http_router *r);

/* The OpenAPI 3 document of those routes (src/server/openapi.json compiled in). Static. */
const char *server_openapi_json(size_t *len);
/* The operations page (src/server/dashboard.html compiled in) and the base64 SHA-256 of its one
 * inline <script> and <style>, for the page's Content-Security-Policy. Static. */
const char *server_dashboard_html(size_t *len);
const char *server_dashboard_html_script_sha256(void);
const char *server_dashboard_html_style_sha256(void);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; *out_limit gets the new soft limit. */
int server_raise_nofile(uint64_t *out_limit);

#endif /* VG_SERVER_H */
