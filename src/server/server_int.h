/* server internals shared by the handler files. */
#ifndef VG_SERVER_INT_H
#define VG_SERVER_INT_H

#include "server/server.h"
#include "catalog/catalog.h"
#include "img/img.h"
#include "index/index.h"
#include "store/store.h"

#include <stdatomic.h>

#define SERVER_DB_FILE "vigil.db"
#define SERVER_KEY_PREFIX "vk_"       /* tenant API keys: vk_ + 64 hex digits */
#define SERVER_ADMIN_KEY_PREFIX "va_" /* generated admin keys: va_ + 64 hex digits */
#define SERVER_KEY_RANDOM_BYTES 32
#define SERVER_KEYCACHE_ENTRIES 65536
/* Shortest admin key accepted from the admin_key setting: 32 characters is 192 bits or more
 * of a random key; generated keys are 67. */
#define SERVER_ADMIN_KEY_MIN_CHARS 32
/* The data directory holds key hashes, personal data and face descriptors: owner only. */
#define SERVER_DATA_DIR_MODE 0700
#define SERVER_DATA_FILE_MODE 0600

#define SERVER_ANALYSIS_OUTCOMES 6 /* ok, failed, expired, canceled, queue_full, tenant_quota */

typedef struct analyze_ctx analyze_ctx;
struct cache;
struct face_models;
struct obs_registry;
struct obs_health;
struct obs_metric;
struct ops_alert;
struct ops_webhook;
struct ops;
typedef struct server_video server_video;

/* Shared read-only by the network threads after server_open; counters are atomics. */
struct server {
    const conf_settings *cfg;
    store *st;
    index_db *ix;
    catalog *cat; /* every write of references and scans, and the index they feed */
    http_keycache *kc;
    http_router *router;
    http_server *http;
    analyze_ctx *an; /* NULL when the analysis pipeline is not built in */
    struct cache *cache;
    struct face_models *models; /* NULL: faces off or models missing (models_error says) */
    char models_error[256];
    char host[256];
    uint16_t port;
    uint64_t nofile;
    int64_t started_ms;
    /* metrics and health (obs); NULL when obs is not built in */
    struct obs_registry *reg;
    struct obs_health *health;
    struct obs_metric *m_http_refused;              /* vigil_http_refused_total{reason} */
    uint64_t http_refused_seen[HTTP_REFUSE__COUNT]; /* collector state */
    struct obs_metric *m_requests, *m_duration, *m_inflight, *m_index_refs, *m_store_memory,
        *m_store_errors, *m_store_queries, *m_keycache, *m_cache_lookups, *m_cache_nospace,
        *m_img_limits;
    uint64_t store_errors_seen, store_queries_seen; /* collector state (one render at a time) */
    uint64_t kc_hits_seen, kc_misses_seen;
    uint64_t cache_lookups_seen[4], cache_nospace_seen;
    /* analysis outcomes (admission, deadlines, shutdown) for vigil_analysis_requests_total */
    struct obs_metric *m_analysis, *m_analysis_queue;
    uint64_t analysis_seen[SERVER_ANALYSIS_OUTCOMES];
    uint64_t img_limits_seen[IMG_LIMIT_COUNT]; /* by img_limit_kind */
    struct obs_metric *m_lone_splits;          /* vigil_analysis_lone_splits_total */
    uint64_t lone_splits_seen;
    /* alerts (ops_alert, ops_webhook): the engine is evaluated on the ops tick */
    struct ops_alert *alerts;
    struct ops_webhook *webhook;
    struct ops_heal *heal;          /* self-healing engine (api_heal.c); NULL without analysis */
    struct server_metrics *metrics; /* every module's counters in /metrics (server_metrics.c) */
    struct ops *ops;     /* KPI windows and SLA (src/ops); records every answer and analysis */
    server_video *video; /* video workers and jobs (server_video.c) */
};

/* ---- module metrics (server_metrics.c) ------------------------------------------------------ */

typedef struct server_metrics server_metrics;
struct analyze_result;
/* Registers the cache, scheduler, replica, stage, model, index and store families and their
 * collector in s->reg (a no-op without a registry). VG_ENOMEM, or a registration error. */
