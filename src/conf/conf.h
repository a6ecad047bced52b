/*
 * conf: every setting of `vigil serve` in one table. A setting has a name, a type, a default, an
 * environment variable (VIGIL_<NAME>), a flag (--<name-with-dashes>) and one help line. Values are
 * applied in layers, later wins:
 *
 *     built-in default  <  config file (--config FILE)  <  environment  <  command-line flags
 *
 * The config file is `key = value` lines; `#` starts a comment (outside quotes), blank lines are
 * ignored, a value may be wrapped in double quotes, keys use the setting names (dashes or
 * underscores). An unknown key, a bad value or a value out of range is an error that names the
 * key and where it came from; a file with a bad line changes nothing.
 *
 * Values live in conf_settings, a plain struct the rest of the server reads directly (no string
 * lookups on hot paths). Strings in it are owned by the struct; release with conf_deinit.
 * Not thread-safe while loading; read-only (and so shareable) once the server starts.
 */
#ifndef VG_CONF_H
#define VG_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CONF_INT = 0,  /* int64, range-checked */
    CONF_SIZE,     /* bytes, "64k", "32MiB", "1G" */
    CONF_DURATION, /* milliseconds, "250ms", "2s", "1m", "1h" */
    CONF_BOOL,     /* true|false|yes|no|on|off|1|0 */
    CONF_STRING,
    CONF_ENUM,  /* one of a fixed list; stored as the index into the list */
    CONF_FLOAT, /* double, range-checked */
} conf_type;

typedef enum {
    CONF_SRC_DEFAULT = 0,
    CONF_SRC_FILE,
    CONF_SRC_ENV,
    CONF_SRC_FLAG,
} conf_source;

/* Enum values (indices into the choice lists of the table). */
typedef enum {
    CONF_LOG_DEBUG = 0,
    CONF_LOG_INFO,
    CONF_LOG_WARN,
    CONF_LOG_ERROR,
    CONF_LOG_OFF
} conf_log;

/* cache_scope values. */
typedef enum { CONF_CACHE_SCOPE_TENANT = 0, CONF_CACHE_SCOPE_GLOBAL } conf_cache_scope;

