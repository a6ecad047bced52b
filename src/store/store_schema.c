/*
 * store_schema: the database schema as an ordered list of migrations, versioned in code.
 *
 * PRAGMA user_version is the source of truth for the schema version (it lives in the database
 * header, so it changes atomically with the migration's transaction); schema_migrations keeps a
 * human-readable history of when each step was applied. Rules for adding a migration: append,
 * never edit a released one; each step must be valid on a database holding data.
 *
 * Design notes:
 *   - ids are TEXT primary keys whose order is creation order (see store.h), so every list is a
 *     range scan on an index (tenant_id, id) read backwards;
 *   - enumerations are stored as text ('work', 'pdq', 'draft'...) so the file is readable with
 *     the sqlite3 shell, with CHECK constraints keeping them closed;
 *   - evidence is immutable in the schema itself: triggers refuse UPDATE/DELETE on scans,
 *     matches and notice events, and any change to a notice other than its status;
 *   - profiles and references are never deleted, only marked (deleted_ms), so foreign keys from
 *     the evidence always resolve.
 */
#include <stdio.h>

#include "store/store_int.h"

static const store_migration MIGRATIONS[] = {
    {1, "tenants, api keys, profiles, references",
     "CREATE TABLE schema_migrations(\n"
     "  version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_ms INTEGER NOT NULL);\n"
     "CREATE TABLE tenants(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  name TEXT NOT NULL,\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('agency', 'creator')),\n"
     "  created_ms INTEGER NOT NULL);\n"
     "CREATE TABLE api_keys(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT REFERENCES tenants(id),\n"
     "  role TEXT NOT NULL CHECK (role IN ('tenant', 'admin')),\n"
     "  name TEXT NOT NULL,\n"
     "  key_hash BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),\n"
     "  created_ms INTEGER NOT NULL,\n"
     "  revoked_ms INTEGER,\n"
     "  last_used_ms INTEGER,\n"
     "  CHECK ((role = 'admin') = (tenant_id IS NULL)));\n"
     "CREATE INDEX api_keys_tenant ON api_keys(tenant_id, id);\n"
     "CREATE TABLE profiles(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  name TEXT NOT NULL,\n"
     "  legal_name TEXT, email TEXT, address TEXT, phone TEXT, notes TEXT,\n"
     "  created_ms INTEGER NOT NULL,\n"
     "  updated_ms INTEGER NOT NULL,\n"
     "  deleted_ms INTEGER);\n"
     "CREATE INDEX profiles_tenant ON profiles(tenant_id, id);\n"
     "CREATE TABLE refs(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  profile_id TEXT NOT NULL REFERENCES profiles(id),\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('work', 'likeness')),\n"
     "  title TEXT, description TEXT, original_url TEXT, copyright_holder TEXT,\n"
     "  sha256 BLOB NOT NULL CHECK (length(sha256) = 32),\n"
     "  pdq BLOB CHECK (pdq IS NULL OR length(pdq) = 32),\n"
     "  pdq_quality INTEGER,\n"
     "  pdq_dihedral BLOB CHECK (pdq_dihedral IS NULL OR length(pdq_dihedral) = 256),\n"
     "  n_faces INTEGER NOT NULL DEFAULT 0,\n"
     "  descriptors BLOB,\n" /* n_faces x 128 float32, little-endian */
     "  boxes BLOB,\n"       /* n_faces x 4 float32, little-endian */
     "  created_ms INTEGER NOT NULL,\n"
     "  deleted_ms INTEGER);\n"
     "CREATE INDEX refs_tenant ON refs(tenant_id, id);\n"
     "CREATE INDEX refs_profile ON refs(profile_id, id);\n"
     "CREATE UNIQUE INDEX refs_live_sha256 ON refs(profile_id, sha256) WHERE deleted_ms IS NULL;\n"
     /* Image bytes apart, so walking refs for the index never pages through images. */
     "CREATE TABLE ref_images(\n"
     "  ref_id TEXT PRIMARY KEY REFERENCES refs(id),\n"
     "  bytes BLOB NOT NULL);\n"},

    {2, "scans and matches (immutable evidence)",
     "CREATE TABLE scans(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  created_ms INTEGER NOT NULL,\n"
     "  sha256 BLOB NOT NULL CHECK (length(sha256) = 32),\n"
     "  source_url TEXT,\n"
     "  pdq BLOB CHECK (pdq IS NULL OR length(pdq) = 32),\n"
     "  pdq_quality INTEGER,\n"
     "  faces_json TEXT, timings_json TEXT, level TEXT,\n"
     "  n_matches INTEGER NOT NULL);\n"
     "CREATE INDEX scans_tenant ON scans(tenant_id, id);\n"
     "CREATE INDEX scans_sha256 ON scans(tenant_id, sha256, id);\n"
     "CREATE TABLE matches(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  scan_id TEXT NOT NULL REFERENCES scans(id),\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  profile_id TEXT NOT NULL REFERENCES profiles(id),\n"
     "  reference_id TEXT NOT NULL REFERENCES refs(id),\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('exact', 'pdq', 'face')),\n"
     "  distance REAL NOT NULL,\n"
     "  confidence REAL NOT NULL,\n"
     "  dihedral INTEGER NOT NULL,\n"
     "  face_index INTEGER NOT NULL,\n"
     "  created_ms INTEGER NOT NULL);\n"
     "CREATE INDEX matches_tenant ON matches(tenant_id, id);\n"
     "CREATE INDEX matches_scan ON matches(scan_id, id);\n"
     "CREATE INDEX matches_profile ON matches(tenant_id, profile_id, id);\n"
     "CREATE TRIGGER scans_no_update BEFORE UPDATE ON scans\n"
     "  BEGIN SELECT RAISE(ABORT, 'scans are immutable evidence'); END;\n"
     "CREATE TRIGGER scans_no_delete BEFORE DELETE ON scans\n"
     "  BEGIN SELECT RAISE(ABORT, 'scans are immutable evidence'); END;\n"
     "CREATE TRIGGER matches_no_update BEFORE UPDATE ON matches\n"
     "  BEGIN SELECT RAISE(ABORT, 'matches are immutable evidence'); END;\n"
     "CREATE TRIGGER matches_no_delete BEFORE DELETE ON matches\n"
     "  BEGIN SELECT RAISE(ABORT, 'matches are immutable evidence'); END;\n"},

    {3, "notices and their append-only event history",
     "CREATE TABLE notices(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  match_id TEXT NOT NULL REFERENCES matches(id),\n"
     "  status TEXT NOT NULL CHECK (status IN\n"
     "    ('draft', 'sent', 'acknowledged', 'removed', 'rejected', 'countered')),\n"
     "  infringing_url TEXT NOT NULL,\n"
     "  recipient_name TEXT NOT NULL, recipient_email TEXT, recipient_address TEXT,\n"
     "  recipient_phone TEXT,\n"
     "  claimant_name TEXT NOT NULL, claimant_email TEXT, claimant_address TEXT,\n"
     "  claimant_phone TEXT,\n"
     "  signature TEXT NOT NULL,\n"
     "  body_text TEXT NOT NULL,\n"
     "  body_html TEXT NOT NULL,\n"
     "  created_ms INTEGER NOT NULL,\n"
     "  updated_ms INTEGER NOT NULL);\n"
     "CREATE INDEX notices_tenant ON notices(tenant_id, id);\n"
     "CREATE INDEX notices_match ON notices(match_id);\n"
     "CREATE TRIGGER notices_frozen BEFORE UPDATE OF id, tenant_id, match_id, infringing_url,\n"
     "  recipient_name, recipient_email, recipient_address, recipient_phone, claimant_name,\n"
     "  claimant_email, claimant_address, claimant_phone, signature, body_text, body_html,\n"
     "  created_ms ON notices\n"
     "  BEGIN SELECT RAISE(ABORT, 'a notice is frozen at draft time'); END;\n"
     "CREATE TRIGGER notices_no_delete BEFORE DELETE ON notices\n"
     "  BEGIN SELECT RAISE(ABORT, 'notices are evidence'); END;\n"
     "CREATE TABLE notice_events(\n"
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
     "  notice_id TEXT NOT NULL REFERENCES notices(id),\n"
     "  from_status TEXT,\n"
     "  to_status TEXT NOT NULL,\n"
     "  note TEXT,\n"
     "  at_ms INTEGER NOT NULL);\n"
     "CREATE INDEX notice_events_notice ON notice_events(notice_id, id);\n"
     "CREATE TRIGGER notice_events_no_update BEFORE UPDATE ON notice_events\n"
     "  BEGIN SELECT RAISE(ABORT, 'notice history is append-only'); END;\n"
     "CREATE TRIGGER notice_events_no_delete BEFORE DELETE ON notice_events\n"
     "  BEGIN SELECT RAISE(ABORT, 'notice history is append-only'); END;\n"},

    /* Copy detection (docs/MATCHING.md): the extra hashes of a reference (trimmed content,
     * mirror, centre crops), n x (u8 region, u8 quality, 32-byte hash); and how each PDQ match
     * was found. Older rows keep NULL: a reference without regions matches on its whole hash
     * only, an older match has no mechanism. */
    {4, "reference PDQ regions, match mechanism",
     "ALTER TABLE refs ADD COLUMN pdq_regions BLOB\n"
     "  CHECK (pdq_regions IS NULL OR length(pdq_regions) % 34 = 0);\n"
     "ALTER TABLE matches ADD COLUMN mechanism TEXT\n"
     "  CHECK (mechanism IS NULL OR mechanism IN ('whole', 'trimmed', 'flip', 'region'));\n"
     "ALTER TABLE matches ADD COLUMN region TEXT;\n"},

    /* Video (docs/VIDEO.md, "API"): a work may be a video, kept as the vPDQ frame hashes the
     * catalog's video index is built from (an opaque blob of fixed-size frame records, apart
     * from refs so the image index walk never pages through it); a video match keeps its
     * percentages and time segments as JSON beside the match row (NULL for images); long
     * analyses run as jobs that survive a restart. */
    {5, "reference video frames, video match details, video jobs",
     "CREATE TABLE ref_videos(\n"
     "  ref_id TEXT PRIMARY KEY REFERENCES refs(id),\n"
     "  n_frames INTEGER NOT NULL,\n"
     "  duration_s REAL NOT NULL,\n"
     "  frames BLOB NOT NULL);\n"
     "ALTER TABLE matches ADD COLUMN video TEXT;\n"
     "CREATE TABLE video_jobs(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),\n"
     "  attempts INTEGER NOT NULL DEFAULT 0,\n"
     "  progress REAL NOT NULL DEFAULT 0,\n"
     "  params TEXT NOT NULL,\n"
     "  file TEXT NOT NULL,\n"
     "  bytes INTEGER NOT NULL,\n"
     "  result TEXT, error TEXT, error_status INTEGER,\n"
     "  created_ms INTEGER NOT NULL,\n"
     "  updated_ms INTEGER NOT NULL);\n"
     "CREATE INDEX video_jobs_tenant ON video_jobs(tenant_id, id);\n"
     "CREATE INDEX video_jobs_open ON video_jobs(state, id)\n"
     "  WHERE state IN ('queued', 'running');\n"},

    /* The change log every node keeps its in-memory index in step from (docs/SCALING.md): one
     * row per reference add or remove, profile remove and key revoke, written in the same
     * transaction as the change itself, so a committed change is always in the log and a
     * rolled-back one never is. seq orders the rows in commit order (one writer at a time);
     * sha256 names the feature-cache entries a removed reference's other nodes must erase.
     * Rows are pruned after STORE_CHANGES_KEEP_MS: a node that was away longer rebuilds its
     * index from the tables at start, as every node does. */
    {6, "change log for multi-node index sync",
     "CREATE TABLE changes(\n"
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
     "  tenant_id TEXT NOT NULL,\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('reference', 'profile', 'key')),\n"
     "  object_id TEXT NOT NULL,\n"
     "  op TEXT NOT NULL CHECK (op IN ('add', 'remove')),\n"
     "  sha256 BLOB CHECK (sha256 IS NULL OR length(sha256) = 32),\n"
     "  created_ms INTEGER NOT NULL);\n"
     "CREATE INDEX changes_created ON changes(created_ms);\n"},

    /* Video jobs owned by a node with a lease (docs/SCALING.md "Video jobs"): the owner renews
     * lease_until_ms while the job is queued or running on it; another node takes a job over
     * only once its lease has expired, in one UPDATE that re-checks the expiry, so a live
     * node's job is never taken and a dead node's is taken by exactly one node. Rows from
     * before have no owner and lease 0: expired, taken by the first node that looks. */
    {7, "video job owner and lease",
     "ALTER TABLE video_jobs ADD COLUMN owner TEXT;\n"
     "ALTER TABLE video_jobs ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;\n"},

    /* Reference integer keys: the in-memory match index holds a reference's small integer key
     * instead of its id string and hashes (10M PDQ hashes in 1 GB), and resolves the few keys
     * a query returns through store_reference_resolve. A key is > 0, unique, and never reused:
     * references are only soft-deleted (deleted_ms; no statement deletes a refs row), so the
     * largest key ever handed out stays in the table and a new reference takes MAX(ikey) + 1
     * inside its insert's write transaction (one writer at a time: SQLite's database lock).
     * Existing rows take their rowid, unique and > 0 (a rowid table without INTEGER PRIMARY
     * KEY): one UPDATE, ~4 s for 1M references. ADD COLUMN cannot say NOT NULL without a
     * default: every INSERT INTO refs of schema 8 writes ikey. The change log's reference rows
     * carry the key too (object_key; NULL in rows written before, read as 0). */
    {8, "reference integer keys",
     "ALTER TABLE refs ADD COLUMN ikey INTEGER CHECK (ikey IS NULL OR ikey > 0);\n"
     "UPDATE refs SET ikey = rowid;\n"
     "CREATE UNIQUE INDEX refs_ikey ON refs(ikey);\n"
     "ALTER TABLE changes ADD COLUMN object_key INTEGER;\n"},
};