int server__metrics_open(server *s);
void server__metrics_free(server *s); /* after obs_registry_free */
/* Observes the analysis stage times of a completed analysis (any analysis thread): matched = the
 * match stage ran (not a features-only reference upload), stored = a scan was recorded. */
void server__metrics_analysis(server *s, vg_level level, const struct analyze_result *r,
                              int matched, int stored);

/* ---- helpers (server_util.c) ---------------------------------------------------------------- */

/* Live references in the match index (the index's own count, so deletes lower it). */
uint64_t server__index_references(server *s);

/* The calling tenant's id (tenant routes only). */
const char *server__tenant(http_req *req);
/* RFC 3339 string for a wall-clock ms, or JSON null for 0. Returns a new reference. */
json_t *server__time(int64_t ms);
/* JSON string or null. New reference. */
json_t *server__str(const char *s);
/* Lower-case hex string of n bytes. New reference. */
json_t *server__hex(const uint8_t *bytes, size_t n);
/* A PDQ hash as stored (the pdq_hash words' bytes) in the 64-hex form `vigil hash` and Meta's
 * tools print. New reference. */
json_t *server__pdq_hex(const uint8_t bytes[VG_PDQ_BYTES]);
/* An analysis answer as a tree (returns owned), and as compact text (*out owned, vg_free): the
 * same bytes json_dumps(tree, JSON_COMPACT) gives; VG_EUNSUPPORTED where only the tree can say
 * it (a string to escape, a non-finite real), VG_ENOMEM. */
json_t *server__result_json(const analyze_result *r);
int server__result_text(const analyze_result *r, char **out, size_t *len);
/* Parses limit, cursor and since/until from the query into *o (strings borrowed from the
 * request). On a bad value replies 422 and returns nonzero. */
int server__list_opts(http_req *req, store_list_opts *o);
/* {"items": items, "next_cursor": "..." | null}; takes ownership of items. */
void server__reply_page(http_req *req, json_t *items, const store_page *page);
/* The body as a JSON object (Content-Type application/json). On failure replies 415/400/422 and
 * returns nonzero. *out owned by the caller. */
int server__body_json(http_req *req, json_t **out);
/* Replies for a failed store/index/analyze call (the detail is vg_err_msg() of this thread). */
void server__reply_err(http_req *req, int rc, const char *what);
/* Replies for a failed asynchronous analysis with the detail its done callback was given. */
void server__reply_detail(http_req *req, int rc, const char *detail);
/* Parses a time given as ms since the epoch or RFC 3339 UTC ("2026-11-26T23:40:01Z"). */
int server__parse_time(const char *s, int64_t *out_ms);
/* An image request: a raw image body (fields in the query string) or multipart/form-data with
 * one or more `image` parts and text fields. */
typedef struct srv_image {
    const uint8_t *data; /* borrowed from the request body */
    size_t len;
    const char *filename; /* or NULL */
} srv_image;

typedef struct srv_input {
    http_req *req;
    int multipart;
    size_t n_images;
    srv_image *images; /* request arena */
    http_part *parts;  /* multipart only */
    size_t n_parts;
} srv_input;

/* Parses the request's image input; at most max_images images (more is 422). On failure replies
 * (400 malformed, 415 not an image, 422 missing image) and returns nonzero. */
int server__input_parse(http_req *req, size_t max_images, srv_input *in);
/* A text field by name: a multipart part or a query parameter; NULL when absent or empty.
 * Returned strings live in the request arena. */
const char *server__input_field(srv_input *in, const char *name);

/* One analysed image for the ops KPIs and SLA: status as given to the done callback (a 5xx-class
 * code is a failure of the server's, a client error such as a bad image is not), the timings of
 * a success (NULL otherwise). */
struct analyze_timings;
void server__ops_analysis(server *s, int status, const struct analyze_timings *t);

/* ---- video (server_video.c) ------------------------------------------------------------------ */