typedef struct conf_settings {
    /* serving */
    char *listen; /* "host:port"; port 0 = any free port (tests) */
    char *data_dir;

    /* database backend */
    char *database;                   /* "" = <data_dir>/vigil.db; a path; or postgresql://... */
    int64_t db_read_connections;      /* store read pool */
    uint64_t db_connect_timeout_ms;   /* PostgreSQL connect_timeout */
    uint64_t db_statement_timeout_ms; /* PostgreSQL statement_timeout; 0 = none */
    int64_t db_txn_attempts;          /* PostgreSQL write-transaction tries */
    uint64_t db_reconnect_timeout_ms; /* PostgreSQL: reconnect this long, then fail fast */
    uint64_t db_retry_max_ms;         /* PostgreSQL: longest wait between probes while down */

    char *models_dir;     /* "" = the build's models directory */
    char *admin_key;      /* "" = generate at first start (stored hashed) */
    int log_level;        /* conf_log */
    int64_t http_threads; /* 0 = one per CPU */
    int64_t max_connections;
    uint64_t max_body_bytes;
    int64_t max_batch_images;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t body_deadline_ms;
    uint64_t shutdown_grace_ms;
    uint64_t retry_after_ms; /* Retry-After sent with 429/503 */
    /* HTTP hardening (slow and greedy clients, request framing) */
    int64_t max_connections_per_ip; /* 0 = no per-address limit */
    uint64_t head_deadline_ms;      /* whole request head; 0 = none */
    uint64_t max_json_body_bytes;
    uint64_t max_inflight_body_bytes; /* all bodies being received; 0 = no bound */
    int64_t max_query_params;
    /* analysis and evidence */
    int store_images;
    int default_level; /* vg_level order: speed, balanced, accuracy, memory */
    int64_t pdq_threshold;
    int64_t pdq_quality_min;
    double face_threshold;
    int faces; /* load face models and detect faces */
    /* image decoding limits (img_limits; checked from the headers before decoding) */
    int64_t max_image_pixels;
    int64_t max_jpeg_scans;
    int64_t max_lossless_pixels;
    int64_t max_decode_work;  /* work units: samples x decoder passes */
    int64_t max_decode_ratio; /* decode bytes per encoded byte beyond 128 MiB */
    /* cache */
    char *redis_url;
    int64_t cache_l1_entries;
    uint64_t cache_l1_bytes;
    uint64_t cache_l2_bytes;
    int cache_scope;            /* conf_cache_scope */
    uint64_t cache_l2_min_free; /* bytes left free on the L2 volume */
    uint64_t cache_redis_ttl_ms;
    uint64_t redis_timeout_ms;
    /* scheduling */
    int64_t queue_depth;
    uint64_t request_deadline_ms;
    int64_t batch_max_size;
    int64_t batch_max_delay_us;
    int batch_lone_split;       /* lone split (issue 13) */
    int64_t batch_lone_threads; /* networks' threads for a lone image; 0 = auto */
    int64_t replicas_min;
    int64_t replicas_max;
    /* per-tenant fairness (sched) */
    int64_t tenant_max_analyses; /* images one tenant may have queued or running; 0 = auto */
    /* alerts (ops_alert, ops_webhook): durations are ops time (divided by ops_time_scale) */
    double alert_cpu_warning, alert_cpu_critical;       /* percent */
    double alert_memory_warning, alert_memory_critical; /* percent */
    uint64_t alert_latency_warning_ms, alert_latency_critical_ms;
    double alert_error_rate_warning, alert_error_rate_critical; /* percent */
    double alert_cache_hit_warning, alert_cache_hit_critical;   /* percent, fire below */
    int64_t alert_min_requests, alert_min_lookups;
    uint64_t alert_for_ms;
    int alert_anomaly;
    double alert_anomaly_sigma;
    uint64_t alert_anomaly_warmup_ms;
    int64_t alert_anomaly_min_samples;
    int alert_burn_rate;
    uint64_t alert_escalate_after_ms; /* 0 = never */
    int64_t alert_max_events, alert_max_recent, alert_max_silences;
    char *alert_webhook; /* every severity */
    char *alert_webhook_info, *alert_webhook_warning, *alert_webhook_critical,
        *alert_webhook_emergency;
    char *alert_webhook_secret;
    char *alert_external_url;
    uint64_t alert_group_wait_ms, alert_repeat_interval_ms, alert_webhook_timeout_ms;
    int64_t alert_webhook_retries, alert_webhook_queue;
    /* self-healing (ops_heal) */
    int self_heal; /* ops_heal_mode order: off, dry-run, on */
    double self_heal_memory_percent;
    uint64_t self_heal_memory_limit; /* RSS bytes; 0 = none */
    double self_heal_p95_ms;
    double self_heal_error_rate;
    double self_heal_hit_rate;
    uint64_t self_heal_l1_budget;
    uint64_t self_heal_for_ms;
    uint64_t self_heal_cooldown_ms;
    int64_t self_heal_max_per_hour;
    /* test-only fault injection */
    double fault_analysis_error_rate;
    int64_t fault_stage_delay_ms;
    /* operations: KPI windows and SLA (ops-core) */
    double ops_time_scale;           /* every ops duration is divided by it (tests: 60) */
    double ops_slo_availability;     /* target, e.g. 0.999 */
    int64_t ops_slo_analysis_p95_ms; /* analysis P95 objective */
    int64_t ops_slo_api_p95_ms;      /* API P95 objective */
    double ops_slo_error_rate;       /* largest error rate, e.g. 0.01 */
    uint64_t ops_memory_limit;       /* memory_percent against it; 0 = cgroup, else MemTotal */
    /* video (docs/VIDEO.md, "API") */
    double video_sync_max_s;
    int64_t video_workers;
    int64_t video_max_queued_jobs;
    int64_t video_job_max_attempts;
    double video_max_duration_s;
    int64_t video_max_dimension;
    uint64_t video_child_mem_bytes;
    uint64_t video_wall_ms;
    uint64_t video_callback_timeout_ms;
    int video_callback_allow_private; /* callbacks may reach non-public addresses */
    int video_regions;                /* region hashes per sampled frame */
    double video_face_rate;           /* faces in video */
    double video_face_gap_s;
    int64_t video_face_max_frames;
    int64_t fault_video_job_delay_ms;
    /* several nodes, one database */
    uint64_t index_sync_interval_ms; /* change-log poll */
    uint64_t index_max_lag_ms;       /* readiness limit on the sync lag */
    int index_sync_before_analysis;  /* read-your-writes across nodes */
    /* video jobs on several nodes */
    char *node_id;               /* owner name of this node's jobs; "" = <hostname>-<pid> */
    uint64_t video_job_lease_ms; /* a job's lease; renewed every third of it */
    /* where each value came from, by table index (for the start-up log and tests) */
    unsigned char source[192];
} conf_settings;

