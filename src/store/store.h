/*
 * store: Vigil's persistent state in one SQLite database: tenants and API keys, profiles and
 * their references (with the features the match index is built from), scans and matches (the
 * evidence), and DMCA notices with their status history.
 *
 * Contract for every function below (read this once, it is not repeated per function):
 *
 *   - Return 0 or a negative VG_E* code, with a detail in vg_err_msg() on failure:
 *       VG_ENOTFOUND   no such id, a malformed id, a soft-deleted row where the function says
 *                      so, or a row of ANOTHER TENANT (never its data: callers answer 404);
 *       VG_EINVAL      a bad argument or field (the detail names the field: HTTP 400/422);
 *       VG_EEXIST      a uniqueness rule (same image twice in one profile, same key hash);
 *       VG_ECONFLICT   an illegal notice status transition (HTTP 409);
 *       VG_EPERM       store_key_authenticate: no live key with this hash (HTTP 401);
 *       VG_EBUSY       the database stayed locked past busy_timeout_ms (HTTP 503 + Retry-After);
 *       VG_ESTORE      any other database failure (disk full, I/O error, read-only file ...);
 *       VG_ENOMEM      out of memory.
 *     On error no out-parameter is meaningful and nothing was written to the database.
 *
 *   - Tenant scoping: every call that touches tenant data takes `tenant_id` (borrowed). A row of
 *     another tenant is VG_ENOTFOUND. tenant_id == NULL means ADMIN SCOPE: reads, lists, updates
 *     and deletes then reach every tenant, and creates take the owner from the parent row (a
 *     reference from its profile, a notice from its match). Creating a profile or a scan needs a
 *     real tenant_id (VG_EINVAL otherwise). Only the HTTP layer decides who is an admin.
 *
 *   - Ids are opaque strings "<type>_<26 base32 chars>" (tnt_ key_ prf_ ref_ scn_ mat_ ntc_),
 *     at most STORE_ID_MAX-1 characters. The 26 characters are a 48-bit millisecond timestamp
 *     and an 80-bit counter in lower-case Crockford base32, generated under the single writer
 *     so that ids are strictly increasing in commit order. Why: string order == time order ==
 *     commit order, so "newest first, id < cursor" pagination is one index range scan and a
 *     page boundary never moves when rows are inserted concurrently. Each millisecond's counter
 *     starts at a random value, but ids are not secrets: access control is tenant scoping.
 *     Callers must treat ids as opaque (a later store may change the body).
 *
 *   - Lists are newest first. Pass the previous page's next_cursor to get the next page; an
 *     empty next_cursor means there is no more. A cursor is only valid for the same list; a
 *     malformed cursor is VG_EINVAL.
 *
 *   - Output records are caller-allocated structs; every string, array and blob they point to
 *     is allocated from the caller's `vg_arena` (borrowed) and lives until that arena is reset
 *     or freed. Ids are inline char arrays. Absent optional strings are NULL.
 *
 *   - Thread-safety: a `store` is shared by all threads; every function except store_close may
 *     be called concurrently. Reads run on a pool of read connections (WAL: readers never wait
 *     for the writer); writes queue for one writer connection and concurrent writes are
 *     committed together (group commit). A write returns only after its transaction committed
 *     (and, with STORE_SYNC_FULL, after the WAL was fsync'ed), so a caller may acknowledge it.
 *
 *   - Deletion is soft for profiles and references (deleted_ms set): they leave the live set
 *     (gets, lists, the index iterator) at once, but scans, matches and notices that point at
 *     them keep resolving, so evidence stays complete. A deleted reference's face descriptors and
 *     stored image bytes are erased (biometric data should not outlive a request to delete it);
 *     its descriptive fields and hashes stay for the notices that cite it. Scans, matches and
 *     notice events are immutable (the schema refuses UPDATE and DELETE on them).
 */
#ifndef VG_STORE_H
#define VG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- limits (bytes include the terminating NUL where they are string lengths) --------------- */

#define STORE_ID_MAX 32                   /* id buffer size: "prf_" + 26 chars + NUL = 31 */
#define STORE_NAME_MAX_BYTES 256          /* names, titles, legal names, emails, phones */
#define STORE_URL_MAX_BYTES 4096          /* source_url, original_url, infringing_url */
#define STORE_TEXT_MAX_BYTES 8192         /* notes, descriptions, addresses, event notes */
#define STORE_JSON_MAX_BYTES (256u << 10) /* a scan's faces_json / timings_json */
#define STORE_NOTICE_MAX_BYTES (1u << 20) /* a notice's rendered text or HTML */
#define STORE_IMAGE_MAX_BYTES (64u << 20) /* stored reference image bytes */
#define STORE_MAX_FACES_PER_REF 256
#define STORE_MAX_MATCHES_PER_SCAN 4096
#define STORE_VIDEO_MAX_BYTES (64u << 20) /* a video reference's frame-hash blob */
#define STORE_JOB_PARAMS_MAX_BYTES 16384  /* a video job's parameters (JSON) */
#define STORE_LIST_DEFAULT_LIMIT 50
#define STORE_LIST_MAX_LIMIT 1000
/* store_key_authenticate records last_used at most this often per key, so authenticating a
 * request is a read, not a write, on the hot path. */
#define STORE_KEY_TOUCH_INTERVAL_MS 60000

/* ---- opening -------------------------------------------------------------------------------- */

typedef struct store store;

