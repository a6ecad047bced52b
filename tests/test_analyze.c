/* analyze: the whole pipeline against a real index, cache and face models: exact, PDQ and face
 * matches, the feature cache, admission control, deadlines and bad input. References are
 * registered and evidence recorded through the catalog and a real store, as the server does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "analyze/analyze_int.h"
#include "catalog/catalog.h"
#include "store/store.h"
#include "support/vgt_jpeg.h"

#include <pthread.h>
#include <turbojpeg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BRIDGE VG_TEST_DATA_DIR "/pdq/bridge-mods/"
#define FACES VG_TEST_DATA_DIR "/faces/images/"

typedef struct fixture {
    char dir[64];
    store *st;
    index_db *ix;
    catalog *cat;
    cache *c;
    face_models *models;
    analyze_ctx *an;
    char tenant[STORE_ID_MAX];
    char profile[STORE_ID_MAX];
} fixture;

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    assert_int_equal(vg_read_file(path, 64 << 20, &buf, len), VG_OK);
    return buf;
}

#define TEST_DEADLINE_MS 600000u /* 10 min: a hang, not slowness */

static void open_fixture(fixture *fx, int with_models, const analyze_config *cfg)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/vg_test_analyze_XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    char path[256];
    snprintf(path, sizeof path, "%s/vigil.db", fx->dir);
    store_config sc;
    store_config_default(&sc);
    sc.path = path;
    sc.synchronous = STORE_SYNC_NORMAL;
    assert_int_equal(store_open(&sc, &fx->st), VG_OK);
    assert_int_equal(index_new(NULL, &fx->ix), VG_OK);
    assert_int_equal(catalog_open(fx->st, fx->ix, &fx->cat), VG_OK);
    cache_config cc;
    cache_config_init(&cc);
    snprintf(path, sizeof path, "%s/cache", fx->dir);
    cc.l2_dir = path;
    assert_int_equal(cache_open(&cc, &fx->c), VG_OK);
    if (with_models)
        assert_int_equal(face_models_open(VG_MODELS_DIR, NULL, &fx->models), VG_OK);
    analyze_deps deps = {.index = fx->ix,
                         .cache = fx->c,
                         .models = fx->models,
                         .resolve = catalog_resolve,
                         .resolve_arg = fx->cat};
    /* The product's 2 s queue deadline is shorter than a batch of face images takes under ASan
     * on a loaded 2-CPU host: a test that does not test deadlines (test_deadline_* set theirs
     * per request) must not fail for it, as test_concurrent_batches_equal_single once did. */
    analyze_config c;
    if (cfg)
        c = *cfg;
    else
        analyze_config_default(&c);
    if (c.deadline_ms == ANALYZE_DEFAULT_DEADLINE_MS)
        c.deadline_ms = TEST_DEADLINE_MS;
    assert_int_equal(analyze_ctx_new(&c, &deps, &fx->an), VG_OK);
    assert_int_equal(store_tenant_create(fx->st, "Agency", STORE_TENANT_AGENCY, fx->tenant), 0);
    store_profile_fields pf = {.name = "Creator"};
    assert_int_equal(store_profile_create(fx->st, fx->tenant, &pf, fx->profile), VG_OK);
}

