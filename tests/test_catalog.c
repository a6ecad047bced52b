/* catalog: the store and the index kept in step. The index is built from the store at open;
 * reference and profile writes change both or neither (store failures through a locked
 * database, index failures through the index's entry limit and the allocator's fault
 * injection); scans round-trip through the one JSON encoder. Real store, real index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog/catalog.h"
#include "index/index.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fx {
    char dir[64];
    char path[128];
    store *st;
    index_db *ix;
    catalog *cat;
    vg_arena *a;
    char tenant[STORE_ID_MAX];
    char profile[STORE_ID_MAX];
    int erased;              /* erase hook calls */
    uint8_t last_erased[32]; /* the last SHA-256 the hook was given */
} fx;

static void on_erase(void *arg, const char *tenant, const uint8_t sha256[32])
{
    fx *f = arg;
    assert_string_equal(tenant, f->tenant);
    memcpy(f->last_erased, sha256, 32);
    f->erased++;
}

static void store_up(fx *f, uint32_t busy_timeout_ms)
{
    store_config sc;
    store_config_default(&sc);
    sc.path = f->path;
    sc.synchronous = STORE_SYNC_NORMAL;
    sc.busy_timeout_ms = busy_timeout_ms;
    assert_int_equal(store_open(&sc, &f->st), VG_OK);
}

/* A store with one tenant and profile; no index or catalog yet (open_catalog). */
static void fx_open(fx *f, uint32_t busy_timeout_ms)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vg_test_catalog_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/vigil.db", f->dir);
    store_up(f, busy_timeout_ms);
    f->a = vg_arena_new(0);
    assert_int_equal(store_tenant_create(f->st, "Agency", STORE_TENANT_AGENCY, f->tenant), VG_OK);
    store_profile_fields pf = {.name = "Creator"};
    assert_int_equal(store_profile_create(f->st, f->tenant, &pf, f->profile), VG_OK);
}

static void open_catalog(fx *f, const index_config *icfg)
{
    assert_int_equal(index_new(icfg, &f->ix), VG_OK);
    assert_int_equal(catalog_open(f->st, f->ix, &f->cat), VG_OK);
    catalog_set_erase_hook(f->cat, on_erase, f);
}

static void fx_close(fx *f)
{
    catalog_close(f->cat);
    index_free(f->ix);
    store_close(f->st);
    vg_arena_free(f->a);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
}

/* Deterministic features: seed picks the image hash and the PDQ hash; faces descriptors. */
static void make_features(analyze_features *ft, unsigned seed, size_t n_faces)
{
    memset(ft, 0, sizeof *ft);
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < 32; i++) {
        x = x * 1103515245u + 12345u;
        ft->sha256[i] = (uint8_t)(x >> 16);
        x = x * 1103515245u + 12345u;
        ft->pdq[i] = (uint8_t)(x >> 16);
    }
    ft->has_pdq = 1;
    ft->pdq_quality = 90;
    for (int d = 0; d < 8; d++)
        memcpy(ft->pdq_dihedral[d], ft->pdq, 32);
    snprintf(ft->format, sizeof ft->format, "jpeg");
    ft->width = 640;
    ft->height = 480;
    ft->faces_enabled = 1;
    ft->n_faces = n_faces;
    ft->faces = n_faces ? calloc(n_faces, sizeof *ft->faces) : NULL;
    for (size_t k = 0; k < n_faces; k++) {
        ft->faces[k].box[0] = 12.34f + (float)k;
        ft->faces[k].box[1] = 56.78f;
        ft->faces[k].box[2] = 100.0f;
        ft->faces[k].box[3] = 120.05f;
        ft->faces[k].score = 0.987654f;
        for (int d = 0; d < VG_DESCRIPTOR_DIM; d++)
            ft->faces[k].descriptor[d] = (float)((seed + k + (size_t)d) % 7) / 70.0f;
    }
}

static void free_features(analyze_features *ft)
{
    free(ft->faces);
    ft->faces = NULL;
}

/* How many references of the tenant the index and the store hold. */
static size_t index_refs(fx *f)
{
    index_stats st;
    int rc = index_stats_get(f->ix, f->tenant, &st);
    if (rc == VG_ENOTFOUND)
        return 0;
    assert_int_equal(rc, VG_OK);
    return st.references;
}

static size_t store_refs(fx *f)
{
    size_t n = 0;
    assert_int_equal(store_reference_count(f->st, f->tenant, &n), VG_OK);
    return n;
}

/* Whether a PDQ search for the hash finds reference id: a match resolved to it, or one the
 * store no longer has (the index kept a removed reference: whatever id was asked for, that is
 * the index failing to forget). */
static int index_finds(fx *f, const analyze_features *ft, const char *id)
{
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = (const uint8_t(*)[VG_PDQ_BYTES])ft->pdq_dihedral;
    q.n_variants = 1;
    q.threshold = 0;
    index_pdq_result r;
    assert_int_equal(index_pdq_search(f->ix, f->tenant, &q, &r), VG_OK);
    int found = 0;
    for (size_t i = 0; i < r.n; i++) {
        analyze_ref ref;
        assert_int_equal(catalog_resolve(f->cat, f->tenant, &r.matches[i].reference, 1, &ref),
                         VG_OK);
        found |= !ref.found || strcmp(ref.id, id) == 0;
    }
    index_pdq_result_free(&r);
    return found;
}

/* How many references a PDQ search for the hash finds at distance 0. */
static size_t index_hits(fx *f, const analyze_features *ft)
{
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = (const uint8_t(*)[VG_PDQ_BYTES])ft->pdq_dihedral;
    q.n_variants = 1;
    q.threshold = 0;
    index_pdq_result r;
    assert_int_equal(index_pdq_search(f->ix, f->tenant, &q, &r), VG_OK);
    size_t n = r.n;
    index_pdq_result_free(&r);
    return n;
}

