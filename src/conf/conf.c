/* The settings table and its loaders. The table is the one place a setting is declared: the help
 * text, the env var, the flag, validation and the struct field all come from its row. */
#include "conf/conf.h"
#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CONF_MAX_FILE_BYTES (1u << 20) /* a config file is small; refuse anything absurd */
#define CONF_MAX_LINE_BYTES 4096
#define CONF_MAX_NAME_BYTES 64

static const char *const log_choices[] = {"debug", "info", "warn", "error", "off", NULL};
static const char *const level_choices[] = {"speed", "balanced", "accuracy", "memory", NULL};
static const char *const cache_scope_choices[] = {"tenant", "global", NULL};
static const char *const self_heal_choices[] = {"off", "dry-run", "on", NULL};

#define F(field) offsetof(conf_settings, field)
#define BIG 9.007199254740992e15 /* 2^53: exact in a double */

/* clang-format off */
static const conf_def rows[] = {
    {"listen", CONF_STRING, "127.0.0.1:8080", "address and port to listen on (host:port; port 0 picks a free one)", NULL, 0, 0, 0, F(listen)},
    {"data_dir", CONF_STRING, "./data", "directory for the database and on-disk cache", NULL, 0, 0, 0, F(data_dir)},
    /* database backend (docs/OPERATIONS.md "Storage backends") */
    {"database", CONF_STRING, "", "the database: empty for the SQLite file <data_dir>/vigil.db, a file path, or a postgresql://user:pass@host:port/db URL (PostgreSQL backend, shared by several nodes)", NULL, 0, 0, 1, F(database)},
    {"db_read_connections", CONF_INT, "4", "read connections in the store's pool", NULL, 1, 64, 0, F(db_read_connections)},
    {"db_connect_timeout", CONF_DURATION, "5s", "PostgreSQL: connect timeout (whole seconds, at least 2)", NULL, 1000, 600000, 0, F(db_connect_timeout_ms)},
    {"db_statement_timeout", CONF_DURATION, "30s", "PostgreSQL: longest statement; longer fails as busy (503) (0: none)", NULL, 0, 86400000, 0, F(db_statement_timeout_ms)},
    {"db_reconnect_timeout", CONF_DURATION, "15s", "PostgreSQL: a lost connection is re-established for this long (a restart takes about a second); then the database is taken as down and requests get 503 'database unavailable' at once", NULL, 100, 600000, 0, F(db_reconnect_timeout_ms)},
    {"db_retry_max", CONF_DURATION, "5s", "PostgreSQL: while the database is down, one request tries to reconnect after a wait doubling from 100 ms up to this; the others fail at once", NULL, 100, 600000, 0, F(db_retry_max_ms)},
    {"db_txn_attempts", CONF_INT, "10", "PostgreSQL: tries of a write transaction hit by a serialization failure, deadlock or lost connection", NULL, 1, 1000, 0, F(db_txn_attempts)},
    {"models_dir", CONF_STRING, "", "directory of the face model weights (empty: the build's models/)", NULL, 0, 0, 0, F(models_dir)},
    {"admin_key", CONF_STRING, "", "admin API key (empty: generate one at first start, print it once, store its hash)", NULL, 0, 0, 1, F(admin_key)},
    {"log_level", CONF_ENUM, "info", "debug logs one line per request", log_choices, 0, 0, 0, F(log_level)},
    {"http_threads", CONF_INT, "0", "HTTP worker threads (0: one per CPU)", NULL, 0, 1024, 0, F(http_threads)},
    {"max_connections", CONF_INT, "16384", "concurrent connections (capped by the open-files limit)", NULL, 1, 1000000, 0, F(max_connections)},
    {"max_body_bytes", CONF_SIZE, "32MiB", "largest request body; larger is 413 (from Content-Length before reading)", NULL, 1024, 4294967296.0, 0, F(max_body_bytes)},
    {"max_batch_images", CONF_INT, "32", "most images in one /analyze/batch request", NULL, 1, 1024, 0, F(max_batch_images)},
    {"header_timeout", CONF_DURATION, "10s", "close a connection idle this long while waiting for a request (keep-alive idle too)", NULL, 100, 86400000, 0, F(header_timeout_ms)},
    {"body_timeout", CONF_DURATION, "30s", "close a connection whose body stalls this long", NULL, 100, 86400000, 0, F(body_timeout_ms)},
    {"body_deadline", CONF_DURATION, "120s", "close a connection whose whole body takes longer than this (clients trickling bytes)", NULL, 100, 86400000, 0, F(body_deadline_ms)},
    {"shutdown_grace", CONF_DURATION, "10s", "on SIGTERM/SIGINT, how long in-flight requests may take to finish", NULL, 0, 3600000, 0, F(shutdown_grace_ms)},
    {"retry_after", CONF_DURATION, "1s", "Retry-After sent with 429/503 when overloaded", NULL, 0, 3600000, 0, F(retry_after_ms)},
    /* HTTP hardening */
    {"max_connections_per_ip", CONF_INT, "256", "concurrent connections from one client address (0: no limit; by default also at most a quarter of max_connections)", NULL, 0, 1000000, 0, F(max_connections_per_ip)},
    {"head_deadline", CONF_DURATION, "10s", "close a connection whose request line and headers take longer than this in all (clients trickling header lines; 0: none)", NULL, 0, 86400000, 0, F(head_deadline_ms)},
    {"max_json_body_bytes", CONF_SIZE, "256KiB", "largest JSON request body (tenants, keys, profiles, notices); larger is 413", NULL, 1024, 4294967296.0, 0, F(max_json_body_bytes)},
    {"max_inflight_body_bytes", CONF_SIZE, "512MiB", "request bodies being received, all together; past it 503 + Retry-After (0: no bound)", NULL, 0, BIG, 0, F(max_inflight_body_bytes)},
    {"max_query_params", CONF_INT, "64", "most query parameters in one URL; more is 400", NULL, 1, 1024, 0, F(max_query_params)},
    {"store_images", CONF_BOOL, "false", "keep the bytes of uploaded reference images (otherwise only hashes and features)", NULL, 0, 0, 0, F(store_images)},
    {"default_level", CONF_ENUM, "balanced", "analysis level when a request names none", level_choices, 0, 0, 0, F(default_level)},
    {"pdq_threshold", CONF_INT, "31", "PDQ match: largest Hamming distance (bits of 256)", NULL, 0, 256, 0, F(pdq_threshold)},
    {"pdq_quality_min", CONF_INT, "50", "PDQ hashes below this quality are not used for matching", NULL, 0, 100, 0, F(pdq_quality_min)},
    {"face_threshold", CONF_FLOAT, "0.6", "face match: largest descriptor L2 distance", NULL, 0, 4, 0, F(face_threshold)},
    {"faces", CONF_BOOL, "true", "load the face models and detect faces", NULL, 0, 0, 0, F(faces)},
    /* image decoding limits: each is checked from the image's headers before decoding; over it is 422 */
    {"max_image_pixels", CONF_INT, "67108864", "largest image, width x height as stored (64 Mpx: 8192x8192)", NULL, 1, 4294836225.0, 0, F(max_image_pixels)},
    {"max_jpeg_scans", CONF_INT, "64", "most scans in one JPEG (progressive files pass over the whole image once per scan)", NULL, 1, 100000, 0, F(max_jpeg_scans)},
    {"max_lossless_pixels", CONF_INT, "16777216", "largest lossless or animated WebP, width x height (libwebp holds it as 4-byte ARGB)", NULL, 1, 4294836225.0, 0, F(max_lossless_pixels)},
    {"max_decode_work", CONF_INT, "2000000000", "decode budget per image in work units (samples x decoder passes, from the headers)", NULL, 1, BIG, 0, F(max_decode_work)},
    {"max_decode_ratio", CONF_INT, "1024", "decode memory per encoded byte beyond the first 128 MiB (a tiny file promising a huge image is a bomb)", NULL, 1, 4294967295.0, 0, F(max_decode_ratio)},
    {"redis_url", CONF_STRING, "", "L3 cache (redis://host:port/db); empty: no Redis", NULL, 0, 0, 0, F(redis_url)},
    {"cache_l1_entries", CONF_INT, "1000", "in-memory feature cache: most entries", NULL, 0, 100000000, 0, F(cache_l1_entries)},
    {"cache_l1_bytes", CONF_SIZE, "256MiB", "in-memory feature cache: most bytes", NULL, 0, BIG, 0, F(cache_l1_bytes)},
    {"cache_l2_bytes", CONF_SIZE, "1GiB", "on-disk feature cache: most bytes (0: off)", NULL, 0, BIG, 0, F(cache_l2_bytes)},
    {"cache_scope", CONF_ENUM, "tenant", "feature cache sharing: tenant (each tenant hits only its own entries) or global (one scope for all: only for single-tenant deployments, since a hit tells a tenant that someone sent the same bytes)", cache_scope_choices, 0, 0, 0, F(cache_scope)},
    {"cache_l2_min_free", CONF_SIZE, "512MiB", "on-disk feature cache: free space it leaves on the data volume for the database (below it the cache evicts and stops writing)", NULL, 0, BIG, 0, F(cache_l2_min_free)},
    {"cache_redis_ttl", CONF_DURATION, "1h", "Redis entries expire after this long", NULL, 1000, 2592000000.0, 0, F(cache_redis_ttl_ms)},
    {"redis_timeout", CONF_DURATION, "50ms", "Redis connect and command timeout", NULL, 1, 60000, 0, F(redis_timeout_ms)},
    {"queue_depth", CONF_INT, "256", "analysis work queue length; full is 503 + Retry-After at once", NULL, 1, 1000000, 0, F(queue_depth)},
    {"request_deadline", CONF_DURATION, "2000ms", "analysis work past this age is dropped and answered 503", NULL, 1, 600000, 0, F(request_deadline_ms)},
    {"batch_max_size", CONF_INT, "32", "dynamic batching: most images per inference batch (the face crops of all of them share network calls)", NULL, 1, 1024, 0, F(batch_max_size)},
    {"batch_max_delay_us", CONF_INT, "2000", "dynamic batching: longest a request waits for a batch to fill (microseconds)", NULL, 0, 1000000, 0, F(batch_max_delay_us)},
    /* lone split (issue 13, perf13) */
    {"batch_lone_split", CONF_BOOL, "false", "a lone image (nothing else queued or running) is hashed on a helper thread while its worker runs the face networks: a second core for one request at a time (never on one CPU; off by default: no gain measured on a 2-vCPU VM)", NULL, 0, 0, 0, F(batch_lone_split)},
    {"batch_lone_threads", CONF_INT, "0", "OpenMP threads of the face networks for a lone image (nothing else queued or running): 0 = the CPU count, at most 4; 1 = always one. Batches under load run one thread per worker", NULL, 0, 4, 0, F(batch_lone_threads)},
    {"replicas_min", CONF_INT, "1", "model replicas kept at least", NULL, 1, 1024, 0, F(replicas_min)},
    {"replicas_max", CONF_INT, "0", "model replicas at most (0: one per CPU)", NULL, 0, 1024, 0, F(replicas_max)},
    {"tenant_max_analyses", CONF_INT, "0", "images one tenant may have queued or in analysis; more is 429 + Retry-After at once (0: half of queue_depth)", NULL, 0, 1000000, 0, F(tenant_max_analyses)},
    /* alerts: threshold rules, anomaly detection, SLO burn rate, escalation, webhooks (docs/OPERATIONS.md "Alerts"); durations are ops time */
    {"alert_cpu_warning", CONF_FLOAT, "70", "alert cpu_high at warning when process CPU over 1 min exceeds this percent (0: off)", NULL, 0, 100, 0, F(alert_cpu_warning)},
    {"alert_cpu_critical", CONF_FLOAT, "90", "alert cpu_high at critical above this percent (0: off)", NULL, 0, 100, 0, F(alert_cpu_critical)},
    {"alert_memory_warning", CONF_FLOAT, "75", "alert memory_high at warning when RSS exceeds this percent of the memory limit (0: off)", NULL, 0, 100, 0, F(alert_memory_warning)},
    {"alert_memory_critical", CONF_FLOAT, "90", "alert memory_high at critical above this percent (0: off)", NULL, 0, 100, 0, F(alert_memory_critical)},
    {"alert_latency_warning", CONF_DURATION, "1500ms", "alert response_time_high at warning when analysis P95 over 1 min exceeds this (0: off)", NULL, 0, 3600000, 0, F(alert_latency_warning_ms)},
    {"alert_latency_critical", CONF_DURATION, "2000ms", "alert response_time_high at critical above this (0: off)", NULL, 0, 3600000, 0, F(alert_latency_critical_ms)},
    {"alert_error_rate_warning", CONF_FLOAT, "2", "alert error_rate_high / analysis_error_rate_high at warning when the error rate over 1 min exceeds this percent (0: off)", NULL, 0, 100, 0, F(alert_error_rate_warning)},
    {"alert_error_rate_critical", CONF_FLOAT, "5", "error-rate alerts at critical above this percent (0: off)", NULL, 0, 100, 0, F(alert_error_rate_critical)},
    {"alert_cache_hit_warning", CONF_FLOAT, "60", "alert cache_hit_rate_low at warning when the hit rate over 5 min is below this percent (0: off)", NULL, 0, 100, 0, F(alert_cache_hit_warning)},
    {"alert_cache_hit_critical", CONF_FLOAT, "40", "alert cache_hit_rate_low at critical below this percent (0: off)", NULL, 0, 100, 0, F(alert_cache_hit_critical)},
    {"alert_min_requests", CONF_INT, "20", "error-rate alerts need at least this many answers in their 1 min window", NULL, 1, 1000000000, 0, F(alert_min_requests)},
    {"alert_min_lookups", CONF_INT, "100", "the cache hit-rate alert needs at least this many analyses in its 5 min window", NULL, 1, 1000000000, 0, F(alert_min_lookups)},
    {"alert_for", CONF_DURATION, "1m", "a threshold must hold this long (pending) before its alert fires, so one spike never fires", NULL, 0, 86400000, 0, F(alert_for_ms)},
    {"alert_anomaly", CONF_BOOL, "true", "anomaly alerts (info) when a KPI leaves its rolling mean by more than alert_anomaly_sigma", NULL, 0, 0, 0, F(alert_anomaly)},
    {"alert_anomaly_sigma", CONF_FLOAT, "2", "anomaly: standard deviations from the rolling mean", NULL, 0.5, 100, 0, F(alert_anomaly_sigma)},
    {"alert_anomaly_warmup", CONF_DURATION, "10m", "anomaly: no alert before each KPI has been watched this long", NULL, 0, 604800000, 0, F(alert_anomaly_warmup_ms)},
    {"alert_anomaly_min_samples", CONF_INT, "30", "anomaly: no alert before each KPI has this many samples (one per 10 s)", NULL, 2, 1000000, 0, F(alert_anomaly_min_samples)},
    {"alert_burn_rate", CONF_BOOL, "true", "SLO burn-rate alerts (1h+5m > 14.4x and 6h+30m > 6x critical, 3d+6h > 1x warning)", NULL, 0, 0, 0, F(alert_burn_rate)},
    {"alert_escalate_after", CONF_DURATION, "15m", "a firing alert nobody acknowledged moves up one severity after this long and is sent again (0: never)", NULL, 0, 604800000, 0, F(alert_escalate_after_ms)},
    {"alert_max_events", CONF_INT, "256", "alert history: events kept (oldest dropped)", NULL, 1, 100000, 0, F(alert_max_events)},
    {"alert_max_recent", CONF_INT, "50", "resolved alerts kept for GET /api/v1/alerts", NULL, 1, 10000, 0, F(alert_max_recent)},
    {"alert_max_silences", CONF_INT, "64", "active silences at most; more is 422", NULL, 1, 10000, 0, F(alert_max_silences)},
    {"alert_webhook", CONF_STRING, "", "webhook URL receiving alerts of every severity (Alertmanager webhook format, version 4)", NULL, 0, 0, 0, F(alert_webhook)},
    {"alert_webhook_info", CONF_STRING, "", "webhook URL for info alerts", NULL, 0, 0, 0, F(alert_webhook_info)},
    {"alert_webhook_warning", CONF_STRING, "", "webhook URL for warning alerts", NULL, 0, 0, 0, F(alert_webhook_warning)},
    {"alert_webhook_critical", CONF_STRING, "", "webhook URL for critical alerts", NULL, 0, 0, 0, F(alert_webhook_critical)},
    {"alert_webhook_emergency", CONF_STRING, "", "webhook URL for emergency alerts", NULL, 0, 0, 0, F(alert_webhook_emergency)},
    {"alert_webhook_secret", CONF_STRING, "", "HMAC-SHA256 key: bodies carry X-Vigil-Signature: sha256=<hex> (empty: unsigned)", NULL, 0, 0, 1, F(alert_webhook_secret)},
    {"alert_external_url", CONF_STRING, "", "this server's URL as receivers should see it (externalURL, generatorURL)", NULL, 0, 0, 0, F(alert_external_url)},
    {"alert_group_wait", CONF_DURATION, "10s", "webhook: notifications of one alertname and severity are collected this long into one POST", NULL, 0, 3600000, 0, F(alert_group_wait_ms)},
    {"alert_repeat_interval", CONF_DURATION, "4h", "webhook: a still-firing alert is sent again after this long", NULL, 0, 604800000, 0, F(alert_repeat_interval_ms)},
    {"alert_webhook_timeout", CONF_DURATION, "5s", "webhook: one POST (connect included) may take this long (real time)", NULL, 100, 600000, 0, F(alert_webhook_timeout_ms)},
    {"alert_webhook_retries", CONF_INT, "5", "webhook: retries of a failed POST, with exponential backoff from 1 s to 60 s", NULL, 0, 100, 0, F(alert_webhook_retries)},
    {"alert_webhook_queue", CONF_INT, "256", "webhook: notifications and deliveries queued at most; the oldest is dropped and counted", NULL, 1, 100000, 0, F(alert_webhook_queue)},
    /* self-healing (docs/OPERATIONS.md "Self-healing"); durations are ops time */
    {"self_heal", CONF_ENUM, "on", "self-healing actions: off, dry-run (log and record, do not act) or on", self_heal_choices, 0, 0, 0, F(self_heal)},
    {"self_heal_memory_percent", CONF_FLOAT, "85", "self-healing: shrink L1 and trim the heap when memory use (RSS / memory limit) reaches this percent", NULL, 1, 100, 0, F(self_heal_memory_percent)},
    {"self_heal_memory_limit", CONF_SIZE, "0", "self-healing: also shrink when RSS reaches this many bytes (0: no RSS limit)", NULL, 0, BIG, 0, F(self_heal_memory_limit)},
    {"self_heal_p95_ms", CONF_FLOAT, "1500", "self-healing: retune batching and warm L1 when the analysis P95 reaches this (ms)", NULL, 1, 600000, 0, F(self_heal_p95_ms)},
    {"self_heal_error_rate", CONF_FLOAT, "0.05", "self-healing: add or replace a replica when the analysis error rate reaches this (0..1)", NULL, 0.001, 1, 0, F(self_heal_error_rate)},
    {"self_heal_hit_rate", CONF_FLOAT, "0.4", "self-healing: raise L1 when the cache hit rate falls under this (0..1)", NULL, 0, 1, 0, F(self_heal_hit_rate)},
    {"self_heal_l1_budget", CONF_SIZE, "512MiB", "self-healing: L1 is never raised above this many bytes", NULL, 1048576, BIG, 0, F(self_heal_l1_budget)},
    {"self_heal_for", CONF_DURATION, "60s", "self-healing: a condition must hold this long before its action runs (ops time)", NULL, 0, 86400000, 0, F(self_heal_for_ms)},
    {"self_heal_cooldown", CONF_DURATION, "5m", "self-healing: least time between two runs of one action (ops time)", NULL, 0, 86400000, 0, F(self_heal_cooldown_ms)},
    {"self_heal_max_per_hour", CONF_INT, "6", "self-healing: most runs of one action per hour (ops time)", NULL, 1, 60, 0, F(self_heal_max_per_hour)},
    /* video (docs/VIDEO.md, "API"): analyses, jobs, limits */
    {"video_sync_max_s", CONF_FLOAT, "10", "a video analysis answers directly up to this duration (s); a longer one is a job (202, GET /api/v1/jobs/{id})", NULL, 0, 86400, 0, F(video_sync_max_s)},
    {"video_workers", CONF_INT, "1", "threads that hash videos (analyses, references and jobs; each decode runs in its own child process)", NULL, 1, 64, 0, F(video_workers)},
    {"video_max_queued_jobs", CONF_INT, "1000", "video jobs waiting to run; past it a long video is refused with 503", NULL, 1, 1000000, 0, F(video_max_queued_jobs)},
    {"video_job_max_attempts", CONF_INT, "3", "times a job is started before it is failed (a server that dies during a job re-queues it at the next start)", NULL, 1, 100, 0, F(video_job_max_attempts)},
    {"video_max_duration_s", CONF_FLOAT, "14400", "longest video accepted (s); longer is 422 naming the limit 'duration'", NULL, 1, 86400, 0, F(video_max_duration_s)},
    {"video_max_dimension", CONF_INT, "8192", "largest video width or height (px); larger is 422 naming 'dimension'", NULL, 16, 65536, 0, F(video_max_dimension)},
    {"video_child_mem_bytes", CONF_SIZE, "2GiB", "address space the decoder child may map beyond what it inherits; past it 413 naming 'child_memory'", NULL, 64.0 * 1048576, BIG, 0, F(video_child_mem_bytes)},
    {"video_wall_ms", CONF_DURATION, "15m", "wall time of one video decode; past it the child is killed and the answer is 422 naming 'wall'", NULL, 1000, 86400000, 0, F(video_wall_ms)},
    {"video_callback_allow_private", CONF_BOOL, "false", "let job callback URLs reach loopback, private, link-local and other non-public addresses (otherwise 422, and refused again when the callback connects)", NULL, 0, 0, 0, F(video_callback_allow_private)},
    {"video_callback_timeout_ms", CONF_DURATION, "5s", "time allowed for one job completion callback POST (callback_url); one retry", NULL, 100, 60000, 0, F(video_callback_timeout_ms)},
    {"video_regions", CONF_BOOL, "true", "hash each sampled frame's trimmed content and top/bottom halves too, so bordered, letterboxed and logo'd edits match (docs/VIDEO.md \"Regions\"); false: whole frames only, vPDQ's own rule, up to ~6x less matching work in the worst case; references hashed while on keep their regions", NULL, 0, 0, 0, F(video_regions)},
    /* faces in video (docs/VIDEO.md "Faces in video") */
    {"video_face_rate", CONF_FLOAT, "0.5", "frames per second of an analysed video searched for the tenant's likeness references (0: no faces in video; at most 1, the hashing rate)", NULL, 0, 1, 0, F(video_face_rate)},
    {"video_face_gap_s", CONF_FLOAT, "5", "frames of one matched person closer than this (s) form one time range", NULL, 0, 3600, 0, F(video_face_gap_s)},
    {"video_face_max_frames", CONF_INT, "240", "frames of one video searched for faces (each up to 416 px square in memory); later frames are not, counted in vigil_video_limit_hits_total{limit=\"face_frames\"}", NULL, 1, 100000, 0, F(video_face_max_frames)},
    {"fault_video_job_delay_ms", CONF_INT, "0", "TEST ONLY: a video job sleeps this long after it starts running (ms)", NULL, 0, 600000, 0, F(fault_video_job_delay_ms)},
    /* several nodes, one database (docs/SCALING.md) */
    {"index_sync_interval", CONF_DURATION, "100ms", "how often a node reads the change log to apply other nodes' reference adds, removes and key revokes", NULL, 10, 60000, 0, F(index_sync_interval_ms)},
    {"index_sync_before_analysis", CONF_BOOL, "true", "an analysis first applies change-log rows its node has not applied yet (one indexed read of the log head per request), so it matches what any node acknowledged before it began", NULL, 0, 0, 0, F(index_sync_before_analysis)},
    {"index_max_lag", CONF_DURATION, "5s", "health turns not-ready while the oldest unapplied change-log row is older than this, or the log was not read for this long (at least twice index_sync_interval)", NULL, 100, 3600000, 0, F(index_max_lag_ms)},
    /* video jobs on several nodes (docs/SCALING.md "Video jobs") */
    {"node_id", CONF_STRING, "", "this node's name in the shared database, owner of the video jobs it queued (empty: <hostname>-<pid>; a node restarted with the same name takes its jobs back at once)", NULL, 0, 0, 0, F(node_id)},
    {"video_job_lease", CONF_DURATION, "30s", "a node holds its video jobs this long and renews them every third of it; another node takes a job over once its lease has run out (the owner died)", NULL, 300, 3600000, 0, F(video_job_lease_ms)},
    /* test-only fault injection (never in production) */
    {"fault_analysis_error_rate", CONF_FLOAT, "0", "TEST ONLY: share of computed images failed on purpose (0..1)", NULL, 0, 1, 0, F(fault_analysis_error_rate)},
    {"fault_stage_delay_ms", CONF_INT, "0", "TEST ONLY: sleep this long before each computed image's decode (ms)", NULL, 0, 60000, 0, F(fault_stage_delay_ms)},
    /* operations: KPI windows and SLA */
    {"ops_time_scale", CONF_FLOAT, "1", "ops time runs this many times faster than real time: every ops duration (KPI windows, SLA minute, rule durations, cooldowns) is divided by it (tests use 60: an ops minute is one second)", NULL, 1, 3600, 0, F(ops_time_scale)},
    {"ops_slo_availability", CONF_FLOAT, "0.999", "availability objective: share of time up times share of non-5xx answers", NULL, 0.5, 0.999999, 0, F(ops_slo_availability)},
    {"ops_slo_analysis_p95_ms", CONF_INT, "2000", "analysis latency objective: P95 of analysis answers below this (ms)", NULL, 1, 600000, 0, F(ops_slo_analysis_p95_ms)},
    {"ops_slo_api_p95_ms", CONF_INT, "500", "API latency objective: P95 of other API answers below this (ms)", NULL, 1, 600000, 0, F(ops_slo_api_p95_ms)},
    {"ops_slo_error_rate", CONF_FLOAT, "0.01", "error-rate objective: (5xx answers + failed images) / (answers + images) below this", NULL, 0.000001, 0.5, 0, F(ops_slo_error_rate)},
    {"ops_memory_limit", CONF_SIZE, "0", "memory the memory_percent KPI is measured against (0: the cgroup v2 limit, else the machine's memory)", NULL, 0, BIG, 0, F(ops_memory_limit)},
};
/* clang-format on */