static void close_fixture(fixture *fx)
{
    analyze_ctx_free(fx->an);
    face_models_free(fx->models);
    cache_close(fx->c);
    catalog_close(fx->cat);
    index_free(fx->ix);
    store_close(fx->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    assert_int_equal(system(cmd), 0);
}

static void add_reference_bytes(fixture *fx, uint8_t *bytes, size_t len, store_ref_kind kind,
                                char id[STORE_ID_MAX]);

/* Registers an image as a reference: features through analyze, stored and indexed through the
 * catalog (what the server does on upload). */
static void add_reference(fixture *fx, const char *file, store_ref_kind kind, char id[STORE_ID_MAX])
{
    size_t len;
    uint8_t *bytes = slurp(file, &len);
    add_reference_bytes(fx, bytes, len, kind, id);
}

/* The same from bytes (malloc'ed; freed here). */
static void add_reference_bytes(fixture *fx, uint8_t *bytes, size_t len, store_ref_kind kind,
                                char id[STORE_ID_MAX])
{
    analyze_request rq = {.bytes = bytes, .len = len, .level = VG_LEVEL_BALANCED};
    analyze_features f;
    assert_int_equal(analyze_features_compute(fx->an, &rq, &f, NULL), VG_OK);
    catalog_reference_new r = {.profile_id = fx->profile, .kind = kind, .features = &f};
    vg_arena *a = vg_arena_new(0);
    store_reference sr;
    assert_int_equal(catalog_reference_add(fx->cat, fx->tenant, &r, a, &sr), VG_OK);
    snprintf(id, STORE_ID_MAX, "%s", sr.id);
    vg_arena_free(a);
    analyze_features_free(&f);
    free(bytes);
}

static int analyze_file(fixture *fx, const char *file, int do_store, analyze_result *out)
{
    size_t len;
    uint8_t *bytes = slurp(file, &len);
    analyze_request rq = {
        .bytes = bytes, .len = len, .tenant_id = fx->tenant, .level = VG_LEVEL_BALANCED};
    int rc = analyze_run(fx->an, &rq, out);
    if (rc == VG_OK && do_store) /* the evidence, recorded the way the server does */
        rc = catalog_scan_record(fx->cat, fx->tenant, "https://example.com/found.jpg", rq.level,
                                 out);
    free(bytes);
    return rc;
}

static const analyze_match *find_kind(const analyze_result *r, vg_match_kind k)
{
    for (size_t i = 0; i < r->n_matches; i++)
        if (r->matches[i].kind == k)
            return &r->matches[i];
    return NULL;
}

static void test_pdq_and_exact_matches_are_stored(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 0, NULL);
    char ref[STORE_ID_MAX];
    add_reference(&fx, BRIDGE "aaa-orig.jpg", STORE_REF_WORK, ref);

    analyze_result r;
    /* An edit of the work: a PDQ match, stored as evidence. */
    assert_int_equal(analyze_file(&fx, BRIDGE "sharpen-a-lot.jpg", 1, &r), VG_OK);
    assert_true(r.features.has_pdq);
    assert_false(r.features.faces_enabled);
    assert_int_equal(r.n_matches, 1);
    assert_int_equal(r.matches[0].kind, VG_MATCH_PDQ);
    assert_string_equal(r.matches[0].reference_id, ref);
    assert_string_equal(r.matches[0].profile_id, fx.profile);
    assert_true(r.matches[0].distance > 0 && r.matches[0].distance <= 31);
    assert_true(r.matches[0].confidence >= 0.5 && r.matches[0].confidence < 1);
    assert_int_equal(r.matches[0].dihedral, 0);
    assert_true(r.scan_id[0] != '\0');
    assert_true(r.matches[0].match_id[0] != '\0');
    vg_arena *a = vg_arena_new(0);
    store_scan scan;
    assert_int_equal(store_scan_get(fx.st, fx.tenant, r.scan_id, a, &scan), VG_OK);
    assert_int_equal(scan.n_matches, 1);
    assert_string_equal(scan.matches[0].id, r.matches[0].match_id);
    assert_string_equal(scan.source_url, "https://example.com/found.jpg");
    assert_memory_equal(scan.sha256, r.features.sha256, 32);
    vg_arena_free(a);
    analyze_result_free(&r);

    /* The work itself: an exact copy, reported once (not again as a PDQ match). */
    assert_int_equal(analyze_file(&fx, BRIDGE "aaa-orig.jpg", 0, &r), VG_OK);
    assert_int_equal(r.n_matches, 1);
    assert_int_equal(r.matches[0].kind, VG_MATCH_EXACT);
    assert_true(r.matches[0].confidence == 1.0);
    assert_string_equal(r.scan_id, "");
    analyze_result_free(&r);

    /* A rotated copy matches through a dihedral variant. */
    assert_int_equal(
        analyze_file(&fx, VG_TEST_DATA_DIR "/pdq/reg-test-input/dih/bridge-2-rotate-90.jpg", 0, &r),
        VG_OK);
    const analyze_match *m = find_kind(&r, VG_MATCH_PDQ);
    assert_non_null(m);
    assert_true(m->dihedral > 0);
    analyze_result_free(&r);

    /* Another tenant sees nothing of this one's references. */
    char other[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(fx.st, "Other", STORE_TENANT_CREATOR, other), VG_OK);
    size_t len;
    uint8_t *bytes = slurp(BRIDGE "aaa-orig.jpg", &len);
    analyze_request rq = {.bytes = bytes, .len = len, .tenant_id = other};
    assert_int_equal(analyze_run(fx.an, &rq, &r), VG_OK);
    assert_int_equal(r.n_matches, 0);
    analyze_result_free(&r);
    free(bytes);

    /* A deleted reference stops matching at once. */
    int64_t key = 0;
    assert_int_equal(store_reference_key_get(fx.st, fx.tenant, ref, &key), VG_OK);
    assert_int_equal(index_remove_reference(fx.ix, fx.tenant, (uint64_t)key), VG_OK);
    assert_int_equal(analyze_file(&fx, BRIDGE "sharpen-a-lot.jpg", 0, &r), VG_OK);
    assert_int_equal(r.n_matches, 0);
    analyze_result_free(&r);
    close_fixture(&fx);
}

/* One tenant's analysis never hits another tenant's cache entry (a hit would tell it someone
 * else sent these exact bytes); with cache_global the entry is shared. Purging erases it. */
static void test_cache_scoped_by_tenant(void **state)
{
    (void)state;
    for (int global = 0; global < 2; global++) {
        analyze_config cfg;
        analyze_config_default(&cfg);
        cfg.cache_global = global;
        fixture fx;
        open_fixture(&fx, 0, &cfg);
        char other[STORE_ID_MAX];
        assert_int_equal(store_tenant_create(fx.st, "Other", STORE_TENANT_AGENCY, other), 0);
        analyze_result a, b, c;
        assert_int_equal(analyze_file(&fx, BRIDGE "blur-a-little.jpg", 0, &a), VG_OK);
        assert_string_equal(a.timings.cache_tier, "miss");
        char mine[STORE_ID_MAX];
        snprintf(mine, sizeof mine, "%s", fx.tenant);
        snprintf(fx.tenant, sizeof fx.tenant, "%s", other);
        assert_int_equal(analyze_file(&fx, BRIDGE "blur-a-little.jpg", 0, &b), VG_OK);
        assert_string_equal(b.timings.cache_tier, global ? "l1" : "miss");
        /* Erasure for the first tenant: its entry is gone from every tier. */
        snprintf(fx.tenant, sizeof fx.tenant, "%s", mine);
        analyze_cache_purge(fx.an, fx.tenant, a.features.sha256);
        assert_int_equal(analyze_file(&fx, BRIDGE "blur-a-little.jpg", 0, &c), VG_OK);
        assert_string_equal(c.timings.cache_tier, "miss");
        analyze_result_free(&a);
        analyze_result_free(&b);
        analyze_result_free(&c);
        close_fixture(&fx);
    }
}