static int add_ref(fx *f, const analyze_features *ft, char id[STORE_ID_MAX])
{
    catalog_reference_new r = {.profile_id = f->profile, .kind = STORE_REF_WORK, .features = ft};
    store_reference sr;
    int rc = catalog_reference_add(f->cat, f->tenant, &r, f->a, &sr);
    if (rc == VG_OK && id)
        snprintf(id, STORE_ID_MAX, "%s", sr.id);
    return rc;
}

/* ---- open ----------------------------------------------------------------------------------- */

static void test_index_built_at_open(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    /* Three references written before the catalog exists (an earlier run), one since deleted. */
    analyze_features ft[3];
    char ids[3][STORE_ID_MAX];
    for (unsigned i = 0; i < 3; i++) {
        make_features(&ft[i], i + 1, i);
        store_reference_new nr = {.profile_id = f.profile,
                                  .kind = STORE_REF_WORK,
                                  .sha256 = ft[i].sha256,
                                  .pdq = ft[i].pdq,
                                  .pdq_quality = ft[i].pdq_quality,
                                  .n_faces = ft[i].n_faces};
        float desc[2 * VG_DESCRIPTOR_DIM];
        for (size_t k = 0; k < ft[i].n_faces; k++)
            memcpy(desc + k * VG_DESCRIPTOR_DIM, ft[i].faces[k].descriptor,
                   sizeof ft[i].faces[k].descriptor);
        nr.descriptors = ft[i].n_faces ? desc : NULL;
        assert_int_equal(store_reference_create(f.st, f.tenant, &nr, ids[i], NULL), VG_OK);
    }
    assert_int_equal(store_reference_delete(f.st, f.tenant, ids[0]), VG_OK);
    open_catalog(&f, NULL);
    index_stats st;
    assert_int_equal(index_stats_get(f.ix, f.tenant, &st), VG_OK);
    assert_int_equal(st.references, 2);
    assert_int_equal(st.pdq_entries, 2);
    assert_int_equal(st.face_entries, 1 + 2);
    assert_false(index_finds(&f, &ft[0], ids[0]));
    assert_true(index_finds(&f, &ft[1], ids[1]));
    assert_true(index_finds(&f, &ft[2], ids[2]));
    for (int i = 0; i < 3; i++)
        free_features(&ft[i]);
    fx_close(&f);
}

/* ---- references ----------------------------------------------------------------------------- */

static void test_reference_add_remove_keeps_both(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    analyze_features a, b, c;
    make_features(&a, 10, 1);
    make_features(&b, 11, 0);
    make_features(&c, 12, 2);
    char ida[STORE_ID_MAX], idb[STORE_ID_MAX], idc[STORE_ID_MAX];
    assert_int_equal(add_ref(&f, &a, ida), VG_OK);
    assert_int_equal(add_ref(&f, &b, idb), VG_OK);
    assert_int_equal(add_ref(&f, &c, idc), VG_OK);
    assert_int_equal(store_refs(&f), 3);
    assert_int_equal(index_refs(&f), 3);
    assert_true(index_finds(&f, &a, ida));
    /* The same image twice in a profile: the store refuses, the index is unchanged. */
    assert_int_equal(add_ref(&f, &a, NULL), VG_EEXIST);
    assert_int_equal(index_refs(&f), 3);

    /* Remove one: out of the store, out of the index, its hash handed to the erase hook. */
    assert_int_equal(catalog_reference_remove(f.cat, f.tenant, ida), VG_OK);
    store_reference sr;
    assert_int_equal(store_reference_get(f.st, f.tenant, ida, f.a, &sr), VG_ENOTFOUND);
    assert_false(index_finds(&f, &a, ida));
    assert_int_equal(index_refs(&f), 2);
    assert_int_equal(f.erased, 1);
    assert_memory_equal(f.last_erased, a.sha256, 32);
    /* Unknown, or another tenant's: nothing changes, nothing is erased. */
    assert_int_equal(catalog_reference_remove(f.cat, f.tenant, ida), VG_ENOTFOUND);
    char other[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(f.st, "Other", STORE_TENANT_AGENCY, other), VG_OK);
    assert_int_equal(catalog_reference_remove(f.cat, other, idb), VG_ENOTFOUND);
    assert_int_equal(index_refs(&f), 2);
    assert_int_equal(f.erased, 1);

    /* A likeness without a face is refused before anything is written. */
    catalog_reference_new lk = {
        .profile_id = f.profile, .kind = STORE_REF_LIKENESS, .features = &b};
    make_features(&b, 13, 0);
    assert_int_equal(catalog_reference_add(f.cat, f.tenant, &lk, NULL, NULL), VG_ENOFACE);
    assert_non_null(strstr(vg_err_msg(), "no face"));
    assert_int_equal(store_refs(&f), 2);

    /* The profile with the rest: both gone from both, each hash erased. */
    size_t n = 0;
    assert_int_equal(catalog_profile_remove(f.cat, f.tenant, f.profile, &n), VG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_refs(&f), 0);
    assert_int_equal(index_refs(&f), 0);
    assert_int_equal(f.erased, 3);
    assert_int_equal(catalog_profile_remove(f.cat, f.tenant, f.profile, &n), VG_ENOTFOUND);
    free_features(&a);
    free_features(&b);
    free_features(&c);
    fx_close(&f);
}

/* A store write that fails (the database locked by another process past busy_timeout_ms)
 * leaves the index as it was, for adds and deletes alike, and erases nothing. */
static void test_failed_store_write_leaves_index(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 100);
    open_catalog(&f, NULL);
    analyze_features a, b;
    make_features(&a, 20, 1);
    make_features(&b, 21, 1);
    char ida[STORE_ID_MAX];
    assert_int_equal(add_ref(&f, &a, ida), VG_OK);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f.path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(add_ref(&f, &b, NULL), VG_EBUSY);
    assert_int_equal(index_hits(&f, &b), 0);
    assert_int_equal(index_refs(&f), 1);
    assert_int_equal(catalog_reference_remove(f.cat, f.tenant, ida), VG_EBUSY);
    assert_true(index_finds(&f, &a, ida));
    size_t n = 99;
    assert_int_equal(catalog_profile_remove(f.cat, f.tenant, f.profile, &n), VG_EBUSY);
    assert_int_equal(n, 99);
    assert_true(index_finds(&f, &a, ida));
    assert_int_equal(index_refs(&f), 1);
    assert_int_equal(f.erased, 0);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* And once the lock is gone the same calls go through. */
    assert_int_equal(store_refs(&f), 1);
    assert_int_equal(add_ref(&f, &b, NULL), VG_OK);
    assert_int_equal(index_refs(&f), 2);
    free_features(&a);
    free_features(&b);
    fx_close(&f);
}