_Static_assert(VG_ARRAY_LEN(rows) <= sizeof(((conf_settings *)0)->source),
               "conf_settings.source must have a slot per row");

const conf_def *conf_table(size_t *count)
{
    *count = VG_ARRAY_LEN(rows);
    return rows;
}

/* Normalises a key: dashes to underscores, lower case. Returns the row index or -1. */
static int find_row(const char *name)
{
    char key[CONF_MAX_NAME_BYTES];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(key))
        return -1;
    for (size_t i = 0; i <= n; i++) {
        char ch = name[i];
        key[i] = ch == '-' ? '_' : (char)tolower((unsigned char)ch);
    }
    for (size_t i = 0; i < VG_ARRAY_LEN(rows); i++)
        if (strcmp(rows[i].name, key) == 0)
            return (int)i;
    return -1;
}

conf_source conf_source_of(const conf_settings *c, const char *name)
{
    int i = find_row(name);
    return i < 0 ? CONF_SRC_DEFAULT : (conf_source)c->source[i];
}

static const char *source_name(conf_source s)
{
    switch (s) {
    case CONF_SRC_FILE:
        return "config file";
    case CONF_SRC_ENV:
        return "environment";
    case CONF_SRC_FLAG:
        return "flag";
    default:
        return "default";
    }
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < VG_ARRAY_LEN(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return VG_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return VG_OK;
        }
    }
    return VG_EINVAL;
}