/* One row of the settings table (read-only, static). */
typedef struct conf_def {
    const char *name; /* "max_body_bytes" */
    conf_type type;
    const char *def; /* default, as text in the setting's own syntax */
    const char *help;
    const char *const *choices; /* CONF_ENUM: NULL-terminated list */
    double min, max;            /* CONF_INT / CONF_FLOAT / CONF_SIZE / CONF_DURATION range */
    int secret;                 /* never printed */
    size_t offset;              /* of the value's field in conf_settings */
} conf_def;

/* The table and its length (borrowed, static). */
const conf_def *conf_table(size_t *count);

/* Fills *c with every default. Returns VG_ENOMEM. */
int conf_init(conf_settings *c);
void conf_deinit(conf_settings *c);

/* Sets one setting by name (dashes or underscores) from text, validating it. `origin` names the
 * place for error messages ("flag --listen", "/etc/vigil.conf:12"), borrowed. On error *c is
 * unchanged and the detail names the key: VG_ENOTFOUND unknown key, VG_EINVAL bad value. */
int conf_set(conf_settings *c, const char *name, const char *value, conf_source src,
             const char *origin);

/* Applies a config file (borrowed path). VG_EIO when it cannot be read; first bad line fails. */
int conf_load_file(conf_settings *c, const char *path);
/* Applies a config file's text (borrowed); `path` is only used in messages. */
int conf_load_text(conf_settings *c, const char *text, size_t len, const char *path);
/* Applies every VIGIL_<NAME> variable present in envp (borrowed, NULL-terminated; pass environ).
 * Variables with the prefix that name no setting are ignored, except VIGIL_CONFIG. */
int conf_load_env(conf_settings *c, char *const *envp);
/* Applies flags: argv[1..argc-1] as `--name value` or `--name=value`; a bool flag may stand alone
 * (`--store-images`). `--config FILE` is skipped here (see conf_load_all). Anything else is
 * VG_EINVAL naming the argument. */
int conf_load_args(conf_settings *c, int argc, char *const *argv);

/* The whole layering for `vigil serve`: finds --config in argv (or VIGIL_CONFIG), then file,
 * environment, flags. */
int conf_load_all(conf_settings *c, int argc, char *const *argv, char *const *envp);

/* Writes the help text: one block per setting with flag, env var, default and help. */
void conf_print_help(FILE *out);
/* Where the value of setting `name` came from (CONF_SRC_DEFAULT for an unknown name). */
conf_source conf_source_of(const conf_settings *c, const char *name);
/* Logs every setting with its value and source (secrets masked), at info level. */
void conf_log_settings(const conf_settings *c);

/* Environment variable and flag names of a setting ("VIGIL_MAX_BODY_BYTES", "--max-body-bytes"),
 * written into buf (returns buf). */
char *conf_env_name(const char *name, char *buf, size_t buflen);
char *conf_flag_name(const char *name, char *buf, size_t buflen);

/* Parses "host:port" or "[v6]:port" into host (buf of hostlen) and port. VG_EINVAL otherwise. */
int conf_parse_listen(const char *listen, char *host, size_t hostlen, uint16_t *port);

#endif /* VG_CONF_H */