/* An index insert that fails after the store committed (here: the tenant's entry limit, hit by
 * the reference's second entry, its face, after its PDQ hash went in) is undone in both: the
 * reference leaves the store again and nothing of it stays in the index. */
static void test_failed_index_insert_rolls_store_back(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    index_config ic = {.max_entries_per_tenant = 1};
    open_catalog(&f, &ic);
    analyze_features a;
    make_features(&a, 30, 1);
    assert_int_equal(add_ref(&f, &a, NULL), VG_ETOOBIG);
    assert_non_null(strstr(vg_err_msg(), "max_entries_per_tenant"));
    assert_int_equal(store_refs(&f), 0);
    assert_int_equal(index_refs(&f), 0);
    assert_int_equal(index_hits(&f, &a), 0);
    assert_int_equal(f.erased, 0);
    /* The same image can be registered once there is room (the rollback left no duplicate). */
    free_features(&a);
    make_features(&a, 30, 0);
    assert_int_equal(add_ref(&f, &a, NULL), VG_OK);
    assert_int_equal(store_refs(&f), 1);
    assert_int_equal(index_refs(&f), 1);
    free_features(&a);
    fx_close(&f);
}

/* Every allocation of a reference add failing in turn (core's fault injection; SQLite's own
 * allocations are not hooked): each failure leaves store and index without the reference, those
 * that came after the store's commit (index inserts into a new tenant's shard, the read-back)
 * by rolling it back, and the walk ends with an add that succeeds in both. */
static void test_allocation_failures_leave_both_consistent(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    /* Warm: the store statements of an add and a delete are prepared and cached once. */
    analyze_features w, a;
    make_features(&w, 40, 2);
    char idw[STORE_ID_MAX];
    assert_int_equal(add_ref(&f, &w, idw), VG_OK);
    assert_int_equal(catalog_reference_remove(f.cat, f.tenant, idw), VG_OK);
    /* A tenant the index has never seen: its first insert allocates the shard. */
    assert_int_equal(store_tenant_create(f.st, "Fresh", STORE_TENANT_AGENCY, f.tenant), VG_OK);
    store_profile_fields pf = {.name = "Fresh creator"};
    assert_int_equal(store_profile_create(f.st, f.tenant, &pf, f.profile), VG_OK);
    make_features(&a, 41, 2);
    int failures = 0, rollbacks = 0, ok = 0;
    for (long n = 1; n < 10000 && !ok; n++) {
        vg_arena_reset(f.a);
        store_stats s0, s1;
        store_stats_get(f.st, &s0);
        vg_alloc_fail_after(n);
        int rc = add_ref(&f, &a, NULL);
        vg_alloc_fail_after(0);
        if (rc == VG_OK) {
            ok = 1;
            break;
        }
        failures++;
        store_stats_get(f.st, &s1);
        rollbacks += s1.write_ops - s0.write_ops == 2; /* created, then deleted again */
        assert_int_equal(store_refs(&f), 0);
        assert_int_equal(index_refs(&f), 0);
        assert_int_equal(index_hits(&f, &a), 0);
    }
    assert_true(ok);
    assert_true(rollbacks > 0);
    print_message("%d allocation failure points (%d after the commit, rolled back), each left "
                  "store and index clean\n",
                  failures, rollbacks);
    assert_int_equal(store_refs(&f), 1);
    assert_int_equal(index_refs(&f), 1);
    assert_int_equal(index_hits(&f, &a), 1);
    free_features(&w);
    free_features(&a);
    fx_close(&f);
}

/* ---- evidence ------------------------------------------------------------------------------- */

/* A scan is recorded with its matches, and what it stored reads back through the one encoder:
 * the stored text is the encoder's, the values are the analysis' (rounded as documented). */