static void test_cache_serves_second_request(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 0, NULL);
    analyze_result a, b;
    assert_int_equal(analyze_file(&fx, BRIDGE "blur-a-lot.jpg", 0, &a), VG_OK);
    assert_string_equal(a.timings.cache_tier, "miss");
    assert_int_equal(analyze_file(&fx, BRIDGE "blur-a-lot.jpg", 0, &b), VG_OK);
    assert_string_equal(b.timings.cache_tier, "l1");
    assert_memory_equal(a.features.pdq, b.features.pdq, 32);
    assert_memory_equal(a.features.pdq_dihedral, b.features.pdq_dihedral, 256);
    assert_int_equal(a.features.pdq_quality, b.features.pdq_quality);
    assert_int_equal(a.features.width, b.features.width);
    analyze_result_free(&a);
    analyze_result_free(&b);
    analyze_stats st;
    analyze_stats_get(fx.an, &st);
    assert_int_equal(st.cache_hits[CACHE_TIER_L1], 1);
    assert_int_equal(st.cache_hits[CACHE_TIER_MISS], 1);
    close_fixture(&fx);
}

/* inline_hit: a cache hit is matched and completed on the calling thread, inside
 * analyze_submit, with the same matches and features as through the finishers; a miss still
 * completes on an analysis thread. */
typedef struct inline_probe {
    pthread_t caller;
    int done, status, on_caller;
} inline_probe;

static void inline_done(void *arg, int status, const char *detail)
{
    (void)detail;
    inline_probe *p = arg;
    p->on_caller = pthread_equal(pthread_self(), p->caller);
    p->status = status;
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
}

static void test_inline_hit_completes_on_caller(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 0, NULL);
    char ref[STORE_ID_MAX];
    add_reference(&fx, BRIDGE "aaa-orig.jpg", STORE_REF_WORK, ref);
    size_t len;
    uint8_t *bytes = slurp(BRIDGE "blur-a-little.jpg", &len);
    analyze_request rq = {.bytes = bytes,
                          .len = len,
                          .tenant_id = fx.tenant,
                          .level = VG_LEVEL_BALANCED,
                          .inline_hit = 1};
    /* the miss: queued, completed elsewhere */
    analyze_result miss, hit, queued;
    inline_probe p = {.caller = pthread_self()};
    assert_int_equal(analyze_submit(fx.an, &rq, 0, &miss, inline_done, &p), VG_OK);
    while (!__atomic_load_n(&p.done, __ATOMIC_ACQUIRE))
        usleep(1000);
    assert_int_equal(p.status, VG_OK);
    assert_false(p.on_caller);
    assert_string_equal(miss.timings.cache_tier, "miss");
    /* the hit: done has run, on this thread, when analyze_submit returns */
    p = (inline_probe){.caller = pthread_self()};
    assert_int_equal(analyze_submit(fx.an, &rq, 0, &hit, inline_done, &p), VG_OK);
    assert_true(p.done);
    assert_true(p.on_caller);
    assert_int_equal(p.status, VG_OK);
    assert_string_equal(hit.timings.cache_tier, "l1");
    /* and the same answer as a hit through the finishers */
    rq.inline_hit = 0;
    assert_int_equal(analyze_run(fx.an, &rq, &queued), VG_OK);
    assert_string_equal(queued.timings.cache_tier, "l1");
    assert_true(hit.n_matches > 0);
    assert_int_equal(hit.n_matches, queued.n_matches);
    assert_int_equal(hit.n_matches, miss.n_matches);
    for (size_t i = 0; i < hit.n_matches; i++) {
        assert_string_equal(hit.matches[i].reference_id, queued.matches[i].reference_id);
        assert_int_equal(hit.matches[i].kind, queued.matches[i].kind);
        assert_true(hit.matches[i].distance == queued.matches[i].distance);
    }
    assert_memory_equal(hit.features.sha256, miss.features.sha256, 32);
    assert_memory_equal(hit.features.pdq, miss.features.pdq, 32);
    analyze_result_free(&miss);
    analyze_result_free(&hit);
    analyze_result_free(&queued);
    analyze_stats st;
    analyze_stats_get(fx.an, &st);
    assert_int_equal(st.cache_hits[CACHE_TIER_L1], 2);
    assert_int_equal(st.ok, 4); /* the reference, the miss and the two hits */
    free(bytes);
    close_fixture(&fx);
}