typedef enum {
    /* WAL fsync'ed on every commit: a committed write survives kill -9 AND power loss. One fsync
     * per group commit (not per write). The default. */
    STORE_SYNC_FULL = 0,
    /* WAL written on commit, fsync'ed only at checkpoints: survives kill -9 (the OS has the
     * data) but the last commits may be lost on power loss or a kernel crash. */
    STORE_SYNC_NORMAL = 1,
} store_sync;

typedef struct store_config {
    const char *path;          /* borrowed; the database file (its directory must exist). The
                                * WAL and shared-memory files sit beside it (-wal, -shm). Or a
                                * postgresql:// URL: the PostgreSQL backend (same contract; see
                                * docs/OPERATIONS.md, "Storage backends"). */
    unsigned read_connections; /* read pool size; 0 = 4 */
    store_sync synchronous;    /* STORE_SYNC_FULL (default) or STORE_SYNC_NORMAL */
    uint32_t busy_timeout_ms;  /* wait for a lock held by another process; 0 = 5000 */
    unsigned max_group_ops;    /* most writes committed in one transaction; 0 = 256 */
    uint64_t max_db_bytes;     /* refuse to grow the database past this (disk quota);
                                * 0 = unlimited. Writes past it fail with VG_ESTORE. */
    unsigned checkpoint_pages; /* WAL pages (4 KiB) written since the last checkpoint that wake
                                * the background checkpointer; 0 = 1000 (SQLite only) */
    /* PostgreSQL (path = postgresql://...; ignored on SQLite): */
    unsigned txn_max_attempts;     /* tries of a write transaction that hits a serialization
                                    * failure, deadlock or lost connection; 0 = 10 */
    uint32_t connect_timeout_ms;   /* connect_timeout (rounded up to whole seconds, at least 2);
                                    * 0 = 5000 */
    uint32_t statement_timeout_ms; /* statement_timeout: a longer statement fails VG_EBUSY;
                                    * 0 = none; default 30000 */
    uint32_t reconnect_timeout_ms; /* a lost connection is re-established for this long (a
                                    * server restart takes about a second); then the database
                                    * is taken as down; 0 = 15000 */
    uint32_t retry_max_ms;         /* while down, every call fails at once (VG_EUNAVAIL,
                                    * "database unavailable") and one call tries to reconnect
                                    * after a backoff doubling from 100 ms up to this; 0 = 5000 */
} store_config;

/* Fills the defaults above with path = NULL. */
void store_config_default(store_config *cfg);

/* Opens (creating if needed) the database at cfg->path, applies pending schema migrations in
 * one transaction, opens the connection pool and starts the checkpointer thread (WAL pages are
 * copied back into the database off the write path, so commits never pay for it). A database whose
 * schema is newer than this build is refused (VG_EUNSUPPORTED), as is a file that is not a Vigil
 * SQLite database (VG_ESTORE). *out is returned owned; release with store_close. */
int store_open(const store_config *cfg, store **out);
/* Stops the checkpointer and closes every connection (the last one checkpoints the WAL and
 * removes it). All other calls must have returned.
 * store_close(NULL) is a no-op. */
void store_close(store *st);

/* Schema version of the open database (== the latest this build knows). */
int store_schema_version(const store *st);
/* Runs a trivial query on a read connection: 0 when the database answers (health checks). */
int store_ping(store *st);

/* Counters for the metrics endpoint (the obs module reads them; the store does not depend on
 * it). Monotonic since store_open, read without locks (each is an atomic). */
typedef struct store_stats {
    uint64_t queries;              /* statements stepped to completion, reads and writes */
    uint64_t errors;               /* database failures (VG_ESTORE, VG_EBUSY, VG_ENOMEM), counted
                                    * per failing statement; user errors (not found, invalid,
                                    * conflict) are not counted */
    uint64_t busy_retries;         /* times a connection waited for a lock (busy handler calls) */
    uint64_t commits;              /* write transactions committed */
    uint64_t write_ops;            /* write calls committed (> commits when group commit batched) */
    uint64_t scans_inserted;       /* scans committed */
    uint64_t checkpoints;          /* background WAL checkpoints run (SQLite) */
    uint64_t txn_retries;          /* PostgreSQL: write transactions run again (serialization
                                    * failure, deadlock, lost connection) */
    uint64_t reconnects;           /* PostgreSQL: connections re-established after a loss
                                    * (the LISTEN session's included) */
    uint64_t change_notifies;      /* PostgreSQL: change-log notifications received (LISTEN) */
    int64_t unavailable_since_ms;  /* PostgreSQL: wall clock since when the database is known down
                                    * (calls fail at once); 0 while it answers */
    uint64_t unavailable_fails;    /* PostgreSQL: calls failed at once while it was down */
    uint64_t sqlite_memory_bytes;  /* SQLite's heap in this process: page caches (bounded per
                                    * connection), schemas, prepared statements; 0 on PostgreSQL
                                    * (the server holds its memory) */
    vg_lat_snapshot query_latency; /* per statement: first step to done, error or release */
    char last_error[256];          /* detail of the last VG_ESTORE/VG_EBUSY failure, "" if none */
    int64_t last_error_ms;         /* wall clock of last_error; 0 if none */
} store_stats;
/* st borrowed; *out written (a copy). */
void store_stats_get(store *st, store_stats *out);

/* ---- listing -------------------------------------------------------------------------------- */

/* Filters for the *_list functions; zero-initialise and set what you need. Each list function
 * says which fields it honours; the others are ignored. */