static void test_scan_record_roundtrip(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    analyze_features ref;
    make_features(&ref, 50, 0);
    char rid[STORE_ID_MAX];
    assert_int_equal(add_ref(&f, &ref, rid), VG_OK);

    analyze_result res;
    memset(&res, 0, sizeof res);
    make_features(&res.features, 51, 2);
    res.n_matches = 1;
    res.matches = calloc(1, sizeof *res.matches);
    snprintf(res.matches[0].profile_id, VG_ID_MAX, "%s", f.profile);
    snprintf(res.matches[0].reference_id, VG_ID_MAX, "%s", rid);
    res.matches[0].kind = VG_MATCH_PDQ;
    res.matches[0].distance = 12;
    res.matches[0].confidence = 0.8125;
    res.matches[0].dihedral = 3;
    res.matches[0].face_index = -1;
    res.timings = (analyze_timings){.cache_us = 1,
                                    .decode_us = 2,
                                    .pdq_us = 3,
                                    .detect_us = 4,
                                    .landmarks_us = 5,
                                    .descriptors_us = 6,
                                    .match_us = 7,
                                    .total_us = 100};
    assert_int_equal(
        catalog_scan_record(f.cat, f.tenant, "https://x.example/a.jpg", VG_LEVEL_SPEED, &res),
        VG_OK);
    assert_true(res.scan_id[0] != '\0');
    assert_true(res.matches[0].match_id[0] != '\0');
    assert_int_equal(res.timings.total_us, 100 + res.timings.store_us);

    store_scan sc;
    assert_int_equal(store_scan_get(f.st, f.tenant, res.scan_id, f.a, &sc), VG_OK);
    assert_string_equal(sc.source_url, "https://x.example/a.jpg");
    assert_string_equal(sc.level, "speed");
    assert_memory_equal(sc.sha256, res.features.sha256, 32);
    assert_memory_equal(sc.pdq, res.features.pdq, 32);
    assert_int_equal(sc.n_matches, 1);
    assert_string_equal(sc.matches[0].id, res.matches[0].match_id);
    assert_int_equal(sc.matches[0].kind, VG_MATCH_PDQ);
    assert_int_equal(sc.matches[0].dihedral, 3);
    assert_true(sc.matches[0].confidence == 0.8125);

    /* The stored text is exactly what the encoder writes... */
    char *faces = catalog_faces_json(&res.features), *timings = catalog_timings_json(&res.timings);
    assert_string_equal(sc.faces_json, faces);
    assert_string_equal(sc.timings_json, timings);
    assert_string_equal(faces, "[{\"box\":[12.3,56.8,100.0,120.1],\"score\":0.9877},"
                               "{\"box\":[13.3,56.8,100.0,120.1],\"score\":0.9877}]");
    /* ...and reads back as the analysis' values. */
    json_t *fj = catalog_stored_json(sc.faces_json), *tj = catalog_stored_json(sc.timings_json);
    assert_int_equal(json_array_size(fj), 2);
    json_t *box = json_object_get(json_array_get(fj, 1), "box");
    assert_true(fabs(json_real_value(json_array_get(box, 0)) - 13.3) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(json_array_get(fj, 0), "score")) - 0.9877) <
                1e-9);
    assert_int_equal(json_integer_value(json_object_get(tj, "faces_us")), 4 + 5 + 6);
    assert_int_equal(json_integer_value(json_object_get(tj, "match_us")), 7);
    assert_null(json_object_get(tj, "cache_tier"));
    json_decref(fj);
    json_decref(tj);
    vg_free(faces);
    vg_free(timings);

    /* A row written by the earlier printf encoder still reads; damage reads as null. */
    fj = catalog_stored_json("[{\"box\":[1.0,2.0,3.0,4.0],\"score\":0.5000}]");
    assert_int_equal(json_array_size(fj), 1);
    json_decref(fj);
    fj = catalog_stored_json("[{\"box\":[1.0,");
    assert_true(json_is_null(fj));
    json_decref(fj);
    assert_true(json_is_null(catalog_stored_json(NULL)));

    /* A match naming a reference of no one's: the store refuses, res keeps no ids. */
    analyze_result bad = res;
    analyze_match m = res.matches[0];
    m.match_id[0] = '\0';
    snprintf(m.reference_id, VG_ID_MAX,
             "ref_"
             "00000000000000000000000000");
    bad.matches = &m;
    bad.scan_id[0] = '\0';
    assert_int_not_equal(catalog_scan_record(f.cat, f.tenant, NULL, VG_LEVEL_BALANCED, &bad),
                         VG_OK);
    assert_string_equal(bad.scan_id, "");
    assert_string_equal(m.match_id, "");
    free(res.matches);
    free_features(&res.features);
    free_features(&ref);
    fx_close(&f);
}

/* A face score that is not a number (a broken model) used to be printed as `nan` into the
 * stored JSON, which then read back as null for the whole faces array; the encoder now writes
 * null for that one value and keeps the rest. */
static void test_faces_json_non_finite(void **state)
{
    (void)state;
    analyze_features ft;
    make_features(&ft, 60, 2);
    ft.faces[0].score = NAN;
    ft.faces[1].box[2] = INFINITY;
    char *text = catalog_faces_json(&ft);
    assert_non_null(text);
    json_t *j = catalog_stored_json(text);
    assert_int_equal(json_array_size(j), 2);
    assert_true(json_is_null(json_object_get(json_array_get(j, 0), "score")));
    assert_true(json_is_real(json_array_get(json_object_get(json_array_get(j, 0), "box"), 0)));
    assert_true(json_is_null(json_array_get(json_object_get(json_array_get(j, 1), "box"), 2)));
    json_decref(j);
    vg_free(text);
    /* No faces: an empty array, not null. */
    ft.n_faces = 0;
    text = catalog_faces_json(&ft);
    assert_string_equal(text, "[]");
    vg_free(text);
    free_features(&ft);
}

/* A synthetic video: n frames one second apart with random hashes from seed (quality 90). */
static void make_video(video_hash *h, unsigned seed, size_t n)
{
    memset(h, 0, sizeof *h);
    h->frames = calloc(n, sizeof *h->frames);
    assert_non_null(h->frames);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        h->frames[i].frame = (uint32_t)(i * 30);
        h->frames[i].ts = (double)i;
        h->frames[i].quality = 90;
        for (int w = 0; w < 4; w++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            h->frames[i].hash.w[w] = x;
        }
    }
    h->n = n;
    h->duration_s = (double)(n - 1);
}

/* Video works: registered through the catalog they match by the vPDQ rule with their segments
 * (a query that is a later clip of the work maps to the work's time range), are recorded with
 * their details, survive a reopen (built from the store), and leave matching on removal. */