/* The video workers, after the catalog and metrics: re-queues the jobs a dead server left
 * running and starts video_workers threads. Closed (threads joined, waiting clients answered
 * 503) before the HTTP server. */
int server__video_open(server *s);
void server__video_close(server *s);
/* When the request carries a video (Content-Type video/..., or a container's magic bytes in an
 * octet-stream body or a multipart `video`/`image` part): fills *in for its text fields and
 * data and len with the video, returns 1. 0 when it is not a video (nothing replied); -1 when it
 * replied an error. */
int server__video_input(http_req *req, srv_input *in, const uint8_t **data, size_t *len);
/* The reference upload and analyze handlers' video path: 1 when the request was a video (it is
 * answered, now or by a video worker), 0 when it is not a video, -1 when it replied an error. */
int server__video_reference(server *s, http_req *req, const char *profile_id);
int server__video_analyze(server *s, http_req *req);
/* The analyze options of an input (source_url, profile_id, level, store), as /analyze reads
 * them; replies and returns nonzero on a bad one (api_evidence.c). */
int server__analyze_fields(server *s, srv_input *in, struct analyze_request *ar,
                           const char **source_url, int *store_out);
/* A stored reference as the API answers it (api_profiles.c). New reference. */
json_t *server__reference_json(const store_reference *r);

/* Handler for a route whose module is not built into this binary: 503 naming it. */
void server__unavailable(http_req *req, void *ud);

/* ---- handlers ------------------------------------------------------------------------------- */

void server__api_health(http_req *req, void *ud);
/* api_heal.c: creates s->heal from the self_heal_* settings (after the analysis context). */
int server__heal_open(server *s);
void server__api_ops_actions(http_req *req, void *ud);
void server__api_live(http_req *req, void *ud);
void server__api_metrics(http_req *req, void *ud);
void server__api_openapi(http_req *req, void *ud);
void server__api_metrics_performance(http_req *req, void *ud);
void server__api_metrics_sla(http_req *req, void *ud);
void server__api_dashboard(http_req *req, void *ud);

void server__api_tenant_create(http_req *req, void *ud);
void server__api_tenant_list(http_req *req, void *ud);
void server__api_tenant_get(http_req *req, void *ud);
void server__api_key_create(http_req *req, void *ud);
void server__api_key_list(http_req *req, void *ud);
void server__api_key_revoke(http_req *req, void *ud);

void server__api_profile_create(http_req *req, void *ud);
void server__api_profile_list(http_req *req, void *ud);
void server__api_profile_get(http_req *req, void *ud);
void server__api_profile_update(http_req *req, void *ud);
void server__api_profile_delete(http_req *req, void *ud);

void server__api_reference_create(http_req *req, void *ud);
void server__api_reference_list(http_req *req, void *ud);
void server__api_reference_get(http_req *req, void *ud);
void server__api_reference_image(http_req *req, void *ud);
void server__api_reference_delete(http_req *req, void *ud);

void server__api_analyze(http_req *req, void *ud);
void server__api_analyze_batch(http_req *req, void *ud);
void server__api_scan_list(http_req *req, void *ud);
void server__api_scan_get(http_req *req, void *ud);
void server__api_match_list(http_req *req, void *ud);
void server__api_match_get(http_req *req, void *ud);
void server__api_job_get(http_req *req, void *ud);

void server__api_notice_create(http_req *req, void *ud);
void server__api_notice_list(http_req *req, void *ud);
void server__api_notice_get(http_req *req, void *ud);
void server__api_notice_status(http_req *req, void *ud);
void server__api_notice_events(http_req *req, void *ud);

void server__api_alerts(http_req *req, void *ud);
void server__api_alert_ack(http_req *req, void *ud);
void server__api_silence_list(http_req *req, void *ud);
void server__api_silence_create(http_req *req, void *ud);
void server__api_silence_delete(http_req *req, void *ud);
/* Alert engine and webhook from the alert_* settings, on the ops tick (after open_ops, before
 * ops_start); closed after the tick stopped. In api_alerts.c. */
int server__alerts_open(server *s);
void server__alerts_close(server *s);

#endif /* VG_SERVER_INT_H */