static int parse_int(const char *v, int64_t *out)
{
    if (!*v)
        return VG_EINVAL;
    errno = 0;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (errno || *end)
        return VG_EINVAL;
    *out = (int64_t)x;
    return VG_OK;
}

int conf_set(conf_settings *c, const char *name, const char *value, conf_source src,
             const char *origin)
{
    int i = find_row(name);
    const char *from = origin ? origin : source_name(src);
    if (i < 0)
        return vg_err_set(VG_ENOTFOUND, "unknown setting '%s' (%s)", name, from);
    const conf_def *r = &rows[i];
    const conf_def *d = r;
    char *field = (char *)c + r->offset;
    if (!value)
        value = "";
    switch (d->type) {
    case CONF_STRING: {
        char *copy = vg_strdup(value);
        if (!copy)
            return VG_ENOMEM;
        char **slot = (char **)(void *)field;
        vg_free(*slot);
        *slot = copy;
        break;
    }
    case CONF_BOOL: {
        int b;
        if (parse_bool(value, &b) != VG_OK)
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): '%s' is not a boolean (true|false)",
                              d->name, from, value);
        *(int *)(void *)field = b;
        break;
    }
    case CONF_ENUM: {
        for (int k = 0; d->choices[k]; k++) {
            if (strcasecmp(value, d->choices[k]) == 0) {
                *(int *)(void *)field = k;
                goto done;
            }
        }
        char list[256] = "";
        for (int k = 0; d->choices[k]; k++) {
            if (k)
                strncat(list, "|", sizeof(list) - strlen(list) - 1);
            strncat(list, d->choices[k], sizeof(list) - strlen(list) - 1);
        }
        return vg_err_set(VG_EINVAL, "setting '%s' (%s): '%s' is not one of %s", d->name, from,
                          value, list);
    }
    case CONF_INT: {
        int64_t x;
        if (parse_int(value, &x) != VG_OK)
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): '%s' is not an integer", d->name, from,
                              value);
        if ((double)x < d->min || (double)x > d->max)
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): %lld is outside %.0f..%.0f", d->name,
                              from, (long long)x, d->min, d->max);
        *(int64_t *)(void *)field = x;
        break;
    }
    case CONF_SIZE:
    case CONF_DURATION: {
        uint64_t x;
        int rc = d->type == CONF_SIZE ? vg_parse_size(value, &x) : vg_parse_duration_ms(value, &x);
        if (rc != VG_OK)
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): '%s' is not a %s", d->name, from,
                              value,
                              d->type == CONF_SIZE ? "size (512, 64k, 32MiB, 1G)"
                                                   : "duration (250ms, 2s, 1m, 1h)");
        if ((double)x < d->min || (double)x > d->max)
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): '%s' is outside %.0f..%.0f %s",
                              d->name, from, value, d->min, d->max,
                              d->type == CONF_SIZE ? "bytes" : "ms");
        *(uint64_t *)(void *)field = x;
        break;
    }
    case CONF_FLOAT: {
        errno = 0;
        char *end = NULL;
        double x = *value ? strtod(value, &end) : NAN;
        if (!*value || errno || *end || !isfinite(x))
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): '%s' is not a number", d->name, from,
                              value);
        if (x < d->min || x > d->max)
            return vg_err_set(VG_EINVAL, "setting '%s' (%s): %g is outside %g..%g", d->name, from,
                              x, d->min, d->max);
        *(double *)(void *)field = x;
        break;
    }
    }