typedef struct store_list_opts {
    const char *cursor;     /* borrowed; next_cursor of the previous page, NULL for the first */
    unsigned limit;         /* 0 = STORE_LIST_DEFAULT_LIMIT; more than STORE_LIST_MAX_LIMIT is
                             * capped */
    int64_t since_ms;       /* created_ms >= since_ms (0 = no lower bound) */
    int64_t until_ms;       /* created_ms < until_ms (0 = no upper bound) */
    const uint8_t *sha256;  /* borrowed, 32 bytes or NULL: scans of exactly this image */
    const char *profile_id; /* borrowed or NULL: matches / references / notices of a profile */
    const char *scan_id;    /* borrowed or NULL: matches of one scan */
    unsigned kinds;         /* matches: bit set of (1u << vg_match_kind); 0 = all kinds */
    unsigned statuses;      /* notices: bit set of (1u << store_notice_status); 0 = all */
} store_list_opts;

typedef struct store_page {
    size_t n;                       /* items returned */
    char next_cursor[STORE_ID_MAX]; /* "" when this was the last page */
} store_page;

/* ---- tenants -------------------------------------------------------------------------------- */

typedef enum { STORE_TENANT_AGENCY = 0, STORE_TENANT_CREATOR = 1 } store_tenant_kind;
/* "agency" | "creator"; parse returns VG_EINVAL for anything else. */
const char *store_tenant_kind_name(store_tenant_kind k);
int store_tenant_kind_parse(const char *s, store_tenant_kind *out);

typedef struct store_tenant {
    char id[STORE_ID_MAX];
    const char *name;
    store_tenant_kind kind;
    int64_t created_ms;
} store_tenant;

/* name borrowed (1..STORE_NAME_MAX_BYTES-1 bytes). Writes the new id to out_id. */
int store_tenant_create(store *st, const char *name, store_tenant_kind kind,
                        char out_id[STORE_ID_MAX]);
/* id borrowed; a, out as in the contract above. */
int store_tenant_get(store *st, const char *id, vg_arena *a, store_tenant *out);
/* Honours cursor, limit, since_ms, until_ms. *items is an arena array of page->n tenants. */
int store_tenant_list(store *st, const store_list_opts *opts, vg_arena *a, store_tenant **items,
                      store_page *page);

/* ---- API keys and the admin key ------------------------------------------------------------- */

/* Keys are stored as SHA-256 of the secret only; the caller generates the secret
 * (vg_random_bytes), shows it once and passes its hash. Lookups go by the hash (so an index
 * probe can only ever leak timing about a hash, never about a key), then compare it with
 * vg_ct_equal. */

typedef enum { STORE_ROLE_TENANT = 0, STORE_ROLE_ADMIN = 1 } store_role;
const char *store_role_name(store_role r); /* "tenant" | "admin" */

typedef struct store_key {
    char id[STORE_ID_MAX];
    char tenant_id[STORE_ID_MAX]; /* "" for an admin key */
    store_role role;
    const char *name;
    int64_t created_ms;
    int64_t revoked_ms;   /* 0 = live */
    int64_t last_used_ms; /* 0 = never; updated at most every STORE_KEY_TOUCH_INTERVAL_MS */
} store_key;

/* A tenant key. tenant_id, name borrowed (name 1..STORE_NAME_MAX_BYTES-1 bytes); hash is the
 * SHA-256 of the secret. VG_ENOTFOUND if the tenant does not exist, VG_EEXIST if the hash is
 * already used. */
int store_key_create(store *st, const char *tenant_id, const char *name,
                     const uint8_t hash[VG_SHA256_BYTES], char out_id[STORE_ID_MAX]);
/* Revokes a key at once (later authenticate calls fail). tenant_id scopes as usual (NULL =
 * admin). Revoking an already revoked key is VG_OK (idempotent). Admin keys are replaced with
 * store_admin_key_set, not revoked here (VG_ENOTFOUND). */
int store_key_revoke(store *st, const char *tenant_id, const char *key_id);
/* Keys of one tenant (NULL: every tenant key), revoked ones included. Honours cursor, limit. */
int store_key_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                   store_key **items, store_page *page);
/* The live key (tenant or admin) whose hash is `hash`; VG_EPERM if none (unknown or revoked).
 * Refreshes last_used_ms when it is older than STORE_KEY_TOUCH_INTERVAL_MS. a borrowed (for
 * out->name). */
int store_key_authenticate(store *st, const uint8_t hash[VG_SHA256_BYTES], vg_arena *a,
                           store_key *out);
/* *out_exists = 1 when a live admin key is stored. The server calls this at start: with no
 * configured admin key and none stored it generates one, prints it once and calls
 * store_admin_key_set. */
int store_admin_key_exists(store *st, int *out_exists);
/* Makes `hash` the one live admin key: any other live admin key is revoked in the same
 * transaction. Idempotent when `hash` already is the live admin key (so a configured key may be
 * set at every start). out_id (may be NULL) gets the admin key's id. A rotation (another admin
 * key revoked) appends a key-remove row with tenant "" and object "admin" to the change log, so
 * every node reloads its admin key (store_admin_key_hash) within one sync poll. */
int store_admin_key_set(store *st, const uint8_t hash[VG_SHA256_BYTES], char out_id[STORE_ID_MAX]);
/* The live admin key's hash into out; VG_ENOTFOUND when there is none. */
int store_admin_key_hash(store *st, uint8_t out[VG_SHA256_BYTES]);

/* ---- profiles ------------------------------------------------------------------------------- */