static void test_feature_blob_roundtrip_and_corruption(void **state)
{
    (void)state;
    analyze_features f;
    memset(&f, 0, sizeof f);
    for (int i = 0; i < 32; i++)
        f.sha256[i] = (uint8_t)i;
    f.width = 640;
    f.height = 480;
    snprintf(f.format, sizeof f.format, "jpeg");
    f.has_pdq = 1;
    f.pdq_quality = 87;
    f.pdq[3] = 0xab;
    f.faces_enabled = 1;
    f.n_faces = 2;
    f.faces = calloc(2, sizeof *f.faces);
    f.faces[1].descriptor[127] = 0.25f;
    f.faces[1].score = 0.9f;
    uint8_t *blob;
    size_t len;
    assert_int_equal(analyze__features_encode(&f, &blob, &len), VG_OK);
    analyze_features g;
    assert_int_equal(analyze__features_decode(blob, len, &g), VG_OK);
    assert_int_equal(g.n_faces, 2);
    assert_true(g.faces[1].descriptor[127] == 0.25f);
    assert_int_equal(g.pdq_quality, 87);
    assert_string_equal(g.format, "jpeg");
    analyze_features_free(&g);
    /* Every truncation and a bad magic are refused. */
    for (size_t n = 0; n < len; n += 97)
        assert_int_equal(analyze__features_decode(blob, n, &g), VG_ECORRUPT);
    blob[0] = 'X';
    assert_int_equal(analyze__features_decode(blob, len, &g), VG_ECORRUPT);
    vg_free(blob);
    free(f.faces);
}

static void test_bad_input(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 0, NULL);
    analyze_result r;
    uint8_t junk[64] = "this is not an image at all, just some text.";
    analyze_request rq = {.bytes = junk, .len = sizeof junk, .tenant_id = fx.tenant};
    assert_int_equal(analyze_run(fx.an, &rq, &r), VG_EFORMAT);
    assert_int_equal(r.n_matches, 0);
    rq.len = 0;
    assert_int_equal(analyze_run(fx.an, &rq, &r), VG_ETRUNC);
    /* A truncated JPEG fails cleanly with a detail. */
    size_t len;
    uint8_t *bytes = slurp(BRIDGE "aaa-orig.jpg", &len);
    rq.bytes = bytes;
    rq.len = len / 3;
    int rc = analyze_run(fx.an, &rq, &r);
    assert_true(rc == VG_ETRUNC || rc == VG_ECORRUPT);
    assert_true(strlen(vg_err_msg()) > 0);
    /* Matching needs a tenant scope. */
    rq.len = len;
    rq.tenant_id = NULL;
    assert_int_equal(analyze_run(fx.an, &rq, &r), VG_EINVAL);
    /* A deadline already past: dropped, never computed. */
    rq.tenant_id = fx.tenant;
    rq.deadline_ns = vg_now_ns() - 1;
    assert_int_equal(analyze_run(fx.an, &rq, &r), VG_ETIMEDOUT);
    free(bytes);
    close_fixture(&fx);
}

/* ---- admission control ---- */

typedef struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, ok, other;
} counter;