done:
    c->source[i] = (unsigned char)src;
    return VG_OK;
}

int conf_init(conf_settings *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < VG_ARRAY_LEN(rows); i++) {
        int rc = conf_set(c, rows[i].name, rows[i].def, CONF_SRC_DEFAULT, "default");
        if (rc != VG_OK) {
            conf_deinit(c);
            return rc;
        }
    }
    return VG_OK;
}

void conf_deinit(conf_settings *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < VG_ARRAY_LEN(rows); i++) {
        if (rows[i].type == CONF_STRING) {
            char **slot = (char **)(void *)((char *)c + rows[i].offset);
            vg_free(*slot);
            *slot = NULL;
        }
    }
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

/* Parses one `key = value` line in place. Returns 1 with key/value set, 0 for a blank or
 * comment line, VG_EINVAL with a detail for anything else. */
static int parse_line(char *line, const char *path, unsigned lineno, char **key, char **value)
{
    char *s = trim(line);
    if (!*s || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq)
        return vg_err_set(VG_EINVAL, "%s:%u: expected 'key = value'", path, lineno);
    *eq = 0;
    char *k = trim(s);
    char *v = trim(eq + 1);
    if (!*k)
        return vg_err_set(VG_EINVAL, "%s:%u: missing key before '='", path, lineno);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close)
            return vg_err_set(VG_EINVAL, "%s:%u: unterminated quote in '%s'", path, lineno, k);
        char *rest = trim(close + 1);
        if (*rest && *rest != '#')
            return vg_err_set(VG_EINVAL, "%s:%u: text after the closing quote of '%s'", path,
                              lineno, k);
        *close = 0;
        v++;
    } else {
        char *hash = strchr(v, '#');
        if (hash) {
            *hash = 0;
            v = trim(v);
        }
    }
    *key = k;
    *value = v;
    return 1;
}