/* The protected person or brand, and who speaks for it in a notice. All strings borrowed. */
typedef struct store_profile_fields {
    const char *name;       /* required on create, 1..STORE_NAME_MAX_BYTES-1 */
    const char *legal_name; /* the claimant named in notices; optional */
    const char *email;      /* contact for notices; optional */
    const char *address;    /* postal address, may span lines; optional, < STORE_TEXT_MAX_BYTES */
    const char *phone;      /* optional */
    const char *notes;      /* free text; optional, < STORE_TEXT_MAX_BYTES */
} store_profile_fields;

typedef struct store_profile {
    char id[STORE_ID_MAX];
    char tenant_id[STORE_ID_MAX];
    store_profile_fields f; /* strings in the caller's arena; absent = NULL */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t deleted_ms; /* 0 = live (only store_notice_source_get returns deleted ones) */
} store_profile;

/* tenant_id required (not NULL). f borrowed. */
int store_profile_create(store *st, const char *tenant_id, const store_profile_fields *f,
                         char out_id[STORE_ID_MAX]);
/* Live profiles only. */
int store_profile_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                      store_profile *out);
/* Partial update: each non-NULL field of f replaces the stored one; "" clears an optional field
 * (name cannot be cleared). Bumps updated_ms. Live profiles only. */
int store_profile_update(store *st, const char *tenant_id, const char *id,
                         const store_profile_fields *f);
/* Soft-deletes the profile and all its live references in one transaction. When out_ref_ids is
 * not NULL, *out_ref_ids gets an arena array (from a) of the *out_n reference ids that left the
 * live set, for the caller to drop from the match index. */
int store_profile_delete(store *st, const char *tenant_id, const char *id, vg_arena *a,
                         char (**out_ref_ids)[STORE_ID_MAX], size_t *out_n);
/* Live profiles. Honours cursor, limit, since_ms, until_ms. */
int store_profile_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                       store_profile **items, store_page *page);

/* ---- references ----------------------------------------------------------------------------- */

typedef enum { STORE_REF_WORK = 0, STORE_REF_LIKENESS = 1 } store_ref_kind;
const char *store_ref_kind_name(store_ref_kind k); /* "work" | "likeness" */
int store_ref_kind_parse(const char *s, store_ref_kind *out);

/* Extra PDQ hashes of a reference besides the whole image's (parts of it and its mirror, for
 * copy detection: docs/MATCHING.md): at most this many per reference. */
#define STORE_MAX_PDQ_REGIONS                                                                      \
    7 /* trimmed (up to 3: lenient, strict, caption), centre90, centre80, top, bottom (not the     \
         mirror) */
/* Bytes of one stored region: u8 region, u8 quality, the 32-byte hash. */
#define STORE_PDQ_REGION_BYTES 34

typedef struct store_pdq_region {
    int region;       /* 1..255: analyze's name for the part (pdq_region); 0 is the whole image */
    int quality;      /* 0..100 */
    vg_pdq_hash hash; /* the part's hash as is (its dihedral variants are not stored) */
} store_pdq_region;

/* A new reference and its features (from analyze_features_compute). All pointers borrowed. */
typedef struct store_reference_new {
    const char *profile_id; /* required, a live profile of the tenant */
    store_ref_kind kind;
    /* Work metadata (kind == STORE_REF_WORK; must be NULL for a likeness): title (name limit),
     * description (text limit), original_url (URL limit), copyright_holder (name limit). */
    const char *title, *description, *original_url, *copyright_holder;
    const uint8_t *sha256;               /* required, 32 bytes: SHA-256 of the image bytes */
    const uint8_t *pdq;                  /* 32 bytes, or NULL when no PDQ hash was computed */
    int pdq_quality;                     /* 0..100 (ignored without pdq) */
    const vg_pdq_hash *pdq_dihedral;     /* 8 hashes (index 0 = as is), or NULL */
    size_t n_pdq_regions;                /* 0..STORE_MAX_PDQ_REGIONS (ignored without pdq) */
    const store_pdq_region *pdq_regions; /* n_pdq_regions entries */
    size_t n_faces;                      /* 0..STORE_MAX_FACES_PER_REF */
    const float *descriptors;            /* n_faces * VG_DESCRIPTOR_DIM floats, contiguous */
    const float *boxes;                  /* n_faces * 4 floats (x, y, w, h), or NULL */
    const uint8_t *image;                /* the image bytes to keep (only when configured to),
                                          * or NULL */
    size_t image_len;                    /* <= STORE_IMAGE_MAX_BYTES */
    /* A video work: its frame hashes as the catalog encodes them (opaque here), stored in the
     * same transaction; NULL for an image. */
    const uint8_t *video_frames;
    size_t video_frames_len; /* <= STORE_VIDEO_MAX_BYTES */
    size_t video_n_frames;
    double video_duration_s; /* finite, >= 0 */
} store_reference_new;