static void count_done(void *arg, int status, const char *detail)
{
    (void)detail;
    counter *c = arg;
    pthread_mutex_lock(&c->mu);
    c->done++;
    if (status == 0)
        c->ok++;
    else
        c->other++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void test_admission_control(void **state)
{
    (void)state;
    analyze_config cfg;
    analyze_config_default(&cfg);
    cfg.queue_capacity = 2;
    cfg.tenant_quota = 1000; /* the queue's limit, not the tenant's (test_tenant_quota) */
    cfg.min_workers = cfg.max_workers = 1;
    fixture fx;
    open_fixture(&fx, 0, &cfg);
    size_t len;
    uint8_t *bytes = slurp(BRIDGE "aaa-orig.jpg", &len);
    enum { N = 40 };
    /* Distinct bytes per request (a trailing byte after the JPEG's EOI) so the cache cannot
     * answer: every request must go through the queue. */
    uint8_t *copies[N];
    analyze_request rq[N];
    analyze_result res[N];
    counter c = {.done = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int accepted = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        copies[i] = malloc(len + 1);
        memcpy(copies[i], bytes, len);
        copies[i][len] = (uint8_t)i;
        rq[i] = (analyze_request){.bytes = copies[i], .len = len + 1, .tenant_id = fx.tenant};
        int rc = analyze_submit(fx.an, &rq[i], 0, &res[i], count_done, &c);
        if (rc == VG_OK)
            accepted++;
        else if (rc == VG_EBUSY)
            busy++;
        else
            fail_msg("unexpected submit status %d", rc);
    }
    assert_true(busy > 0);
    assert_true(accepted >= 2);
    pthread_mutex_lock(&c.mu);
    while (c.done < accepted)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    assert_int_equal(c.ok, accepted); /* every accepted request completed, exactly once */
    analyze_stats st;
    analyze_stats_get(fx.an, &st);
    assert_int_equal(st.rejected, (uint64_t)busy);
    for (int i = 0; i < N; i++)
        free(copies[i]);
    for (int i = 0; i < N; i++)
        if (i < N && res[i].features.has_pdq)
            analyze_result_free(&res[i]);
    free(bytes);
    close_fixture(&fx);
}

/* The tenant quota: past tenant_quota images queued or running, the same tenant is refused
 * with VG_EQUOTA and a detail naming the limit, while another tenant is still admitted. */
static void test_tenant_quota(void **state)
{
    (void)state;
    analyze_config cfg;
    analyze_config_default(&cfg);
    cfg.queue_capacity = 64;
    cfg.tenant_quota = 2;
    cfg.min_workers = cfg.max_workers = 1;
    fixture fx;
    open_fixture(&fx, 0, &cfg);
    size_t len;
    uint8_t *bytes = slurp(BRIDGE "aaa-orig.jpg", &len);
    enum { N = 12 };
    uint8_t *copies[N + 1];
    analyze_request rq[N + 1];
    analyze_result res[N + 1];
    counter c = {.done = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int accepted = 0, quota = 0;
    for (int i = 0; i <= N; i++) {
        copies[i] = malloc(len + 1);
        memcpy(copies[i], bytes, len);
        copies[i][len] = (uint8_t)i; /* distinct bytes: no cache hit */
        rq[i] = (analyze_request){.bytes = copies[i], .len = len + 1, .tenant_id = fx.tenant};
    }
    for (int i = 0; i < N; i++) {
        vg_err_clear();
        int rc = analyze_submit(fx.an, &rq[i], 0, &res[i], count_done, &c);
        if (rc == VG_OK) {
            accepted++;
        } else if (rc == VG_EQUOTA) {
            assert_non_null(strstr(vg_err_msg(), "2 images queued or in analysis"));
            quota++;
        } else {
            fail_msg("unexpected submit status %d", rc);
        }
    }
    /* Another tenant still gets in while the first is at its limit. */
    rq[N].tenant_id = "another-tenant";
    int other = analyze_submit(fx.an, &rq[N], 1, &res[N], count_done, &c);
    assert_true(other == VG_OK);
    accepted++;
    assert_true(quota > 0);
    pthread_mutex_lock(&c.mu);
    while (c.done < accepted)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    assert_int_equal(c.ok, accepted);
    analyze_stats st;
    analyze_stats_get(fx.an, &st);
    assert_int_equal(st.quota_rejected, (uint64_t)quota);
    assert_int_equal(st.rejected, 0);
    for (int i = 0; i <= N; i++) {
        free(copies[i]);
        if (res[i].features.has_pdq)
            analyze_result_free(&res[i]);
    }
    free(bytes);
    close_fixture(&fx);
}

/* A request that fails on an analysis thread hands its reason to the done callback as an
 * argument: the img limit it hit, with the configured value, not a generic message. */
typedef struct detail_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    char detail[256];
} detail_wait;

static void detail_done(void *arg, int status, const char *detail)
{
    detail_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    snprintf(w->detail, sizeof w->detail, "%s", detail ? detail : "(null)");
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void test_done_detail_names_the_limit(void **state)
{
    (void)state;
    analyze_config cfg;
    analyze_config_default(&cfg);
    cfg.max_pixels = 1000;
    fixture fx;
    open_fixture(&fx, 0, &cfg);
    size_t len;
    uint8_t *bytes = slurp(BRIDGE "aaa-orig.jpg", &len);
    for (int features_only = 0; features_only < 2; features_only++) {
        detail_wait w = {.done = 0};
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv, NULL);
        analyze_request rq = {.bytes = bytes, .len = len, .tenant_id = fx.tenant};
        analyze_result r;
        vg_err_set(VG_EIO, "a stale detail on the submitting thread");
        assert_int_equal(analyze_submit(fx.an, &rq, features_only, &r, detail_done, &w), VG_OK);
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        assert_int_equal(w.status, VG_EPIXELS);
        assert_non_null(strstr(w.detail, "max_pixels 1000"));
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv);
    }
    free(bytes);
    close_fixture(&fx);
}

/* ---- faces ---- */

static void test_face_match_same_person(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 1, NULL);
    char ref[STORE_ID_MAX];
    add_reference(&fx, FACES "vlad_tile1.png", STORE_REF_LIKENESS, ref);
    analyze_result r;
    assert_int_equal(analyze_file(&fx, FACES "vlad_tile2.png", 1, &r), VG_OK);
    assert_true(r.features.faces_enabled);
    assert_true(r.features.n_faces >= 1);
    const analyze_match *m = find_kind(&r, VG_MATCH_FACE);
    assert_non_null(m);
    assert_string_equal(m->reference_id, ref);
    assert_true(m->distance < 0.6);
    assert_true(m->face_index >= 0 && (size_t)m->face_index < r.features.n_faces);
    assert_true(m->match_id[0] != '\0');
    analyze_result_free(&r);
    /* A photo of other people does not match the likeness. */
    assert_int_equal(analyze_file(&fx, FACES "astronaut.png", 0, &r), VG_OK);
    assert_true(r.features.n_faces >= 1);
    assert_null(find_kind(&r, VG_MATCH_FACE));
    analyze_result_free(&r);
    close_fixture(&fx);
}

/* Images submitted together are analysed in shared batches (one worker, several images queued):
 * every result equals the one the same image gets alone. */
