/*
 * store_schema_pg: the PostgreSQL text of each migration in store_schema.c, same numbers, same
 * tables and columns, in PostgreSQL's dialect: BYTEA for BLOB, BIGINT for INTEGER (SQLite's
 * integers are 64-bit), DOUBLE PRECISION for REAL, an identity column for AUTOINCREMENT, and
 * the immutability triggers as one plpgsql function that raises the trigger's message.
 *
 * Adding a migration: append its SQLite text to store_schema.c AND its PostgreSQL text here
 * under the same version number. A version without a text here makes store_open on PostgreSQL
 * fail with "migration N has no PostgreSQL text" (and test_store_pg fail), never half-migrate.
 * The version is recorded in the table schema_version (PostgreSQL has no user_version), and the
 * history in schema_migrations as on SQLite.
 */
#include <stddef.h>

#include "store/store_int.h"

static const store_migration PG_MIGRATIONS[] = {
    {1, "tenants, api keys, profiles, references",
     "CREATE TABLE schema_migrations(\n"
     "  version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_ms BIGINT NOT NULL);\n"
     "CREATE TABLE tenants(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  name TEXT NOT NULL,\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('agency', 'creator')),\n"
     "  created_ms BIGINT NOT NULL);\n"
     "CREATE TABLE api_keys(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT REFERENCES tenants(id),\n"
     "  role TEXT NOT NULL CHECK (role IN ('tenant', 'admin')),\n"
     "  name TEXT NOT NULL,\n"
     "  key_hash BYTEA NOT NULL UNIQUE CHECK (length(key_hash) = 32),\n"
     "  created_ms BIGINT NOT NULL,\n"
     "  revoked_ms BIGINT,\n"
     "  last_used_ms BIGINT,\n"
     "  CHECK ((role = 'admin') = (tenant_id IS NULL)));\n"
     "CREATE INDEX api_keys_tenant ON api_keys(tenant_id, id);\n"
     "CREATE TABLE profiles(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  name TEXT NOT NULL,\n"
     "  legal_name TEXT, email TEXT, address TEXT, phone TEXT, notes TEXT,\n"
     "  created_ms BIGINT NOT NULL,\n"
     "  updated_ms BIGINT NOT NULL,\n"
     "  deleted_ms BIGINT);\n"
     "CREATE INDEX profiles_tenant ON profiles(tenant_id, id);\n"
     "CREATE TABLE refs(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  profile_id TEXT NOT NULL REFERENCES profiles(id),\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('work', 'likeness')),\n"
     "  title TEXT, description TEXT, original_url TEXT, copyright_holder TEXT,\n"
     "  sha256 BYTEA NOT NULL CHECK (length(sha256) = 32),\n"
     "  pdq BYTEA CHECK (pdq IS NULL OR length(pdq) = 32),\n"
     "  pdq_quality BIGINT,\n"
     "  pdq_dihedral BYTEA CHECK (pdq_dihedral IS NULL OR length(pdq_dihedral) = 256),\n"
     "  n_faces BIGINT NOT NULL DEFAULT 0,\n"
     "  descriptors BYTEA,\n"
     "  boxes BYTEA,\n"
     "  created_ms BIGINT NOT NULL,\n"
     "  deleted_ms BIGINT);\n"
     "CREATE INDEX refs_tenant ON refs(tenant_id, id);\n"
     "CREATE INDEX refs_profile ON refs(profile_id, id);\n"
     "CREATE UNIQUE INDEX refs_live_sha256 ON refs(profile_id, sha256) WHERE deleted_ms IS NULL;\n"
     "CREATE TABLE ref_images(\n"
     "  ref_id TEXT PRIMARY KEY REFERENCES refs(id),\n"
     "  bytes BYTEA NOT NULL);\n"},

    {2, "scans and matches (immutable evidence)",
     /* One function for every "refuse this change" trigger: its argument is the message. */
     "CREATE OR REPLACE FUNCTION vigil_refuse() RETURNS trigger LANGUAGE plpgsql AS\n"
     "  $$BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END$$;\n"
     "CREATE TABLE scans(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  created_ms BIGINT NOT NULL,\n"
     "  sha256 BYTEA NOT NULL CHECK (length(sha256) = 32),\n"
     "  source_url TEXT,\n"
     "  pdq BYTEA CHECK (pdq IS NULL OR length(pdq) = 32),\n"
     "  pdq_quality BIGINT,\n"
     "  faces_json TEXT, timings_json TEXT, level TEXT,\n"
     "  n_matches BIGINT NOT NULL);\n"
     "CREATE INDEX scans_tenant ON scans(tenant_id, id);\n"
     "CREATE INDEX scans_sha256 ON scans(tenant_id, sha256, id);\n"
     "CREATE TABLE matches(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  scan_id TEXT NOT NULL REFERENCES scans(id),\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  profile_id TEXT NOT NULL REFERENCES profiles(id),\n"
     "  reference_id TEXT NOT NULL REFERENCES refs(id),\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('exact', 'pdq', 'face')),\n"
     "  distance DOUBLE PRECISION NOT NULL,\n"
     "  confidence DOUBLE PRECISION NOT NULL,\n"
     "  dihedral BIGINT NOT NULL,\n"
     "  face_index BIGINT NOT NULL,\n"
     "  created_ms BIGINT NOT NULL);\n"
     "CREATE INDEX matches_tenant ON matches(tenant_id, id);\n"
     "CREATE INDEX matches_scan ON matches(scan_id, id);\n"
     "CREATE INDEX matches_profile ON matches(tenant_id, profile_id, id);\n"
     "CREATE TRIGGER scans_no_update BEFORE UPDATE ON scans FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('scans are immutable evidence');\n"
     "CREATE TRIGGER scans_no_delete BEFORE DELETE ON scans FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('scans are immutable evidence');\n"
     "CREATE TRIGGER matches_no_update BEFORE UPDATE ON matches FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('matches are immutable evidence');\n"
     "CREATE TRIGGER matches_no_delete BEFORE DELETE ON matches FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('matches are immutable evidence');\n"},

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
     "  created_ms BIGINT NOT NULL,\n"
     "  updated_ms BIGINT NOT NULL);\n"
     "CREATE INDEX notices_tenant ON notices(tenant_id, id);\n"
     "CREATE INDEX notices_match ON notices(match_id);\n"
     "CREATE TRIGGER notices_frozen BEFORE UPDATE OF id, tenant_id, match_id, infringing_url,\n"
     "  recipient_name, recipient_email, recipient_address, recipient_phone, claimant_name,\n"
     "  claimant_email, claimant_address, claimant_phone, signature, body_text, body_html,\n"
     "  created_ms ON notices FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('a notice is frozen at draft time');\n"
     "CREATE TRIGGER notices_no_delete BEFORE DELETE ON notices FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('notices are evidence');\n"
     "CREATE TABLE notice_events(\n"
     "  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
     "  notice_id TEXT NOT NULL REFERENCES notices(id),\n"
     "  from_status TEXT,\n"
     "  to_status TEXT NOT NULL,\n"
     "  note TEXT,\n"
     "  at_ms BIGINT NOT NULL);\n"
     "CREATE INDEX notice_events_notice ON notice_events(notice_id, id);\n"
     "CREATE TRIGGER notice_events_no_update BEFORE UPDATE ON notice_events FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('notice history is append-only');\n"
     "CREATE TRIGGER notice_events_no_delete BEFORE DELETE ON notice_events FOR EACH ROW\n"
     "  EXECUTE FUNCTION vigil_refuse('notice history is append-only');\n"},

    {4, "reference PDQ regions, match mechanism",
     "ALTER TABLE refs ADD COLUMN pdq_regions BYTEA\n"
     "  CHECK (pdq_regions IS NULL OR length(pdq_regions) % 34 = 0);\n"
     "ALTER TABLE matches ADD COLUMN mechanism TEXT\n"
     "  CHECK (mechanism IS NULL OR mechanism IN ('whole', 'trimmed', 'flip', 'region'));\n"
     "ALTER TABLE matches ADD COLUMN region TEXT;\n"},

    {5, "reference video frames, video match details, video jobs",
     "CREATE TABLE ref_videos(\n"
     "  ref_id TEXT PRIMARY KEY REFERENCES refs(id),\n"
     "  n_frames BIGINT NOT NULL,\n"
     "  duration_s DOUBLE PRECISION NOT NULL,\n"
     "  frames BYTEA NOT NULL);\n"
     "ALTER TABLE matches ADD COLUMN video TEXT;\n"
     "CREATE TABLE video_jobs(\n"
     "  id TEXT PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),\n"
     "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),\n"
     "  attempts BIGINT NOT NULL DEFAULT 0,\n"
     "  progress DOUBLE PRECISION NOT NULL DEFAULT 0,\n"
     "  params TEXT NOT NULL,\n"
     "  file TEXT NOT NULL,\n"
     "  bytes BIGINT NOT NULL,\n"
     "  result TEXT, error TEXT, error_status BIGINT,\n"
     "  created_ms BIGINT NOT NULL,\n"
     "  updated_ms BIGINT NOT NULL);\n"
     "CREATE INDEX video_jobs_tenant ON video_jobs(tenant_id, id);\n"
     "CREATE INDEX video_jobs_open ON video_jobs(state, id)\n"
     "  WHERE state IN ('queued', 'running');\n"},
    {6, "change log for multi-node index sync",
     "CREATE TABLE changes(\n"
     "  seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
     "  tenant_id TEXT NOT NULL,\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('reference', 'profile', 'key')),\n"
     "  object_id TEXT NOT NULL,\n"
     "  op TEXT NOT NULL CHECK (op IN ('add', 'remove')),\n"
     "  sha256 BYTEA CHECK (sha256 IS NULL OR length(sha256) = 32),\n"
     "  created_ms BIGINT NOT NULL);\n"
     "CREATE INDEX changes_created ON changes(created_ms);\n"},
    {7, "video job owner and lease",
     "ALTER TABLE video_jobs ADD COLUMN owner TEXT;\n"
     "ALTER TABLE video_jobs ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0;\n"},
    /* Reference integer keys (store_schema.c, 8): here a BIGSERIAL, whose sequence
     * (refs_ikey_seq) numbers the existing rows as the column is added (one table rewrite) and
     * every new one by default. A sequence never hands out a value twice, whichever node and
     * transaction asks and whether or not it commits (gaps, never reuse), and refs rows are
     * never deleted. */
    {8, "reference integer keys",
     "ALTER TABLE refs ADD COLUMN ikey BIGSERIAL CHECK (ikey > 0);\n"
     "CREATE UNIQUE INDEX refs_ikey ON refs(ikey);\n"
     "ALTER TABLE changes ADD COLUMN object_key BIGINT;\n"},
};

const char *store__pg_migration_sql(int version)
{
    for (size_t i = 0; i < VG_ARRAY_LEN(PG_MIGRATIONS); i++) {
        if (PG_MIGRATIONS[i].version == version)
            return PG_MIGRATIONS[i].sql;
    }
    return NULL;
}