typedef struct store_reference {
    char id[STORE_ID_MAX];
    /* The reference's integer key (schema 8): > 0, unique in the database (across tenants),
     * assigned at create and never reused, not even after the reference is deleted. What the
     * match index holds instead of the id; store_reference_resolve turns keys back into ids. */
    int64_t key;
    char tenant_id[STORE_ID_MAX];
    char profile_id[STORE_ID_MAX];
    store_ref_kind kind;
    const char *title, *description, *original_url, *copyright_holder; /* NULL when absent */
    uint8_t sha256[32];
    int has_pdq;
    vg_pdq_hash pdq;
    int pdq_quality;
    int has_dihedral;
    vg_pdq_hash pdq_dihedral[8];
    /* Rows stored before schema version 4 (or whose blob is damaged) have none. */
    size_t n_pdq_regions;
    store_pdq_region pdq_regions[STORE_MAX_PDQ_REGIONS];
    size_t n_faces;
    const float *descriptors; /* n_faces * VG_DESCRIPTOR_DIM, or NULL when n_faces == 0 */
    const float *boxes;       /* n_faces * 4, or NULL when none were stored */
    int has_image;            /* image bytes stored (fetch with store_reference_image_get) */
    size_t image_len;
    int64_t created_ms;
    int64_t deleted_ms; /* 0 = live */
    /* A video work (schema 5): the number of frame hashes kept and the video's duration; the
     * hashes themselves only through store_reference_video_foreach. */
    int is_video;
    size_t video_n_frames;
    double video_duration_s;
} store_reference;

/* Creates a reference under a live profile (tenant_id NULL: the profile's tenant). VG_EINVAL for
 * a missing sha256, work fields on a likeness, more than STORE_MAX_FACES_PER_REF faces, a
 * descriptor that is not finite, or n_faces without descriptors; VG_EEXIST when the profile
 * already has a live reference with the same sha256. (The HTTP layer rejects a likeness photo
 * without a face before calling: the store accepts n_faces == 0 for every kind.) out_key (may be
 * NULL) gets the new reference's key (store_reference.key). */
int store_reference_create(store *st, const char *tenant_id, const store_reference_new *r,
                           char out_id[STORE_ID_MAX], int64_t *out_key);
/* Live references only. */
int store_reference_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                        store_reference *out);
/* The stored image bytes of a live reference: *out_bytes (arena) and *out_len; VG_ENOTFOUND
 * when no bytes were kept. */
int store_reference_image_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                              const uint8_t **out_bytes, size_t *out_len);
/* Soft-deletes one live reference (and erases its descriptors and image bytes). */
int store_reference_delete(store *st, const char *tenant_id, const char *id);
/* Live references, honouring cursor, limit, since_ms, until_ms, profile_id. */
int store_reference_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                         store_reference **items, store_page *page);

/* Calls cb once for every live reference (of a live profile) of tenant_id (NULL: all tenants),
 * with its features, in id order, all from one read snapshot: this is what the match index is
 * built from at start. *r and everything it points to are borrowed and valid only during the
 * call. cb returns 0 to go on; any other value stops the walk and is returned (so a callback may
 * return a VG_E* code). Writes by other threads are not blocked, and are not seen. The walk
 * holds one read connection throughout: cb must not call back into the store. */
int store_reference_foreach(store *st, const char *tenant_id,
                            int (*cb)(void *ctx, const store_reference *r), void *ctx);
/* The same walk (the same references, one snapshot) with only what the match index is built
 * from: id, key, tenant_id, profile_id, the PDQ hash and quality, the PDQ regions, n_faces and
 * descriptors; kind and sha256 are not read (zero), the texts are NULL, boxes and the dihedral
 * hashes absent, has_image 0.
 * In no particular order. Reads ~3x fewer columns, no image-length subquery and no id-order seek
 * per row (catalog_open at 10M references). */
int store_reference_foreach_index(store *st, const char *tenant_id,
                                  int (*cb)(void *ctx, const store_reference *r), void *ctx);
/* Calls cb for every live video reference (of a live profile) of tenant_id (NULL: all), in id
 * order, from one read snapshot, with its frame blob as stored (borrowed, valid during the call
 * only). Same rules as store_reference_foreach (cb must not call back into the store). */
typedef int (*store_video_fn)(void *ctx, const char *tenant_id, const char *profile_id,
                              const char *reference_id, const uint8_t *frames, size_t len);
int store_reference_video_foreach(store *st, const char *tenant_id, store_video_fn cb, void *ctx);
/* Number of live references (of live profiles) of tenant_id (NULL: all), for sizing an index. */
int store_reference_count(store *st, const char *tenant_id, size_t *out_n);

/* ---- reference keys (what the match index holds) -------------------------------------------- */

/* Most keys one store_reference_resolve takes (the index returns at most 1000 matches by
 * default; a caller with more resolves them in several calls). */
#define STORE_RESOLVE_MAX 1024

typedef struct store_ref_brief {
    int64_t key;
    int found; /* 0: no live reference of that tenant has this key (unknown, deleted, or
                * another tenant's); the fields below are then zero */
    char id[STORE_ID_MAX];
    char profile_id[STORE_ID_MAX];
    uint8_t sha256[32];
} store_ref_brief;

/* For each keys[i] (i < n), out[i] (caller's array of n) gets the LIVE reference of tenant_id
 * (required, VG_EINVAL otherwise) whose key it is, found = 1, else found = 0 (a key may repeat:
 * each copy is answered). One statement, so one snapshot, on one read connection: the keys go
 * as one parameter (a JSON array on SQLite, a BIGINT[] on PostgreSQL), so the statement is
 * prepared once per connection whatever n is and PostgreSQL costs one round trip per call.
 * VG_EINVAL for n > STORE_RESOLVE_MAX or a malformed tenant id; n == 0 answers 0 at once. keys
 * and out are borrowed. Thread-safe (a reader from the pool). */
int store_reference_resolve(store *st, const char *tenant_id, const int64_t *keys, size_t n,
                            store_ref_brief *out);