static void test_concurrent_batches_equal_single(void **state)
{
    (void)state;
    analyze_config cfg;
    analyze_config_default(&cfg);
    cfg.min_workers = cfg.max_workers = 1;
    cfg.max_batch = 8;
    cfg.max_delay_us = 20000;
    fixture fx;
    open_fixture(&fx, 1, &cfg);
    static const char *const names[] = {FACES "vlad_tile1.png", FACES "vlad_tile2.png",
                                        FACES "astronaut.png", FACES "vlad_tile3.png"};
    enum { N = 4 };
    uint8_t *bytes[N];
    size_t lens[N];
    analyze_request rq[N];
    analyze_result res[N];
    counter c = {.done = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    for (int i = 0; i < N; i++) {
        bytes[i] = slurp(names[i], &lens[i]);
        rq[i] = (analyze_request){.bytes = bytes[i], .len = lens[i], .tenant_id = fx.tenant};
        assert_int_equal(analyze_submit(fx.an, &rq[i], 1, &res[i], count_done, &c), VG_OK);
    }
    pthread_mutex_lock(&c.mu);
    while (c.done < N)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    assert_int_equal(c.ok, N);
    analyze_stats st;
    analyze_stats_get(fx.an, &st);
    print_message("%llu images in %llu batches\n", (unsigned long long)st.batch_images,
                  (unsigned long long)st.batches);
    for (int i = 0; i < N; i++) {
        /* Alone, through the features-only path (the cache is bypassed: other bytes). */
        uint8_t *alone = malloc(lens[i] + 1);
        memcpy(alone, bytes[i], lens[i]);
        alone[lens[i]] = 0; /* a trailing byte after IEND changes the SHA-256, not the pixels */
        analyze_request one = {.bytes = alone, .len = lens[i] + 1};
        analyze_features f;
        assert_int_equal(analyze_features_compute(fx.an, &one, &f, NULL), VG_OK);
        assert_int_equal(f.n_faces, res[i].features.n_faces);
        assert_true(f.n_faces >= 1);
        for (size_t k = 0; k < f.n_faces; k++)
            assert_true(face_distance(f.faces[k].descriptor, res[i].features.faces[k].descriptor) <
                        1e-3f);
        assert_memory_equal(f.pdq, res[i].features.pdq, 32);
        analyze_features_free(&f);
        analyze_result_free(&res[i]);
        free(alone);
        free(bytes[i]);
    }
    close_fixture(&fx);
}

/* Test-only fault injection: with fault_error_rate 0.5 every second computed image fails with
 * the injected detail, counted per replica as failed batches (max_batch 1); cache hits never
 * fail. The self-healing knobs pass through to the cache and the scheduler. */
static void test_fault_injection_and_knobs(void **state)
{
    (void)state;
    analyze_config cfg;
    analyze_config_default(&cfg);
    cfg.fault_error_rate = 1.5;
    fixture fx;
    memset(&fx, 0, sizeof fx);
    analyze_deps none = {0};
    assert_int_equal(analyze_ctx_new(&cfg, &none, &fx.an), VG_EINVAL);
    cfg.fault_error_rate = 0.5;
    cfg.max_batch = 1;
    cfg.min_workers = 1;
    cfg.max_workers = 2;
    open_fixture(&fx, 0, &cfg);
    static const char *const files[] = {BRIDGE "blur-a-lot.jpg", BRIDGE "sharpen-a-lot.jpg",
                                        BRIDGE "high-contrast.jpg", BRIDGE "blur-a-little.jpg"};
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        analyze_result r;
        int rc = analyze_file(&fx, files[i], 0, &r);
        if (rc != VG_OK) {
            assert_int_equal(rc, VG_EINTERNAL);
            assert_non_null(strstr(vg_err_msg(), "injected analysis fault"));
            failed++;
        } else {
            analyze_result_free(&r);
        }
    }
    assert_int_equal(failed, 2);
    analyze_replica_info ri;
    analyze_replicas(fx.an, &ri);
    assert_int_equal(ri.batch_failures, 2);
    assert_int_equal(ri.max, 2);

    unsigned mb;
    uint32_t md;
    assert_int_equal(analyze_batching_tune(fx.an, 2, 100), VG_EINVAL); /* above max_batch 1 */
    assert_int_equal(analyze_batching_tune(fx.an, 1, 100), VG_OK);
    analyze_batching(fx.an, &mb, &md);
    assert_int_equal(mb, 1);
    assert_int_equal(md, 100);
    size_t me, mbytes;
    analyze_cache_l1_capacity(fx.an, &me, &mbytes);
    assert_int_equal(me, CACHE_DEFAULT_L1_MAX_ENTRIES);
    assert_int_equal(analyze_cache_l1_set_capacity(fx.an, 500, mbytes), VG_OK);
    analyze_cache_l1_capacity(fx.an, &me, NULL);
    assert_int_equal(me, 500);
    assert_int_equal(analyze_cache_l1_clear(fx.an), 2); /* the two that succeeded */
    size_t loaded;
    cache_flush(fx.c);
    assert_int_equal(analyze_cache_warm(fx.an, 10, &loaded), VG_OK);
    assert_int_equal(loaded, 2);
    assert_int_equal(analyze_add_replica(fx.an), VG_OK);
    assert_int_equal(analyze_add_replica(fx.an), VG_ECONFLICT);
    close_fixture(&fx);
}

/* ---- halves: a logo over one half, and a half that must meet only the same half -------------- */

#define COPY VG_TEST_DATA_DIR "/copy/"

static void decode_rgb(const char *file, img_image *im)
{
    size_t len;
    uint8_t *bytes = slurp(file, &len);
    img_decode_opts o;
    img_decode_opts_default(&o);
    assert_int_equal(img_decode(bytes, len, &o, im), VG_OK);
    assert_int_equal(im->channels, 3);
    free(bytes);
}

/* q90 JPEG of RGB pixels; returns a malloc'ed copy. */
static uint8_t *jpeg_of(const uint8_t *px, uint32_t w, uint32_t h, size_t *len)
{
    return vgt_jpeg_make(px, (int)w, (int)h, TJPF_RGB, TJSAMP_420, 90, 0, len);
}