static void test_video_reference_index(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    video_hash work, other, clip;
    make_video(&work, 1, 20);
    make_video(&other, 2, 20);
    /* the query: frames 5..19 of the work, at 0..14 s */
    memset(&clip, 0, sizeof clip);
    clip.frames = calloc(15, sizeof *clip.frames);
    for (size_t i = 0; i < 15; i++) {
        clip.frames[i] = work.frames[i + 5];
        clip.frames[i].ts = (double)i;
    }
    clip.n = 15;
    analyze_features ft;
    memset(&ft, 0, sizeof ft);
    ft.sha256[0] = 1;
    catalog_reference_new nr = {
        .profile_id = f.profile, .kind = STORE_REF_WORK, .features = &ft, .video = &work};
    store_reference r;
    assert_int_equal(catalog_reference_add(f.cat, f.tenant, &nr, f.a, &r), VG_OK);
    assert_true(r.is_video);
    assert_int_equal(r.video_n_frames, 20);
    ft.sha256[0] = 2;
    nr.video = &other;
    store_reference r2;
    assert_int_equal(catalog_reference_add(f.cat, f.tenant, &nr, f.a, &r2), VG_OK);
    /* a likeness cannot be a video */
    ft.sha256[0] = 3;
    nr.kind = STORE_REF_LIKENESS;
    assert_int_not_equal(catalog_reference_add(f.cat, f.tenant, &nr, f.a, NULL), VG_OK);

    video_match_opts mo;
    video_match_opts_default(&mo);
    mo.compared_pct = 50; /* the clip shows 15 of the work's 20 frames */
    for (int round = 0; round < 2; round++) {
        catalog_video_result res;
        assert_int_equal(catalog_video_search(f.cat, f.tenant, NULL, &clip, &mo, &res), VG_OK);
        assert_int_equal(res.n, 1);
        assert_string_equal(res.matches[0].reference_id, r.id);
        assert_true(res.matches[0].query_match_pct == 100.0);
        assert_true(res.matches[0].compared_match_pct == 75.0);
        assert_int_equal(res.matches[0].n_segments, 1);
        assert_true(res.matches[0].segments[0].q_start == 0.0);
        assert_true(res.matches[0].segments[0].c_start == 5.0);
        assert_true(res.matches[0].segments[0].c_end == 19.0);
        /* another tenant sees nothing */
        catalog_video_result none;
        assert_int_equal(
            catalog_video_search(f.cat, "tnt_00000000000000000000000000", NULL, &clip, &mo, &none),
            VG_OK);
        assert_int_equal(none.n, 0);
        if (round == 0) {
            uint8_t sha[32] = {9};
            assert_int_equal(catalog_video_scan_record(f.cat, f.tenant, NULL, VG_LEVEL_BALANCED,
                                                       sha, NULL, &res),
                             VG_OK);
            store_match m;
            assert_int_equal(store_match_get(f.st, f.tenant, res.matches[0].match_id, f.a, &m),
                             VG_OK);
            assert_non_null(strstr(m.video_json, "\"reference_start\":5"));
        }
        catalog_video_result_free(&res);
        /* reopen: the index comes back from the store */
        catalog_close(f.cat);
        index_free(f.ix);
        open_catalog(&f, NULL);
    }
    assert_int_equal(catalog_reference_remove(f.cat, f.tenant, r.id), VG_OK);
    catalog_video_result res;
    assert_int_equal(catalog_video_search(f.cat, f.tenant, NULL, &clip, &mo, &res), VG_OK);
    assert_int_equal(res.n, 0);
    size_t videos, frames;
    catalog_video_stats(f.cat, f.tenant, &videos, &frames);
    assert_int_equal(videos, 1);
    catalog_video_result_free(&res);
    free(work.frames);
    free(other.frames);
    free(clip.frames);
    fx_close(&f);
}

/* Video works with region hashes (docs/VIDEO.md "Regions"): stored as the version 2 frame blob
 * and read back on a reopen, so a query whose frames share only their bottom halves with the
 * work (a logo over the top) still matches it, by halves; a query sharing only top halves with
 * the work's bottom halves does not (a half meets only the same half). */
static void test_video_reference_regions(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    video_hash work, query, halves, wrong;
    make_video(&work, 5, 12);
    make_video(&halves, 6, 24); /* the region hashes: random, 2 per frame */
    make_video(&query, 7, 12);  /* whole hashes unrelated to the work's */
    make_video(&wrong, 7, 12);
    for (size_t i = 0; i < 12; i++) {
        video_frame *w = &work.frames[i];
        w->regions = 1u << VIDEO_REGION_TOP | 1u << VIDEO_REGION_BOTTOM;
        w->region_quality[VIDEO_REGION_TOP] = w->region_quality[VIDEO_REGION_BOTTOM] = 80;
        w->region[VIDEO_REGION_TOP] = halves.frames[2 * i].hash;
        w->region[VIDEO_REGION_BOTTOM] = halves.frames[2 * i + 1].hash;
        query.frames[i].regions = 1u << VIDEO_REGION_BOTTOM;
        query.frames[i].region_quality[VIDEO_REGION_BOTTOM] = 70;
        query.frames[i].region[VIDEO_REGION_BOTTOM] = w->region[VIDEO_REGION_BOTTOM];
        wrong.frames[i].regions = 1u << VIDEO_REGION_TOP;
        wrong.frames[i].region_quality[VIDEO_REGION_TOP] = 70;
        wrong.frames[i].region[VIDEO_REGION_TOP] = w->region[VIDEO_REGION_BOTTOM];
    }
    analyze_features ft;
    memset(&ft, 0, sizeof ft);
    ft.sha256[0] = 5;
    catalog_reference_new nr = {
        .profile_id = f.profile, .kind = STORE_REF_WORK, .features = &ft, .video = &work};
    store_reference r;
    assert_int_equal(catalog_reference_add(f.cat, f.tenant, &nr, f.a, &r), VG_OK);
    for (int round = 0; round < 2; round++) {
        catalog_video_result res;
        assert_int_equal(catalog_video_search(f.cat, f.tenant, NULL, &query, NULL, &res), VG_OK);
        assert_int_equal(res.n, 1);
        assert_string_equal(res.matches[0].reference_id, r.id);
        assert_true(res.matches[0].compared_match_pct == 100.0);
        assert_int_equal(res.matches[0].by_mech[VIDEO_MECH_HALF], 12);
        assert_int_equal(res.matches[0].by_mech[VIDEO_MECH_WHOLE], 0);
        json_t *j = catalog_video_match_json(&res.matches[0]);
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(j, "matched_by"), "half")), 12);
        json_decref(j);
        catalog_video_result_free(&res);
        assert_int_equal(catalog_video_search(f.cat, f.tenant, NULL, &wrong, NULL, &res), VG_OK);
        assert_int_equal(res.n, 0);
        catalog_video_result_free(&res);
        /* reopen: the regions come back from the stored blob */
        catalog_close(f.cat);
        index_free(f.ix);
        open_catalog(&f, NULL);
    }
    free(work.frames);
    free(query.frames);
    free(halves.frames);
    free(wrong.frames);
    fx_close(&f);
}