/* The key of a LIVE reference (tenant_id NULL: any tenant's): VG_ENOTFOUND when there is none
 * (unknown, deleted, another tenant's). A deleted reference's key is in its change-log row
 * (store_change.object_key). */
int store_reference_key_get(store *st, const char *tenant_id, const char *id, int64_t *out_key);

/* ---- change log (several nodes, one database: docs/SCALING.md) ------------------------------ */

/* Every write that changes what a node holds in memory appends a row to the change log in the
 * same transaction: a reference add or remove (store_reference_create / _delete, and one
 * remove per reference of a deleted profile), a profile remove (store_profile_delete) and a key
 * revoke (store_key_revoke). seq increases in commit order, so a node that applied every row up
 * to seq N and reads the rows after N misses nothing, whichever node wrote them and however
 * long it was away (within STORE_CHANGES_KEEP_MS). */

/* Rows older than this are pruned (store_changes_prune). */
#define STORE_CHANGES_KEEP_MS (7ll * 24 * 3600 * 1000)
/* Most rows one store_changes_read returns. */
#define STORE_CHANGES_MAX_READ 1024

typedef enum {
    STORE_CHANGE_REFERENCE = 0,
    STORE_CHANGE_PROFILE = 1,
    STORE_CHANGE_KEY = 2,
} store_change_kind;

typedef struct store_change {
    int64_t seq;
    char tenant_id[STORE_ID_MAX];
    store_change_kind kind;
    char object_id[STORE_ID_MAX]; /* ref_, prf_ or key_ id */
    /* A reference row's key (store_reference.key); 0 for profile and key rows, and for
     * reference rows written before schema 8, for which a reader must fall back to object_id
     * (store_reference_key_get, or its own id -> key map for a removed reference). */
    int64_t object_key;
    int remove; /* 1 remove (revoke for a key), 0 add */
    int has_sha256;
    uint8_t sha256[32]; /* a reference's image hash (its feature-cache key) */
    int64_t created_ms; /* the writer's wall clock at commit */
} store_change;

/* The last seq in the log (0 when empty). */
int store_changes_head(store *st, int64_t *out_seq);
/* Up to max (<= STORE_CHANGES_MAX_READ) rows with seq > after, in seq order, into out[]
 * (caller's array of max). *n_out gets the count (0: nothing new). */
int store_changes_read(store *st, int64_t after, store_change *out, size_t max, size_t *n_out);
/* Deletes rows written before before_ms; *n_out (may be NULL) gets how many. */
int store_changes_prune(store *st, int64_t before_ms, size_t *n_out);
/* The wake-up: fn(arg) is called, on a thread of the store's, whenever another process may
 * have appended to the log. The SQLite backend never calls it (nodes poll). On PostgreSQL it
 * starts a thread with its own session that LISTENs and calls fn once per batch of
 * notifications and once after each (re)connect of that session (notifications are not
 * replayed: the caller reads the log from where it is). Set once before the store is shared;
 * fn NULL clears it (and stops the thread); store_close stops it. */
typedef void (*store_wake_fn)(void *arg);
void store_set_wake_hook(store *st, store_wake_fn fn, void *arg);

/* ---- scans and matches (the evidence) ------------------------------------------------------- */

/* Bytes of a match's mechanism and region names, with the NUL. */
#define STORE_MECH_MAX 16

/* All pointers borrowed. */
typedef struct store_match_new {
    const char *profile_id;   /* the matched reference's profile (checked against it) */
    const char *reference_id; /* a reference of the scan's tenant; may be soft-deleted already
                               * (it was live when matched: the evidence is still recorded) */
    vg_match_kind kind;
    double distance;   /* 0 exact; Hamming bits for pdq; L2 for face (finite, >= 0) */
    double confidence; /* 0..1 */
    int dihedral;      /* pdq: 0..7 variant that matched; otherwise -1 */
    int face_index;    /* face: index into the scan's faces; otherwise -1 */
    /* pdq: how the match was found ("whole", "trimmed", "flip", "region") and, for "region",
     * which part of the reference ("centre90", ...); NULL when not told (< STORE_MECH_MAX
     * bytes each) */
    const char *mechanism, *region;
    /* a video match: its percentages and time segments as JSON (catalog's encoding, stored
     * verbatim, < STORE_JSON_MAX_BYTES); NULL for an image match */
    const char *video_json;
} store_match_new;

typedef struct store_scan_new {
    const uint8_t *sha256;    /* required, 32 bytes */
    const char *source_url;   /* optional */
    const uint8_t *pdq;       /* 32 bytes or NULL */
    int pdq_quality;          /* ignored without pdq */
    const char *faces_json;   /* optional JSON text, stored verbatim (boxes, scores) */
    const char *timings_json; /* optional JSON text, stored verbatim */
    const char *level;        /* optional, e.g. "balanced" */
    size_t n_matches;         /* 0..STORE_MAX_MATCHES_PER_SCAN */
    const store_match_new *matches;
} store_scan_new;

typedef struct store_match {
    char id[STORE_ID_MAX];
    char scan_id[STORE_ID_MAX];
    char tenant_id[STORE_ID_MAX];
    char profile_id[STORE_ID_MAX];
    char reference_id[STORE_ID_MAX];
    vg_match_kind kind;
    double distance, confidence;
    int dihedral;                   /* -1 when not pdq */
    int face_index;                 /* -1 when not face */
    char mechanism[STORE_MECH_MAX]; /* "" when not recorded (not pdq, or before schema 4) */
    char region[STORE_MECH_MAX];    /* "" unless mechanism is "region" */
    int64_t created_ms;             /* == the scan's created_ms */
    uint8_t scan_sha256[32];        /* copied from the scan for convenience */
    const char *scan_source_url;    /* ditto; NULL when the scan had none */
    const char *video_json;         /* a video match's details (schema 5); NULL otherwise */
} store_match;