static int apply_text(conf_settings *c, const char *text, size_t len, const char *path)
{
    char line[CONF_MAX_LINE_BYTES];
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        lineno++;
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t n = end - pos;
        if (n >= sizeof(line))
            return vg_err_set(VG_EINVAL, "%s:%u: line longer than %u bytes", path, lineno,
                              CONF_MAX_LINE_BYTES - 1);
        memcpy(line, text + pos, n);
        line[n] = 0;
        if (memchr(line, 0, n))
            return vg_err_set(VG_EINVAL, "%s:%u: NUL byte in line", path, lineno);
        pos = end + 1;
        char *k = NULL, *v = NULL;
        int rc = parse_line(line, path, lineno, &k, &v);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        char origin[512];
        snprintf(origin, sizeof(origin), "%s:%u", path, lineno);
        rc = conf_set(c, k, v, CONF_SRC_FILE, origin);
        if (rc != VG_OK)
            return rc;
    }
    return VG_OK;
}

int conf_load_text(conf_settings *c, const char *text, size_t len, const char *path)
{
    /* Dry run on a scratch copy first, so a file with a bad line changes nothing. */
    conf_settings scratch;
    int rc = conf_init(&scratch);
    if (rc != VG_OK)
        return rc;
    rc = apply_text(&scratch, text, len, path);
    conf_deinit(&scratch);
    if (rc != VG_OK)
        return rc;
    return apply_text(c, text, len, path);
}