/* Cross-media (issue 12). Photo -> video: an image whose 4th dihedral variant is frame 12 of a
 * video work matches that work with the frame's time, and is recorded with it; a flat image
 * (low quality) and an unrelated one do not. Video -> photo: the frames of a query video that
 * show a protected photo are grouped into the query's time ranges, a frame covering the time up
 * to the next kept frame (pruned repeats), ranges more than the gap apart kept apart. */
static void test_cross_media(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    video_hash work;
    make_video(&work, 1, 20);
    analyze_features vf;
    memset(&vf, 0, sizeof vf);
    vf.sha256[0] = 1;
    catalog_reference_new nr = {
        .profile_id = f.profile, .kind = STORE_REF_WORK, .features = &vf, .video = &work};
    store_reference vr;
    assert_int_equal(catalog_reference_add(f.cat, f.tenant, &nr, f.a, &vr), VG_OK);
    analyze_features photo, unrelated;
    make_features(&photo, 7, 0);
    make_features(&unrelated, 8, 0);
    char photo_id[STORE_ID_MAX];
    assert_int_equal(add_ref(&f, &photo, photo_id), VG_OK);

    /* photo -> video */
    analyze_result res;
    memset(&res, 0, sizeof res);
    make_features(&res.features, 9, 0);
    memcpy(res.features.pdq_dihedral[3], work.frames[12].hash.w, 32);
    res.features.pdq_dihedral[3][0] ^= 0x7; /* 3 bits off */
    assert_int_equal(catalog_video_frame_match(f.cat, f.tenant, NULL, 31, 50, &res), VG_OK);
    assert_int_equal(res.n_matches, 1);
    const analyze_match *m = &res.matches[0];
    assert_string_equal(m->reference_id, vr.id);
    assert_int_equal(m->kind, VG_MATCH_PDQ);
    assert_true(m->distance == 3.0);
    assert_int_equal(m->dihedral, 3);
    assert_int_equal(m->video_frames, 1);
    assert_int_equal(m->n_video_ts, 1);
    assert_true(m->video_ts[0] == 12.0);
    assert_string_equal(analyze_match_mechanism(m, NULL), "video_frame");
    assert_int_equal(catalog_scan_record(f.cat, f.tenant, NULL, VG_LEVEL_BALANCED, &res), VG_OK);
    store_match sm;
    assert_int_equal(store_match_get(f.st, f.tenant, res.matches[0].match_id, f.a, &sm), VG_OK);
    assert_string_equal(sm.mechanism, "whole");
    assert_non_null(sm.video_json);
    assert_non_null(strstr(sm.video_json, "\"timestamp\":12"));
    assert_non_null(strstr(sm.video_json, "\"mechanism\":\"video_frame\""));
    /* a second call adds nothing */
    assert_int_equal(catalog_video_frame_match(f.cat, f.tenant, NULL, 31, 50, &res), VG_OK);
    assert_int_equal(res.n_matches, 1);
    analyze_result_free(&res);
    make_features(&res.features, 9, 0);
    memcpy(res.features.pdq_dihedral[0], work.frames[12].hash.w, 32);
    res.features.pdq_quality = 10; /* flat: not searched */
    assert_int_equal(catalog_video_frame_match(f.cat, f.tenant, NULL, 31, 50, &res), VG_OK);
    assert_int_equal(res.n_matches, 0);
    analyze_result_free(&res);
    res.features = unrelated;
    res.features.faces = NULL;
    assert_int_equal(catalog_video_frame_match(f.cat, f.tenant, NULL, 31, 50, &res), VG_OK);
    assert_int_equal(res.n_matches, 0);
    analyze_result_free(&res);

    /* video -> photo: kept frames at 0, 3..9 s (1/s; 1 and 2 were repeats of 0), the photo at
     * 0, 7 and 8 (8 is 5 bits off) */
    const double ts[] = {0, 3, 4, 5, 6, 7, 8, 9};
    video_hash q;
    make_video(&q, 3, 8);
    q.sampling.rate = 1;
    q.duration_s = 9;
    for (size_t i = 0; i < 8; i++)
        q.frames[i].ts = ts[i];
    const size_t shows[] = {0, 5, 6};
    for (size_t i = 0; i < 3; i++)
        memcpy(q.frames[shows[i]].hash.w, photo.pdq, 32);
    q.frames[6].hash.w[1] ^= 0x1f;
    catalog_video_result vres;
    assert_int_equal(catalog_video_search(f.cat, f.tenant, NULL, &q, NULL, &vres), VG_OK);
    assert_int_equal(vres.n, 0);
    assert_int_equal(catalog_video_photo_search(f.cat, f.tenant, NULL, &q, 31, 50, 3000, &vres),
                     VG_OK);
    assert_int_equal(vres.n, 1);
    const catalog_video_match *pm = &vres.matches[0];
    assert_string_equal(pm->reference_id, photo_id);
    assert_true(pm->ref_image);
    assert_int_equal(pm->distance, 0);
    assert_int_equal(pm->query_frames, 8);
    assert_int_equal(pm->query_matched, 3);
    assert_int_equal(pm->n_segments, 2);
    assert_true(pm->segments[0].q_start == 0 && pm->segments[0].q_end == 2);
    assert_int_equal(pm->segments[0].frames, 1);
    assert_true(pm->segments[1].q_start == 7 && pm->segments[1].q_end == 8);
    assert_int_equal(pm->segments[1].frames, 2);
    uint8_t sha[32] = {5};
    assert_int_equal(
        catalog_video_scan_record(f.cat, f.tenant, NULL, VG_LEVEL_BALANCED, sha, NULL, &vres),
        VG_OK);
    assert_int_equal(store_match_get(f.st, f.tenant, vres.matches[0].match_id, f.a, &sm), VG_OK);
    assert_true(sm.distance == 0);
    assert_non_null(strstr(sm.video_json, "\"reference_media\":\"image\""));
    assert_non_null(strstr(sm.video_json, "\"query_end\":8"));
    catalog_video_result_free(&vres);
    /* only another profile's references: nothing */
    assert_int_equal(catalog_video_photo_search(f.cat, f.tenant, "prf_00000000000000000000000000",
                                                &q, 31, 50, 3000, &vres),
                     VG_OK);
    assert_int_equal(vres.n, 0);
    catalog_video_result_free(&vres);
    free(q.frames);
    free(work.frames);
    fx_close(&f);
}