typedef struct store_scan {
    char id[STORE_ID_MAX];
    char tenant_id[STORE_ID_MAX];
    int64_t created_ms;
    uint8_t sha256[32];
    const char *source_url;
    int has_pdq;
    vg_pdq_hash pdq;
    int pdq_quality;
    const char *faces_json, *timings_json, *level; /* NULL when absent */
    size_t n_matches;
    store_match *matches; /* store_scan_get: the n_matches matches in insertion order;
                           * store_scan_list: NULL (n_matches still set) */
} store_scan;

/* The analyze hot path: records a scan and its matches in one transaction (grouped with
 * concurrent writers). tenant_id required. scan_id_out gets the scan id; match_ids_out, when not
 * NULL, is a caller array of s->n_matches id buffers filled in the order of s->matches. Every
 * match's reference must belong to the tenant and to the match's profile_id (VG_ENOTFOUND). */
int store_scan_insert(store *st, const char *tenant_id, const store_scan_new *s,
                      char scan_id_out[STORE_ID_MAX], char (*match_ids_out)[STORE_ID_MAX]);
int store_scan_get(store *st, const char *tenant_id, const char *id, vg_arena *a, store_scan *out);
/* Honours cursor, limit, since_ms, until_ms, sha256. */
int store_scan_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                    store_scan **items, store_page *page);
int store_match_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                    store_match *out);
/* Honours cursor, limit, since_ms, until_ms, profile_id, scan_id, kinds. */
int store_match_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                     store_match **items, store_page *page);

/* ---- notices -------------------------------------------------------------------------------- */

/* The workflow (draft -> sent -> acknowledged -> removed | rejected | countered) is the dmca
 * module's rule table (dmca_transition_allowed / dmca_allowed_from); the store applies it
 * atomically in store_notice_set_status. */
typedef enum {
    STORE_NOTICE_DRAFT = 0,
    STORE_NOTICE_SENT = 1,
    STORE_NOTICE_ACKNOWLEDGED = 2,
    STORE_NOTICE_REMOVED = 3,
    STORE_NOTICE_REJECTED = 4,
    STORE_NOTICE_COUNTERED = 5,
} store_notice_status;
#define STORE_NOTICE_STATUS_COUNT 6
/* "draft" | "sent" | "acknowledged" | "removed" | "rejected" | "countered". */
const char *store_notice_status_name(store_notice_status s);
int store_notice_status_parse(const char *s, store_notice_status *out);

/* A person or organisation in a notice. Strings borrowed (inputs) or arena (outputs). */
typedef struct store_party {
    const char *name;    /* name limit */
    const char *email;   /* name limit */
    const char *address; /* text limit, may span lines */
    const char *phone;   /* name limit */
} store_party;

/* Everything a notice is drafted from, resolved in one read snapshot: the match, its scan
 * (matches not loaded), its reference and profile, even if those were soft-deleted since. */
typedef struct store_notice_source {
    store_match match;
    store_scan scan;
    store_reference reference; /* descriptors/image not loaded */
    store_profile profile;
} store_notice_source;

/* match_id borrowed. The source of a notice for one of the tenant's matches. */
int store_notice_source_get(store *st, const char *tenant_id, const char *match_id, vg_arena *a,
                            store_notice_source *out);

/* A drafted notice, as dmca_draft fills it. All strings borrowed. */
typedef struct store_notice_new {
    const char *match_id;       /* required */
    const char *infringing_url; /* required, URL limit */
    store_party recipient;      /* name required */
    store_party claimant;       /* copied at draft time; name required */
    const char *signature;      /* the electronic signature ("/s/ Jane Doe"), required */
    const char *text;           /* rendered plain text, required, < STORE_NOTICE_MAX_BYTES */
    const char *html;           /* rendered HTML, required, < STORE_NOTICE_MAX_BYTES */
} store_notice_new;

typedef struct store_notice_event {
    int has_from; /* 0 for the creation event */
    store_notice_status from, to;
    const char *note; /* NULL when none */
    int64_t at_ms;
} store_notice_event;

typedef struct store_notice {
    char id[STORE_ID_MAX];
    char tenant_id[STORE_ID_MAX];
    char match_id[STORE_ID_MAX];
    char profile_id[STORE_ID_MAX];   /* of the match */
    char reference_id[STORE_ID_MAX]; /* of the match */
    store_notice_status status;
    const char *infringing_url;
    store_party recipient, claimant;
    const char *signature;
    /* Frozen at draft time: the text that was (or will be) sent is the text on record, even if
     * the profile is edited or a later build renders differently. NULL in lists. */
    const char *text, *html;
    int64_t created_ms, updated_ms;
    size_t n_events;            /* store_notice_get: the whole history, oldest first */
    store_notice_event *events; /* lists: NULL, n_events 0 */
} store_notice;

/* Records a draft (status draft, one creation event) for a match of the tenant (tenant_id NULL:
 * the match's tenant). Several notices per match are allowed (one per platform). */
int store_notice_create(store *st, const char *tenant_id, const store_notice_new *n,
                        char out_id[STORE_ID_MAX]);