static void analyze_bytes(fixture *fx, const uint8_t *bytes, size_t len, analyze_result *out)
{
    analyze_request rq = {
        .bytes = bytes, .len = len, .tenant_id = fx->tenant, .level = VG_LEVEL_BALANCED};
    assert_int_equal(analyze_run(fx->an, &rq, out), VG_OK);
}

/* A flat image's hash is under the quality gate: it matches only its own bytes. The index
 * finds it at distance 0 and the resolver's SHA-256 decides: the same bytes are an exact copy,
 * other bytes of the same flat picture nothing; a removed reference matches nothing. */
static void test_exact_copy_of_flat_image(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 0, NULL);
    enum { W = 256, H = 256 };
    uint8_t *px = malloc(W * H * 3);
    assert_non_null(px);
    memset(px, 128, W * H * 3);
    size_t la, lb;
    uint8_t *a = vgt_jpeg_make(px, W, H, TJPF_RGB, TJSAMP_420, 90, 0, &la);
    uint8_t *b = vgt_jpeg_make(px, W, H, TJPF_RGB, TJSAMP_420, 70, 0, &lb);
    assert_true(la != lb || memcmp(a, b, la) != 0);
    char ref[STORE_ID_MAX];
    uint8_t *copy = malloc(la);
    assert_non_null(copy);
    memcpy(copy, a, la);
    add_reference_bytes(&fx, copy, la, STORE_REF_WORK, ref);

    analyze_result r;
    analyze_bytes(&fx, a, la, &r);
    assert_true(r.features.has_pdq);
    assert_true(r.features.pdq_quality < 50); /* under the gate: no PDQ match */
    assert_int_equal(r.n_matches, 1);
    assert_int_equal(r.matches[0].kind, VG_MATCH_EXACT);
    assert_string_equal(r.matches[0].reference_id, ref);
    assert_string_equal(r.matches[0].profile_id, fx.profile);
    analyze_result_free(&r);
    analyze_bytes(&fx, b, lb, &r);
    assert_int_equal(r.n_matches, 0);
    analyze_result_free(&r);

    assert_int_equal(catalog_reference_remove(fx.cat, fx.tenant, ref), VG_OK);
    analyze_bytes(&fx, a, la, &r);
    assert_int_equal(r.n_matches, 0);
    analyze_result_free(&r);
    free(a);
    free(b);
    free(px);
    close_fixture(&fx);
}

static const analyze_copy_hash *copy_of(const analyze_features *f, int region)
{
    for (size_t i = 0; i < f->n_copies; i++)
        if (f->copies[i].region == region)
            return &f->copies[i];
    return NULL;
}

/* A logo over the bottom-right corner (a box with a bar of text-like stripes, a third of each
 * side, as bench_copy's logo edit but larger, so the whole image is surely past the threshold)
 * leaves the top half intact: the copy matches through the reference's top half only, reported
 * as region "top". A picture whose top half is the reference's BOTTOM half (and whose own bottom
 * half is another photo) does not match: a half meets only the same half, never another half or
 * the whole. */
static void test_halves_match_only_the_same_half(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, 0, NULL);
    char ref[STORE_ID_MAX];
    add_reference(&fx, COPY "001.jpg", STORE_REF_WORK, ref);
    img_image a, b;
    decode_rgb(COPY "001.jpg", &a);
    decode_rgb(COPY "002.jpg", &b);
    assert_int_equal(a.w, b.w);
    assert_int_equal(a.h, b.h);
    const uint32_t w = a.w, h = a.h;
    const size_t row = (size_t)w * 3;

    /* the copy with a logo drawn into its pixels */
    uint8_t *logo = malloc(row * h);
    assert_non_null(logo);
    memcpy(logo, a.px, row * h);
    for (uint32_t y = h - h / 3; y < h; y++)
        for (uint32_t x = w - w / 3; x < w; x++) {
            uint8_t *p = logo + y * row + (size_t)x * 3;
            const int ink = (y / 6) % 2 && (x / 4) % 3; /* white "text" on red */
            p[0] = 220;
            p[1] = p[2] = ink ? 240 : 20;
        }
    size_t len;
    uint8_t *jpg = jpeg_of(logo, w, h, &len);
    analyze_result r;
    analyze_bytes(&fx, jpg, len, &r);
    assert_non_null(copy_of(&r.features, PDQ_REGION_TOP));
    assert_non_null(copy_of(&r.features, PDQ_REGION_BOTTOM));
    assert_int_equal(r.n_matches, 1);
    const analyze_match *m = &r.matches[0];
    assert_int_equal(m->kind, VG_MATCH_PDQ);
    assert_string_equal(m->reference_id, ref);
    assert_int_equal(m->query_region, PDQ_REGION_TOP);
    assert_int_equal(m->ref_region, PDQ_REGION_TOP);
    assert_true(m->distance <= 31);
    const char *region = NULL;
    assert_string_equal(analyze_match_mechanism(m, &region), "region");
    assert_string_equal(region, "top");
    /* the whole image alone would have missed it: its hash is past the threshold */
    analyze_result whole;
    size_t rlen;
    uint8_t *orig = slurp(COPY "001.jpg", &rlen);
    analyze_bytes(&fx, orig, rlen, &whole); /* exact copy; its features are the reference's */
    int dw = 0;
    for (int i = 0; i < VG_PDQ_BYTES; i++)
        dw += __builtin_popcount(whole.features.pdq[i] ^ r.features.pdq[i]);
    assert_true(dw > 31);
    const analyze_copy_hash *ref_bottom = copy_of(&whole.features, PDQ_REGION_BOTTOM);
    assert_non_null(ref_bottom);
    free(orig);
    free(jpg);
    analyze_result_free(&r);

    /* top half: the reference's bottom half; bottom half: another photo's top half */
    uint8_t *mix = malloc(row * h);
    assert_non_null(mix);
    const uint32_t half = h / 2;
    memcpy(mix, a.px + (size_t)half * row, (size_t)(h - half) * row);
    memcpy(mix + (size_t)(h - half) * row, b.px, (size_t)half * row);
    jpg = jpeg_of(mix, w, h, &len);
    analyze_bytes(&fx, jpg, len, &r);
    const analyze_copy_hash *top = copy_of(&r.features, PDQ_REGION_TOP);
    assert_non_null(top);
    int dh = 0; /* the two hashes meet: only the tags keep them apart */
    for (int i = 0; i < VG_PDQ_BYTES; i++)
        dh += __builtin_popcount(top->dihedral[0][i] ^ ref_bottom->dihedral[0][i]);
    assert_true(dh <= 31);
    assert_true(top->quality >= 50);
    assert_int_equal(r.n_matches, 0);
    analyze_result_free(&r);
    analyze_result_free(&whole);
    free(jpg);
    free(mix);
    free(logo);
    img_image_free(&a);
    img_image_free(&b);
    close_fixture(&fx);
}