/* Faces in video: faces found on a video's frames that are the likeness reference's person are
 * one match tracked over time: frames closer than the gap form a range, two faces of the person
 * on one frame count once, someone else's face is not matched; recorded as a face match. */
static void test_video_faces(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    open_catalog(&f, NULL);
    analyze_features person;
    make_features(&person, 11, 1);
    catalog_reference_new nr = {
        .profile_id = f.profile, .kind = STORE_REF_LIKENESS, .features = &person};
    store_reference r;
    assert_int_equal(catalog_reference_add(f.cat, f.tenant, &nr, f.a, &r), VG_OK);
    float other[VG_DESCRIPTOR_DIM];
    for (int d = 0; d < VG_DESCRIPTOR_DIM; d++)
        other[d] = person.faces[0].descriptor[d] + (d % 2 ? 0.2f : -0.2f);
    const float *me = person.faces[0].descriptor;
    const catalog_video_face faces[] = {{0, me}, {2, me}, {2, me}, {4, me}, {6, other}, {20, me}};
    catalog_video_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(
        catalog_video_face_search(f.cat, f.tenant, NULL, faces, 6, 11, 0.6f, 5000, &res), VG_OK);
    assert_int_equal(res.n, 1);
    const catalog_video_match *m = &res.matches[0];
    assert_string_equal(m->reference_id, r.id);
    assert_true(m->face && m->ref_image);
    assert_true(m->distance < 1e-6);
    assert_int_equal(m->query_frames, 11);
    assert_int_equal(m->query_matched, 4);
    assert_int_equal(m->n_segments, 2);
    assert_true(m->segments[0].q_start == 0 && m->segments[0].q_end == 4);
    assert_int_equal(m->segments[0].frames, 3);
    assert_true(m->segments[1].q_start == 20 && m->segments[1].q_end == 20);
    uint8_t sha[32] = {6};
    assert_int_equal(
        catalog_video_scan_record(f.cat, f.tenant, NULL, VG_LEVEL_BALANCED, sha, NULL, &res),
        VG_OK);
    store_match sm;
    assert_int_equal(store_match_get(f.st, f.tenant, res.matches[0].match_id, f.a, &sm), VG_OK);
    assert_int_equal(sm.kind, VG_MATCH_FACE);
    assert_non_null(strstr(sm.video_json, "\"query_end\":4"));
    catalog_video_result_free(&res);
    /* only someone else: nothing */
    const catalog_video_face stranger[] = {{1, other}};
    assert_int_equal(
        catalog_video_face_search(f.cat, f.tenant, NULL, stranger, 1, 1, 0.6f, 5000, &res), VG_OK);
    assert_int_equal(res.n, 0);
    catalog_video_result_free(&res);
    free_features(&person);
    fx_close(&f);
}

/* ---- several nodes: the change-log sync ------------------------------------------------------ */

/* A second node on the same database file: its own store connections, index and catalog. */
static void node_open(fx *b, const fx *a)
{
    memset(b, 0, sizeof *b);
    memcpy(b->dir, a->dir, sizeof b->dir);
    memcpy(b->path, a->path, sizeof b->path);
    memcpy(b->tenant, a->tenant, sizeof b->tenant);
    memcpy(b->profile, a->profile, sizeof b->profile);
    store_up(b, 0);
    b->a = vg_arena_new(0);
    open_catalog(b, NULL);
}

static void node_close(fx *b)
{
    catalog_close(b->cat);
    index_free(b->ix);
    store_close(b->st);
    vg_arena_free(b->a);
}

typedef struct key_seen {
    int n;
    char tenant[STORE_ID_MAX], key[STORE_ID_MAX];
} key_seen;

static void on_key(void *arg, const char *tenant, const char *key_id)
{
    key_seen *k = arg;
    k->n++;
    snprintf(k->tenant, sizeof k->tenant, "%s", tenant);
    snprintf(k->key, sizeof k->key, "%s", key_id);
}

/* A reference added through node A matches on node B once B applied the log; a removal and a
 * profile delete through A leave B's index and erase on B; a key revoked through A reaches B's
 * key hook. A's own rows are skipped on A (its index already holds them). */
static void test_sync_applies_other_nodes_writes(void **state)
{
    (void)state;
    fx fa, fb;
    fx_open(&fa, 0);
    open_catalog(&fa, NULL);
    node_open(&fb, &fa);
    key_seen ka = {0}, kb = {0};
    catalog_set_key_hook(fa.cat, on_key, &ka);
    catalog_set_key_hook(fb.cat, on_key, &kb);

    analyze_features x, y;
    make_features(&x, 30, 1);
    make_features(&y, 31, 0);
    char idx[STORE_ID_MAX], idy[STORE_ID_MAX];
    assert_int_equal(add_ref(&fa, &x, idx), VG_OK);
    assert_int_equal(add_ref(&fa, &y, idy), VG_OK);
    assert_false(index_finds(&fb, &x, idx)); /* not applied yet */
    size_t n = 0;
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(n, 2);
    assert_true(index_finds(&fb, &x, idx));
    assert_true(index_finds(&fb, &y, idy));
    assert_int_equal(index_refs(&fb), 2);
    /* Applied again (A's own rows on A): nothing changes, nothing is counted twice. */
    assert_int_equal(catalog_sync_poll(fa.cat, &n), VG_OK);
    assert_int_equal(n, 2);
    catalog_sync_stats sa;
    catalog_sync_stats_get(fa.cat, &sa);
    assert_int_equal(sa.skipped, 2);
    assert_int_equal(sa.applied_seq, sa.head_seq);
    assert_int_equal(index_refs(&fa), 2);
    assert_int_equal(index_hits(&fa, &x), 1);
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(n, 0);

    /* Removal through A: B stops matching and erases the image's cached features. */
    assert_int_equal(catalog_reference_remove(fa.cat, fa.tenant, idx), VG_OK);
    assert_true(index_finds(&fb, &x, idx));
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_false(index_finds(&fb, &x, idx));
    assert_int_equal(fb.erased, 1);
    assert_memory_equal(fb.last_erased, x.sha256, 32);

    /* Profile delete through A: B drops the rest and erases each reference's hash. */
    assert_int_equal(catalog_profile_remove(fa.cat, fa.tenant, fa.profile, &n), VG_OK);
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(index_refs(&fb), 0);
    assert_int_equal(fb.erased, 2);
    assert_memory_equal(fb.last_erased, y.sha256, 32);

    /* Key revoke (any node's store): every node's key hook hears of it. */
    char key[STORE_ID_MAX];
    uint8_t h[VG_SHA256_BYTES] = {1, 2, 3};
    assert_int_equal(store_key_create(fa.st, fa.tenant, "k", h, key), VG_OK);
    assert_int_equal(store_key_revoke(fa.st, fa.tenant, key), VG_OK);
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(kb.n, 1);
    assert_string_equal(kb.tenant, fa.tenant);
    assert_string_equal(kb.key, key);
    assert_int_equal(catalog_sync_poll(fa.cat, &n), VG_OK);
    assert_int_equal(ka.n, 1);
    catalog_sync_stats sb;
    catalog_sync_stats_get(fb.cat, &sb);
    assert_int_equal(sb.applied_seq, sb.head_seq);
    assert_int_equal(sb.lag_ms, 0);
    assert_int_equal(sb.errors, 0);

    free_features(&x);
    free_features(&y);
    node_close(&fb);
    fx_close(&fa);
}