const store_migration *store__migrations(size_t *n)
{
    *n = VG_ARRAY_LEN(MIGRATIONS);
    return MIGRATIONS;
}

static int record_step(sq_db *db, const store_migration *m)
{
    sq_stmt *s = NULL;
    int err = store__sq_prepare(
        db, "INSERT INTO schema_migrations(version, description, applied_ms) VALUES(?, ?, ?)", &s);
    if (err)
        return err;
    err = store__sq_bind_int64(s, 1, m->version);
    if (!err)
        err = store__sq_bind_text(s, 2, m->description);
    if (!err)
        err = store__sq_bind_int64(s, 3, vg_wall_ms());
    if (err) {
        store__sq_release(s);
        return err;
    }
    return store__sq_run(s);
}

int store__migrate(sq_db *db, int target, int *out_version)
{
    size_t n;
    const store_migration *m = store__migrations(&n);
    if (target < 0 || (size_t)target > n)
        return vg_err_set(VG_EINVAL, "store: migration target %d out of range", target);
    /* IMMEDIATE: two processes opening the same new file cannot both migrate it. On
     * PostgreSQL an advisory lock held to the end of the transaction does the same for nodes
     * starting at once: the second waits, then finds the schema up to date (READ COMMITTED,
     * so that its reads after the wait see what the first one committed). */
    int pg = store__sq_kind(db) == SQ_PG;
    int err = store__sq_exec(db, pg ? "BEGIN ISOLATION LEVEL READ COMMITTED" : "BEGIN IMMEDIATE");
    /* A migration may rewrite big tables, and a node may wait for another's migration: no
     * lock or statement timeout for this one transaction. */
    if (!err && pg)
        err = store__sq_exec(db, "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0");
    if (!err && pg)
        err = store__pg_migration_lock(db);
    if (err) {
        if (store__sq_in_txn(db))
            store__sq_exec(db, "ROLLBACK");
        return err;
    }
    int version = 0;
    err = store__sq_user_version(db, &version);
    if (!err && version == 0) {
        int tables = 0;
        err = store__sq_table_count(db, &tables);
        if (!err && tables > 0)
            err = vg_err_set(VG_ESTORE,
                             "database has %d tables but no Vigil schema version: not a Vigil "
                             "database",
                             tables);
    }
    if (!err && version > target)
        err = vg_err_set(VG_EUNSUPPORTED,
                         "database schema version %d is newer than this build's %d: refusing to "
                         "open it (upgrade Vigil)",
                         version, target);
    int from = version;
    for (; !err && version < target; version++) {
        const store_migration *step = &m[version];
        const char *sql = pg ? store__pg_migration_sql(step->version) : step->sql;
        err = sql ? store__sq_exec(db, sql)
                  : vg_err_set(VG_EINTERNAL,
                               "migration %d has no PostgreSQL text (src/store/store_schema_pg.c)",
                               step->version);
        if (!err)
            err = record_step(db, step);
        if (err)
            VG_ERROR("store", "migration %d (%s) failed: %s", step->version, step->description,
                     vg_err_msg());
    }
    if (!err)
        err = store__sq_set_user_version(db, version);
    if (!err)
        err = store__sq_exec(db, "COMMIT");
    if (err) {
        if (store__sq_in_txn(db)) {
            char keep[256];
            snprintf(keep, sizeof keep, "%s", vg_err_msg());
            store__sq_exec(db, "ROLLBACK");
            vg_err_set(err, "%s", keep);
        }
        return err;
    }
    if (version != from)
        VG_INFO("store", "schema migrated from version %d to %d", from, version);
    *out_version = version;
    return 0;
}