int store_notice_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                     store_notice *out);
/* Honours cursor, limit, since_ms, until_ms, statuses, profile_id. */
int store_notice_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                      store_notice **items, store_page *page);
/* Moves a notice to `to` if, inside the write transaction, its current status is in
 * allowed_from (a bit set of 1u << store_notice_status: pass dmca_allowed_from(to)); otherwise
 * VG_ECONFLICT with the current status in the detail. Appends an event (note borrowed,
 * optional, text limit). out_from (may be NULL) gets the status it left. */
int store_notice_set_status(store *st, const char *tenant_id, const char *id,
                            store_notice_status to, unsigned allowed_from, const char *note,
                            store_notice_status *out_from);

/* ---- video jobs ----------------------------------------------------------------------------- */

/* A long video analysis runs as a job: the row is written before the client gets its 202, runs
 * on the server's video workers, and survives a restart. The uploaded bytes sit in a file the
 * server names (`file`); the store only records the name.
 *
 * Several nodes share the jobs table (docs/SCALING.md "Video jobs"): a job is owned by the node
 * that queued it (`owner`, the node id, < STORE_JOB_OWNER_MAX_BYTES) under a lease the owner
 * renews (store_job_renew) while the job is queued or running. Only the owner starts, progresses
 * or finishes a job; another node takes it over (store_job_takeover) only once the lease has
 * expired, in one UPDATE that re-checks the expiry, so exactly one node gets it. Leases compare
 * the nodes' wall clocks: keep them in step (NTP) to well under a lease. */
#define STORE_JOB_OWNER_MAX_BYTES 128
typedef enum {
    STORE_JOB_QUEUED = 0,
    STORE_JOB_RUNNING = 1,
    STORE_JOB_DONE = 2,
    STORE_JOB_FAILED = 3,
} store_job_state;
/* "queued" | "running" | "done" | "failed". */
const char *store_job_state_name(store_job_state s);

typedef struct store_job {
    char id[STORE_ID_MAX]; /* "job_..." */
    char tenant_id[STORE_ID_MAX];
    store_job_state state;
    int attempts;       /* times a worker started it */
    double progress;    /* 0..1 */
    const char *params; /* JSON text given at create */
    const char *file;   /* where the bytes are (server's name) */
    uint64_t bytes;
    const char *result; /* JSON text when done; NULL otherwise */
    const char *error;  /* why it failed; NULL otherwise */
    int error_status;   /* HTTP status of the failure (413, 422, 500 ...); 0 otherwise */
    int64_t created_ms, updated_ms;
    const char *owner;      /* node id holding it; NULL for none */
    int64_t lease_until_ms; /* the owner's lease ends then (wall clock) */
} store_job;

/* A queued job of tenant_id (required), owned by `owner` (required) for lease_ms. params (JSON,
 * < STORE_JOB_PARAMS_MAX_BYTES), file (< STORE_URL_MAX_BYTES) and owner borrowed. */
int store_job_create(store *st, const char *tenant_id, const char *params, const char *file,
                     uint64_t bytes, const char *owner, int64_t lease_ms,
                     char out_id[STORE_ID_MAX]);
/* tenant_id scopes as usual (NULL = admin: the workers). */
int store_job_get(store *st, const char *tenant_id, const char *id, vg_arena *a, store_job *out);
/* The owner's worker takes its queued job: state running, attempts + 1, lease renewed to now +
 * lease_ms. When attempts already reached max_attempts the job is failed instead (error names the
 * count, status 500) and *out_started is 0. VG_ECONFLICT when the job is not queued (it is
 * finished, or running) or another node owns it. */
int store_job_start(store *st, const char *id, const char *owner, int64_t lease_ms,
                    int max_attempts, int *out_started);
/* Progress of a running job of owner (0..1). VG_ECONFLICT when it is not running or not owner's
 * (the lease was lost to another node). */
int store_job_progress(store *st, const char *id, const char *owner, double progress);
/* A running job of owner ends: done with result (JSON) or failed with error and error_status.
 * VG_ECONFLICT as store_job_progress: a node that lost the lease never overwrites the taker. */
int store_job_finish(store *st, const char *id, const char *owner, store_job_state state,
                     const char *result, const char *error, int error_status);
/* The heartbeat: every queued or running job of owner gets lease now + lease_ms. *out_n (may be
 * NULL): jobs renewed. */
int store_job_renew(store *st, const char *owner, int64_t lease_ms, size_t *out_n);
/* Takes over the open jobs whose lease has expired (and, with own != 0, every open job of owner:
 * at start, what this node's previous process left), in one atomic UPDATE each:
 *   - a running one that has used max_attempts fails ("the server stopped N times ...", 500);
 *   - every other one becomes queued, owned by owner, leased until now + lease_ms.
 * A job whose lease another node renewed meanwhile is not taken; two nodes taking over at once
 * get disjoint sets. The ids queued for owner go to ids[0 .. *out_n). Another node's jobs: at
 * most max are taken (oldest first; the rest at the next call). With own, all of owner's are
 * taken, the first max listed (store_job_queued lists them all); *out_failed (may be NULL)
 * counts the failed. */
int store_job_takeover(store *st, const char *owner, int64_t lease_ms, int max_attempts, int own,
                       char (*ids)[STORE_ID_MAX], size_t max, size_t *out_n, size_t *out_failed);
/* The ids of owner's queued jobs, oldest first, at most max: *out_ids an arena array (a). */
int store_job_queued(store *st, const char *owner, size_t max, vg_arena *a,
                     char (**out_ids)[STORE_ID_MAX], size_t *out_n);

#endif /* VG_STORE_H */