/* A poll that cannot read the log (here: the table renamed away under it) is an error that
 * leaves the node where it was: counted, the time since its last good poll keeps growing (what
 * health turns not-ready on), and the next poll after the log is back applies what it missed. */
static void test_sync_error_keeps_position(void **state)
{
    (void)state;
    fx fa, fb;
    fx_open(&fa, 0);
    open_catalog(&fa, NULL);
    node_open(&fb, &fa);
    analyze_features x;
    make_features(&x, 50, 0);
    char idx[STORE_ID_MAX];
    assert_int_equal(add_ref(&fa, &x, idx), VG_OK);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fa.path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE changes RENAME TO changes_away", 0, 0, 0),
                     SQLITE_OK);
    catalog_sync_stats before, after;
    catalog_sync_stats_get(fb.cat, &before);
    usleep(20000);
    size_t n = 9;
    assert_int_not_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(n, 0);
    catalog_sync_stats_get(fb.cat, &after);
    assert_int_equal(after.errors, 1);
    assert_int_equal(after.applied_seq, before.applied_seq);
    assert_true(after.since_poll_ms >= 20); /* not reset by the failed poll */
    assert_false(index_finds(&fb, &x, idx));
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE changes_away RENAME TO changes", 0, 0, 0),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(n, 1);
    assert_true(index_finds(&fb, &x, idx));
    catalog_sync_stats_get(fb.cat, &after);
    assert_int_equal(after.errors, 1);
    assert_int_equal(after.applied_seq, after.head_seq);
    free_features(&x);
    node_close(&fb);
    fx_close(&fa);
}

/* A node opened after others wrote builds its index from the tables and starts from the log's
 * head; a reference added and removed before a poll is never indexed; the sync thread applies
 * without being asked. */
static void test_sync_late_node_and_thread(void **state)
{
    (void)state;
    fx fa, fb;
    fx_open(&fa, 0);
    open_catalog(&fa, NULL);
    analyze_features x, y, z;
    make_features(&x, 40, 0);
    make_features(&y, 41, 0);
    make_features(&z, 42, 0);
    char idx[STORE_ID_MAX], idy[STORE_ID_MAX], idz[STORE_ID_MAX];
    assert_int_equal(add_ref(&fa, &x, idx), VG_OK);
    node_open(&fb, &fa); /* built with x */
    assert_true(index_finds(&fb, &x, idx));
    size_t n = 0;
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(n, 0);
    /* Added and removed between two polls: B never indexes it. */
    assert_int_equal(add_ref(&fa, &y, idy), VG_OK);
    assert_int_equal(catalog_reference_remove(fa.cat, fa.tenant, idy), VG_OK);
    assert_int_equal(catalog_sync_poll(fb.cat, &n), VG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(index_refs(&fb), 1);

    assert_int_equal(catalog_sync_start(fb.cat, CATALOG_SYNC_MIN_INTERVAL_MS), VG_OK);
    assert_int_equal(catalog_sync_start(fb.cat, CATALOG_SYNC_MIN_INTERVAL_MS), VG_EINVAL);
    assert_int_equal(add_ref(&fa, &z, idz), VG_OK);
    catalog_sync_wake(fb.cat);
    /* Eventually (no timing assertion: the thread polls every 10 ms; 30 s is a hang). */
    for (int i = 0; i < 3000 && !index_finds(&fb, &z, idz); i++)
        usleep(10000);
    assert_true(index_finds(&fb, &z, idz));
    catalog_sync_stop(fb.cat);
    free_features(&x);
    free_features(&y);
    free_features(&z);
    node_close(&fb);
    fx_close(&fa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_built_at_open),
        cmocka_unit_test(test_reference_add_remove_keeps_both),
        cmocka_unit_test(test_failed_store_write_leaves_index),
        cmocka_unit_test(test_failed_index_insert_rolls_store_back),
        cmocka_unit_test(test_allocation_failures_leave_both_consistent),
        cmocka_unit_test(test_scan_record_roundtrip),
        cmocka_unit_test(test_faces_json_non_finite),
        cmocka_unit_test(test_video_reference_index),
        cmocka_unit_test(test_video_reference_regions),
        cmocka_unit_test(test_cross_media),
        cmocka_unit_test(test_video_faces),
        cmocka_unit_test(test_sync_applies_other_nodes_writes),
        cmocka_unit_test(test_sync_late_node_and_thread),
        cmocka_unit_test(test_sync_error_keeps_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