int conf_load_file(conf_settings *c, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = vg_read_file(path, CONF_MAX_FILE_BYTES, &buf, &len);
    if (rc != VG_OK)
        return vg_err_set(rc == VG_ETOOBIG ? VG_EINVAL : VG_EIO, "config file %s: %s", path,
                          vg_err_msg());
    rc = conf_load_text(c, (const char *)buf, len, path);
    vg_free(buf);
    return rc;
}

char *conf_env_name(const char *name, char *buf, size_t buflen)
{
    size_t n = (size_t)snprintf(buf, buflen, "VIGIL_%s", name);
    for (size_t i = 6; i < n && i < buflen; i++)
        buf[i] = buf[i] == '-' ? '_' : (char)toupper((unsigned char)buf[i]);
    return buf;
}

char *conf_flag_name(const char *name, char *buf, size_t buflen)
{
    size_t n = (size_t)snprintf(buf, buflen, "--%s", name);
    for (size_t i = 2; i < n && i < buflen; i++)
        if (buf[i] == '_')
            buf[i] = '-';
    return buf;
}

int conf_load_env(conf_settings *c, char *const *envp)
{
    if (!envp)
        return VG_OK;
    for (size_t i = 0; i < VG_ARRAY_LEN(rows); i++) {
        char var[CONF_MAX_NAME_BYTES + 8];
        conf_env_name(rows[i].name, var, sizeof(var));
        size_t vlen = strlen(var);
        for (char *const *e = envp; *e; e++) {
            if (strncmp(*e, var, vlen) == 0 && (*e)[vlen] == '=') {
                int rc = conf_set(c, rows[i].name, *e + vlen + 1, CONF_SRC_ENV, var);
                if (rc != VG_OK)
                    return rc;
            }
        }
    }
    return VG_OK;
}