/* The lone split (a lone image hashed on the helper thread while its worker runs the face
 * networks) changes where the work runs, not what it computes: the same features, byte for
 * byte, as the worker computing everything itself; and it runs for every lone image when on
 * (counted), never when off. Images with faces, with bars (the trimmed region) and a small one
 * (the flip region). */
static void test_lone_split_same_features(void **state)
{
    (void)state;
    static const char *const names[] = {FACES "astronaut.png", FACES "vlad_tile1.png",
                                        FACES "messi5.png",    FACES "sample1_half_q50.png",
                                        COPY "003.jpg",        COPY "017.jpg"};
    enum { N = sizeof names / sizeof names[0] };
    fixture fx[2];
    for (int s = 0; s < 2; s++) {
        analyze_config cfg;
        analyze_config_default(&cfg);
        cfg.lone_split = s;
        cfg.min_workers = cfg.max_workers = 1;
        open_fixture(&fx[s], 1, &cfg);
    }
    size_t faces = 0;
    for (int i = 0; i < N; i++) {
        size_t len;
        uint8_t *bytes = slurp(names[i], &len);
        analyze_features f[2];
        for (int s = 0; s < 2; s++) {
            analyze_request rq = {.bytes = bytes, .len = len, .level = VG_LEVEL_BALANCED};
            assert_int_equal(analyze_features_compute(fx[s].an, &rq, &f[s], NULL), VG_OK);
        }
        assert_int_equal(f[0].has_pdq, 1);
        assert_int_equal(f[1].has_pdq, 1);
        assert_memory_equal(f[0].pdq, f[1].pdq, sizeof f[0].pdq);
        assert_memory_equal(f[0].pdq_dihedral, f[1].pdq_dihedral, sizeof f[0].pdq_dihedral);
        assert_int_equal(f[0].pdq_quality, f[1].pdq_quality);
        assert_int_equal(f[0].n_copies, f[1].n_copies);
        assert_memory_equal(f[0].copies, f[1].copies, f[0].n_copies * sizeof f[0].copies[0]);
        assert_int_equal(f[0].n_faces, f[1].n_faces);
        if (f[0].n_faces)
            assert_memory_equal(f[0].faces, f[1].faces, f[0].n_faces * sizeof f[0].faces[0]);
        faces += f[0].n_faces;
        analyze_features_free(&f[0]);
        analyze_features_free(&f[1]);
        free(bytes);
    }
    assert_true(faces >= 3);
    analyze_stats st[2];
    for (int s = 0; s < 2; s++)
        analyze_stats_get(fx[s].an, &st[s]);
    assert_int_equal(st[0].lone_splits, 0);
    assert_int_equal(st[1].lone_splits, N);
    for (int s = 0; s < 2; s++)
        close_fixture(&fx[s]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_blob_roundtrip_and_corruption),
        cmocka_unit_test(test_pdq_and_exact_matches_are_stored),
        cmocka_unit_test(test_exact_copy_of_flat_image),
        cmocka_unit_test(test_halves_match_only_the_same_half),
        cmocka_unit_test(test_cache_serves_second_request),
        cmocka_unit_test(test_cache_scoped_by_tenant),
        cmocka_unit_test(test_inline_hit_completes_on_caller),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_admission_control),
        cmocka_unit_test(test_tenant_quota),
        cmocka_unit_test(test_done_detail_names_the_limit),
        cmocka_unit_test(test_face_match_same_person),
        cmocka_unit_test(test_concurrent_batches_equal_single),
        cmocka_unit_test(test_fault_injection_and_knobs),
        cmocka_unit_test(test_lone_split_same_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