int conf_load_args(conf_settings *c, int argc, char *const *argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return vg_err_set(VG_EINVAL, "unexpected argument '%s'", a);
        char name[CONF_MAX_NAME_BYTES];
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (n == 0 || n >= sizeof(name))
            return vg_err_set(VG_EINVAL, "unknown flag '%s'", a);
        memcpy(name, a + 2, n);
        name[n] = 0;
        if (strcmp(name, "config") == 0) {
            if (!eq)
                i++; /* its value was consumed by conf_load_all */
            continue;
        }
        int row = find_row(name);
        if (row < 0)
            return vg_err_set(VG_ENOTFOUND, "unknown flag '--%s' (see vigil serve --help)", name);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (rows[row].type == CONF_BOOL &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            value = "true";
        } else {
            if (i + 1 >= argc)
                return vg_err_set(VG_EINVAL, "flag '--%s' needs a value", name);
            value = argv[++i];
        }
        char origin[CONF_MAX_NAME_BYTES + 8];
        snprintf(origin, sizeof(origin), "flag --%s", name);
        int rc = conf_set(c, name, value, CONF_SRC_FLAG, origin);
        if (rc != VG_OK)
            return rc;
    }
    return VG_OK;
}

int conf_load_all(conf_settings *c, int argc, char *const *argv, char *const *envp)
{
    const char *path = NULL;
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, "VIGIL_CONFIG=", 13) == 0 && (*e)[13])
            path = *e + 13;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return vg_err_set(VG_EINVAL, "flag '--config' needs a file");
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
    }
    int rc;
    if (path && (rc = conf_load_file(c, path)) != VG_OK)
        return rc;
    if ((rc = conf_load_env(c, envp)) != VG_OK)
        return rc;
    return conf_load_args(c, argc, argv);
}

static void format_value(const conf_settings *c, size_t i, char *buf, size_t buflen)
{
    const conf_def *r = &rows[i];
    const char *field = (const char *)c + r->offset;
    switch (r->type) {
    case CONF_STRING: {
        const char *s = *(char *const *)(const void *)field;
        if (r->secret && s && *s)
            snprintf(buf, buflen, "(set)");
        else
            snprintf(buf, buflen, "\"%s\"", s ? s : "");
        break;
    }
    case CONF_BOOL:
        snprintf(buf, buflen, "%s", *(const int *)(const void *)field ? "true" : "false");
        break;
    case CONF_ENUM:
        snprintf(buf, buflen, "%s", r->choices[*(const int *)(const void *)field]);
        break;
    case CONF_INT:
        snprintf(buf, buflen, "%lld", (long long)*(const int64_t *)(const void *)field);
        break;
    case CONF_SIZE:
        snprintf(buf, buflen, "%llu", (unsigned long long)*(const uint64_t *)(const void *)field);
        break;
    case CONF_DURATION:
        snprintf(buf, buflen, "%llums", (unsigned long long)*(const uint64_t *)(const void *)field);
        break;
    case CONF_FLOAT:
        snprintf(buf, buflen, "%g", *(const double *)(const void *)field);
        break;
    }
}

void conf_print_help(FILE *out)
{
    fprintf(out, "usage: vigil serve [--config FILE] [--<setting> VALUE ...]\n\n"
                 "Starts the Vigil HTTP API. Each setting comes from, later winning: its default,\n"
                 "the config file (key = value lines, # comments), the environment variable,\n"
                 "the flag. Sizes take k/M/G (binary) suffixes, durations ms/s/m/h.\n\n"
                 "settings:\n");
    for (size_t i = 0; i < VG_ARRAY_LEN(rows); i++) {
        const conf_def *d = &rows[i];
        char flag[CONF_MAX_NAME_BYTES + 4], env[CONF_MAX_NAME_BYTES + 8], arg[160];
        conf_flag_name(d->name, flag, sizeof(flag));
        conf_env_name(d->name, env, sizeof(env));
        if (d->type == CONF_ENUM) {
            arg[0] = 0;
            for (int k = 0; d->choices[k]; k++) {
                if (k)
                    strncat(arg, "|", sizeof(arg) - strlen(arg) - 1);
                strncat(arg, d->choices[k], sizeof(arg) - strlen(arg) - 1);
            }
        } else {
            static const char *const kinds[] = {"N", "SIZE", "DURATION", "BOOL", "TEXT", "", "X"};
            snprintf(arg, sizeof(arg), "%s", kinds[d->type]);
        }
        fprintf(out, "  %s %s\n      %s\n      env %s, default: %s\n", flag, arg, d->help, env,
                d->def[0] ? d->def : "(empty)");
    }
    fprintf(out, "  --config FILE\n      read settings from FILE first\n      env VIGIL_CONFIG\n");
}

void conf_log_settings(const conf_settings *c)
{
    for (size_t i = 0; i < VG_ARRAY_LEN(rows); i++) {
        char v[512];
        format_value(c, i, v, sizeof(v));
        VG_INFO("conf", "%s = %s (%s)", rows[i].name, v, source_name((conf_source)c->source[i]));
    }
}

int conf_parse_listen(const char *listen, char *host, size_t hostlen, uint16_t *port)
{
    if (!listen || !*listen)
        return vg_err_set(VG_EINVAL, "listen address is empty");
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (*listen == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return vg_err_set(VG_EINVAL, "listen '%s': expected [v6addr]:port", listen);
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return vg_err_set(VG_EINVAL, "listen '%s': expected host:port", listen);
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= hostlen)
        return vg_err_set(VG_EINVAL, "listen '%s': bad host", listen);
    int64_t p;
    if (parse_int(colon + 1, &p) != VG_OK || p < 0 || p > 65535)
        return vg_err_set(VG_EINVAL, "listen '%s': port must be 0..65535", listen);
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (uint16_t)p;
    return VG_OK;
}
