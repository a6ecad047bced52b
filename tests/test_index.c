/* index: every search path against brute force (random data with planted near-duplicates, edge
 * distances, dihedral variants, tenants, profiles, deletes and compaction), the PDQ
 * regression haystack/needles, face search, concurrency (no torn entries, deletes visible at
 * once), allocation failures, the shared top-k helper. Run twice by CTest: as is, and with
 * VIGIL_CPU_MASK=0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "support/vgt_random.h"
#include "index/index.h"
#include "index/index_int.h" /* index__topk */

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------------------- */

/* Reference keys for named test references: ref_key interns a name (keys 1, 2, ... in
 * first-use order), ref_name names a key back. Thread-safe (the concurrency test names references
 * in threads). */
enum { NAMES_MAX = 1 << 20, NAMES_SLOTS = 1 << 21 };
static char *names[NAMES_MAX];
static uint32_t name_slots[NAMES_SLOTS]; /* index + 1 into names, 0 = empty */
static size_t n_names;
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t ref_key(const char *name)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    pthread_mutex_lock(&names_mu);
    size_t i = h & (NAMES_SLOTS - 1);
    while (name_slots[i] && strcmp(names[name_slots[i] - 1], name) != 0)
        i = (i + 1) & (NAMES_SLOTS - 1);
    if (!name_slots[i] && n_names < NAMES_MAX) {
        names[n_names++] = strdup(name);
        name_slots[i] = (uint32_t)n_names;
    }
    uint64_t key = name_slots[i]; /* 0 (an invalid key) only when the table is full */
    pthread_mutex_unlock(&names_mu);
    return key;
}

static const char *ref_name(uint64_t key)
{
    pthread_mutex_lock(&names_mu);
    const char *s = key >= 1 && key <= n_names ? names[key - 1] : "?";
    pthread_mutex_unlock(&names_mu);
    return s;
}

static int keycmp(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

static int hamming(const uint8_t a[32], const uint8_t b[32])
{
    int d = 0;
    for (int i = 0; i < 32; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d += __builtin_popcountll(x ^ y);
    }
    return d;
}

/* The model: what the index should hold. */
typedef struct ment {
    char tenant[32], profile[32], ref[32];
    uint8_t hash[32];
    int quality;
    int alive;
} ment;

typedef struct model {
    ment *e;
    size_t n, cap;
} model;

static void model_add(model *m, const char *tenant, const char *profile, const char *ref,
                      const uint8_t hash[32], int quality)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
        assert_non_null(m->e);
    }
    ment *x = &m->e[m->n++];
    snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
    snprintf(x->profile, sizeof x->profile, "%s", profile);
    snprintf(x->ref, sizeof x->ref, "%s", ref);
    memcpy(x->hash, hash, 32);
    x->quality = quality;
    x->alive = 1;
}

static int match_cmp(const void *a, const void *b)
{
    const index_pdq_match *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance - y->distance;
    return keycmp(x->reference, y->reference);
}

static int by_ref_then_best(const void *a, const void *b)
{
    const index_pdq_match *x = a, *y = b;
    int c = keycmp(x->reference, y->reference);
    if (c)
        return c;
    if (x->distance != y->distance)
        return x->distance - y->distance;
    return x->dihedral - y->dihedral;
}

/* Brute force: best (distance, variant) per live reference; sorted like the index. */
static size_t brute_pdq(const model *m, const char *tenant, const uint8_t (*var)[32], size_t nv,
                        int threshold, const char *profile, int min_quality, index_pdq_match *out)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const ment *x = &m->e[i];
        if (!x->alive || strcmp(x->tenant, tenant) || (profile && strcmp(x->profile, profile)) ||
            x->quality < min_quality)
            continue;
        int best = 1000, bv = 0;
        for (size_t v = 0; v < nv; v++) {
            int d = hamming(x->hash, var[v]);
            if (d < best) {
                best = d;
                bv = (int)v;
            }
        }
        if (best > threshold)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        out[n].reference = ref_key(x->ref);
        snprintf(out[n].profile_id, VG_ID_MAX, "%s", x->profile);
        out[n].distance = best;
        out[n].dihedral = bv;
        out[n].quality = x->quality;
        n++;
    }
    qsort(out, n, sizeof *out, by_ref_then_best);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || keycmp(out[k - 1].reference, out[i].reference))
            out[k++] = out[i];
    qsort(out, k, sizeof *out, match_cmp);
    return k;
}

/* One query and its brute-force answer. */
typedef struct pdq_case {
    const char *tenant;
    const uint8_t (*var)[32];
    size_t nv;
    int threshold;
    const char *profile;
    int min_quality;
    index_pdq_match *want;
    size_t n_want;
} pdq_case;

static void expect_pdq(const model *m, pdq_case *c)
{
    c->want = calloc(m->n + 1, sizeof *c->want);
    assert_non_null(c->want);
    c->n_want =
        brute_pdq(m, c->tenant, c->var, c->nv, c->threshold, c->profile, c->min_quality, c->want);
}

/* Runs the case on the index and compares with its brute-force answer. */
static void compare_pdq(index_db *ix, const pdq_case *c)
{
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = c->var;
    q.n_variants = c->nv;
    q.threshold = c->threshold;
    q.profile_id = c->profile;
    q.min_quality = c->min_quality;
    q.max_results = c->n_want + 1;
    index_pdq_result r;
    assert_int_equal(index_pdq_search(ix, c->tenant, &q, &r), VG_OK);
    if (r.n != c->n_want)
        fprintf(stderr, "threshold %d nv %zu: index %zu matches, brute force %zu\n", c->threshold,
                c->nv, r.n, c->n_want);
    assert_int_equal(r.n, c->n_want);
    assert_false(r.truncated);
    for (size_t i = 0; i < c->n_want; i++) {
        assert_string_equal(ref_name(r.matches[i].reference), ref_name(c->want[i].reference));
        assert_int_equal(r.matches[i].reference, c->want[i].reference);
        assert_string_equal(r.matches[i].profile_id, c->want[i].profile_id);
        assert_int_equal(r.matches[i].distance, c->want[i].distance);
        assert_int_equal(r.matches[i].dihedral, c->want[i].dihedral);
        assert_int_equal(r.matches[i].quality, c->want[i].quality);
    }
    index_pdq_result_free(&r);
}

/* Brute force and compare in one go; returns the match count. */
static size_t check_pdq(index_db *ix, const model *m, const char *tenant, const uint8_t (*var)[32],
                        size_t nv, int threshold, const char *profile, int min_quality)
{
    pdq_case c = {tenant, var, nv, threshold, profile, min_quality, NULL, 0};
    expect_pdq(m, &c);
    compare_pdq(ix, &c);
    free(c.want);
    return c.n_want;
}

static void load_model(index_db *ix, const model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const ment *x = &m->e[i];
        assert_int_equal(
            index_pdq_add(ix, x->tenant, x->profile, ref_key(x->ref), x->hash, x->quality, 0),
            VG_OK);
    }
}

static const index_kernel all_kernels[] = {INDEX_KERNEL_PORTABLE, INDEX_KERNEL_POPCNT,
                                           INDEX_KERNEL_AVX2, INDEX_KERNEL_AVX512};

/* A config per (kernel, search); returns 0 when the CPU lacks the kernel. Short multi-index
 * tails (tail_min entries, or 1/8 of the tenant) so that small tests exercise the tables, the
 * flat tail and rebuilds; each build costs 4 MiB of bucket offsets, hence not 1 everywhere. */
static int open_ix_tail(index_kernel k, index_search s, size_t tail_min, index_db **ix)
{
    index_config c = {.pdq_kernel = k,
                      .face_kernel = k,
                      .pdq_search = s,
                      .mih_tail_min = tail_min,
                      .mih_min_entries = 1};
    int rc = index_new(&c, ix);
    if (rc == VG_EUNSUPPORTED)
        return 0;
    assert_int_equal(rc, VG_OK);
    return 1;
}

static int open_ix(index_kernel k, index_search s, index_db **ix)
{
    return open_ix_tail(k, s, 1, ix);
}

/* ---- PDQ vs brute force --------------------------------------------------------------------- */

/* A model of tenant "t" with n random hashes (refs r<i>, 5 profiles, 1-2 entries per
 * reference) plus, for each query, planted copies at the edge distances. Queries: 8 random
 * variants each. */
static void make_random(model *m, uint64_t *seed, size_t n, uint8_t (*queries)[8][32], size_t nq)
{
    static const int edges[] = {0, 1, 15, 16, 17, 30, 31, 32, 33, 47, 48, 64};
    for (size_t qi = 0; qi < nq; qi++)
        for (int v = 0; v < 8; v++)
            vgt_rand_hash(seed, queries[qi][v]);
    for (size_t i = 0; i < n; i++) {
        char ref[32], prof[32];
        uint8_t h[32];
        size_t r = i / 2 * 2 + (i % 3 == 0); /* some references get 2 entries */
        snprintf(ref, sizeof ref, "r%zu", r);
        snprintf(prof, sizeof prof, "p%d", (int)(r % 5));
        if (i % 4 == 0 && nq) {
            size_t qi = (i / 4) % nq;
            int v = (int)((i / 4 / nq) % 8);
            int k = edges[(i / 4) % VG_ARRAY_LEN(edges)];
            vgt_flip_bits(seed, queries[qi][v], k, h);
        } else {
            vgt_rand_hash(seed, h);
        }
        model_add(m, "t", prof, ref, h, (int)(r % 101));
    }
}

static void test_pdq_bruteforce_all_paths(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 7, 8, 9, 63, 65, 1000, 4099};
    static const int thresholds[] = {0, 15, 16, 30, 31, 32, 47, 48, 120};
    enum { NQ = 6, NT = VG_ARRAY_LEN(thresholds) };
    for (size_t si = 0; si < VG_ARRAY_LEN(sizes); si++) {
        uint64_t seed = 42 + sizes[si];
        model m = {0};
        uint8_t queries[NQ][8][32];
        make_random(&m, &seed, sizes[si], queries, NQ);
        /* Brute force once per data set; every kernel and search mode must agree with it. */
        pdq_case cases[NQ * NT * 2 + 6];
        size_t nc = 0, total = 0;
        for (size_t qi = 0; qi < NQ; qi++)
            for (size_t ti = 0; ti < NT; ti++)
                for (size_t nv = 1; nv <= 8; nv += 7)
                    cases[nc++] = (pdq_case){
                        "t", (const uint8_t(*)[32])queries[qi], nv, thresholds[ti], NULL, 0, NULL,
                        0};
        cases[nc++] = (pdq_case){"t", (const uint8_t(*)[32])queries[0], 8, 31, "p1", 0, NULL, 0};
        cases[nc++] = (pdq_case){"t", (const uint8_t(*)[32])queries[1], 8, 120, "p3", 50, NULL, 0};
        cases[nc++] = (pdq_case){"t", (const uint8_t(*)[32])queries[1], 8, 120, "no", 0, NULL, 0};
        cases[nc++] = (pdq_case){"x", (const uint8_t(*)[32])queries[1], 8, 120, NULL, 0, NULL, 0};
        /* several hash sets in one query (analyze: whole + trimmed + mirror): the variants of
         * consecutive queries, 17 and 24 in all */
        cases[nc++] = (pdq_case){"t", (const uint8_t(*)[32])queries[0], 24, 31, NULL, 0, NULL, 0};
        cases[nc++] = (pdq_case){"t", (const uint8_t(*)[32])queries[3], 17, 47, NULL, 0, NULL, 0};
        for (size_t i = 0; i < nc; i++) {
            expect_pdq(&m, &cases[i]);
            if (cases[i].threshold <= 64)
                total += cases[i].n_want;
        }
        if (sizes[si] >= 1000)
            assert_true(total > 100); /* the planted edges are there to be found */
        for (size_t ki = 0; ki < VG_ARRAY_LEN(all_kernels); ki++) {
            for (int s = INDEX_SEARCH_FLAT; s <= INDEX_SEARCH_MIH; s++) {
                index_db *ix;
                if (!open_ix_tail(all_kernels[ki], (index_search)s, sizes[si] < 100 ? 1 : 400, &ix))
                    continue;
                load_model(ix, &m);
                for (size_t i = 0; i < nc; i++)
                    compare_pdq(ix, &cases[i]);
                index_free(ix);
            }
        }
        for (size_t i = 0; i < nc; i++)
            free(cases[i].want);
        free(m.e);
    }
}

/* Identical variants (symmetric images) report the lowest index; a planted copy of variant 5
 * reports 5. */
static void test_pdq_dihedral_reporting(void **state)
{
    (void)state;
    index_db *ix;
    assert_int_equal(index_new(NULL, &ix), VG_OK);
    uint64_t seed = 7;
    uint8_t var[8][32];
    for (int v = 0; v < 8; v++)
        vgt_rand_hash(&seed, var[v]);
    memcpy(var[6], var[2], 32);
    uint8_t h[32];
    vgt_flip_bits(&seed, var[5], 3, h);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("five"), h, 90, 0), VG_OK);
    vgt_flip_bits(&seed, var[2], 4, h);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("two"), h, 90, 0), VG_OK);
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = (const uint8_t(*)[32])var;
    q.n_variants = 8;
    index_pdq_result r;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(ref_name(r.matches[0].reference), "five");
    assert_int_equal(r.matches[0].distance, 3);
    assert_int_equal(r.matches[0].dihedral, 5);
    assert_string_equal(ref_name(r.matches[1].reference), "two");
    assert_int_equal(r.matches[1].distance, 4);
    assert_int_equal(r.matches[1].dihedral, 2);
    index_pdq_result_free(&r);
    /* Without the variants nothing is near. */
    q.n_variants = 1;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_OK);
    assert_int_equal(r.n, 0);
    index_pdq_result_free(&r);
    index_free(ix);
}

static void test_pdq_max_results(void **state)
{
    (void)state;
    index_db *ix;
    assert_int_equal(index_new(NULL, &ix), VG_OK);
    uint64_t seed = 9;
    uint8_t base[32], h[32];
    vgt_rand_hash(&seed, base);
    for (int i = 0; i < 50; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "r%02d", i);
        vgt_flip_bits(&seed, base, i % 25, h);
        assert_int_equal(index_pdq_add(ix, "t", "p", ref_key(ref), h, 100, 0), VG_OK);
    }
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = (const uint8_t(*)[32])base;
    q.n_variants = 1;
    q.max_results = 10;
    index_pdq_result r;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_OK);
    assert_int_equal(r.n, 10);
    assert_true(r.truncated);
    for (size_t i = 0; i < r.n; i++)
        assert_int_equal(r.matches[i].distance, (int)i / 2); /* r00/r25 at 0, r01/r26 at 1 ... */
    /* r00 and r25 at distance 0, by key */
    assert_true(r.matches[0].reference < r.matches[1].reference);
    assert_true(r.matches[0].reference == ref_key("r00") ||
                r.matches[0].reference == ref_key("r25"));
    assert_true(r.matches[1].reference == ref_key("r00") ||
                r.matches[1].reference == ref_key("r25"));
    index_pdq_result_free(&r);
    index_free(ix);
}

/* ---- the PDQ regression haystack/needles ---------------------------------------------------- */

static size_t load_hashes(const char *name, uint8_t (**out)[32])
{
    char path[512];
    snprintf(path, sizeof path, "%s/index/%s", VG_TEST_DATA_DIR, name);
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 1 << 20, &buf, &len), VG_OK);
    uint8_t(*h)[32] = calloc(len / 64 + 1, 32);
    size_t n = 0;
    for (char *line = strtok((char *)buf, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        if (strlen(line) < 64)
            continue;
        assert_int_equal(vg_hex_decode(line, h[n], 32), VG_OK);
        n++;
    }
    vg_free(buf);
    *out = h;
    return n;
}

static void test_haystack_needles(void **state)
{
    (void)state;
    uint8_t(*hay)[32], (*needles)[32];
    size_t nh = load_hashes("haystack.txt", &hay);
    size_t nn = load_hashes("needles.txt", &needles);
    assert_int_equal(nh, 1350);
    assert_int_equal(nn, 100);
    static const int thresholds[] = {31, 0, 10, 20, 32, 47, 63};
    enum { NT = VG_ARRAY_LEN(thresholds) };
    model m = {0};
    for (size_t i = 0; i < nh; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "h%04zu", i);
        model_add(&m, "t", "p", ref, hay[i], 100);
    }
    pdq_case *cases = calloc(NT * nn, sizeof *cases);
    size_t at31 = 0;
    for (size_t ti = 0; ti < NT; ti++)
        for (size_t i = 0; i < nn; i++) {
            pdq_case *c = &cases[ti * nn + i];
            *c = (pdq_case){"t", (const uint8_t(*)[32])needles[i], 1, thresholds[ti], NULL, 0, NULL,
                            0};
            expect_pdq(&m, c);
            if (thresholds[ti] == 31)
                at31 += c->n_want;
        }
    /* The regression set is built so that needles have neighbours in the haystack. */
    assert_true(at31 >= nn);
    for (size_t ki = 0; ki < VG_ARRAY_LEN(all_kernels); ki++) {
        for (int s = INDEX_SEARCH_FLAT; s <= INDEX_SEARCH_MIH; s++) {
            index_db *ix;
            if (!open_ix_tail(all_kernels[ki], (index_search)s, 300, &ix))
                continue;
            load_model(ix, &m);
            for (size_t i = 0; i < NT * nn; i++)
                compare_pdq(ix, &cases[i]);
            index_free(ix);
        }
    }
    for (size_t i = 0; i < NT * nn; i++)
        free(cases[i].want);
    free(cases);
    free(m.e);
    free(hay);
    free(needles);
}

/* ---- tenants, profiles, deletes, compaction ------------------------------------------------- */

static void test_tenants_profiles_deletes(void **state)
{
    (void)state;
    for (int s = INDEX_SEARCH_FLAT; s <= INDEX_SEARCH_MIH; s++) {
        index_db *ix;
        assert_true(open_ix(INDEX_KERNEL_AUTO, (index_search)s, &ix));
        model m = {0};
        uint64_t seed = 1234;
        uint8_t q[8][32];
        for (int v = 0; v < 8; v++)
            vgt_rand_hash(&seed, q[v]);
        /* Two tenants share reference ids; each reference has 3 hashes near the query. */
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < 300; i++) {
                char ref[32], prof[32], ten[32];
                snprintf(ten, sizeof ten, "ten%d", t);
                snprintf(ref, sizeof ref, "r%d", i / 3);
                snprintf(prof, sizeof prof, "p%d", i / 30);
                uint8_t h[32];
                vgt_flip_bits(&seed, q[i % 8], (int)(vgt_rng_next(&seed) % 40), h);
                assert_int_equal(index_pdq_add(ix, ten, prof, ref_key(ref), h, 80, 0), VG_OK);
                model_add(&m, ten, prof, ref, h, 80);
            }
        index_stats st;
        assert_int_equal(index_stats_get(ix, NULL, &st), VG_OK);
        assert_int_equal(st.tenants, 2);
        assert_int_equal(st.pdq_entries, 600);
        assert_int_equal(st.references, 200);
        assert_int_equal(st.profiles, 20);
        assert_true(st.bytes > 600 * 32);
        check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 31, NULL, 0);
        check_pdq(ix, &m, "ten1", (const uint8_t(*)[32])q, 8, 31, "p3", 0);

        /* Delete references one by one in ten0 (compaction runs along the way), checking. */
        for (int i = 0; i < 100; i += 2) {
            char ref[32];
            snprintf(ref, sizeof ref, "r%d", i);
            assert_int_equal(index_remove_reference(ix, "ten0", ref_key(ref)), VG_OK);
            assert_int_equal(index_remove_reference(ix, "ten0", ref_key(ref)), VG_ENOTFOUND);
            for (size_t k = 0; k < m.n; k++)
                if (!strcmp(m.e[k].tenant, "ten0") && !strcmp(m.e[k].ref, ref))
                    m.e[k].alive = 0;
            if (i % 10 == 0)
                check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 31, NULL, 0);
        }
        check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 40, NULL, 0);
        check_pdq(ix, &m, "ten1", (const uint8_t(*)[32])q, 8, 40, NULL, 0);
        assert_int_equal(index_stats_get(ix, "ten0", &st), VG_OK);
        assert_int_equal(st.pdq_entries, 150);
        assert_int_equal(st.references, 50);
        assert_true(st.dead_entries * 4 < 150 + st.dead_entries); /* compacted along the way */

        /* Remove a profile; its references vanish, the same ids in ten1 stay. */
        assert_int_equal(index_remove_profile(ix, "ten0", "p5"), VG_OK);
        assert_int_equal(index_remove_profile(ix, "ten0", "p5"), VG_ENOTFOUND);
        for (size_t k = 0; k < m.n; k++)
            if (!strcmp(m.e[k].tenant, "ten0") && !strcmp(m.e[k].profile, "p5"))
                m.e[k].alive = 0;
        check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 40, NULL, 0);
        check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 40, "p5", 0);
        check_pdq(ix, &m, "ten1", (const uint8_t(*)[32])q, 8, 40, "p5", 0);

        /* A removed reference id can come back, under another profile. */
        uint8_t h[32];
        vgt_flip_bits(&seed, q[0], 2, h);
        assert_int_equal(index_pdq_add(ix, "ten0", "pnew", ref_key("r0"), h, 70, 0), VG_OK);
        model_add(&m, "ten0", "pnew", "r0", h, 70);
        check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 31, NULL, 0);
        check_pdq(ix, &m, "ten0", (const uint8_t(*)[32])q, 8, 31, "pnew", 0);

        /* Removing the tenant empties it and frees its memory. */
        index_stats before, after;
        assert_int_equal(index_stats_get(ix, NULL, &before), VG_OK);
        assert_int_equal(index_remove_tenant(ix, "ten1"), VG_OK);
        assert_int_equal(index_stats_get(ix, NULL, &after), VG_OK);
        assert_true(after.bytes < before.bytes);
        for (size_t k = 0; k < m.n; k++)
            if (!strcmp(m.e[k].tenant, "ten1"))
                m.e[k].alive = 0;
        check_pdq(ix, &m, "ten1", (const uint8_t(*)[32])q, 8, 64, NULL, 0);
        assert_int_equal(index_remove_tenant(ix, "nobody"), VG_ENOTFOUND);
        assert_int_equal(index_stats_get(ix, "nobody", &st), VG_ENOTFOUND);
        free(m.e);
        index_free(ix);
    }
}

static void test_mih_auto_switch(void **state)
{
    (void)state;
    index_config c = {.mih_min_entries = 500, .mih_tail_min = 64};
    index_db *ix;
    assert_int_equal(index_new(&c, &ix), VG_OK);
    model m = {0};
    uint64_t seed = 77;
    uint8_t q[8][32];
    for (int v = 0; v < 8; v++)
        vgt_rand_hash(&seed, q[v]);
    index_stats st;
    for (int i = 0; i < 2000; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "r%d", i);
        uint8_t h[32];
        vgt_flip_bits(&seed, q[i % 8], i % 64, h);
        assert_int_equal(index_pdq_add(ix, "t", "p", ref_key(ref), h, 100, 0), VG_OK);
        model_add(&m, "t", "p", ref, h, 100);
        if (i == 400) {
            assert_int_equal(index_stats_get(ix, "t", &st), VG_OK);
            assert_int_equal(st.mih_tenants, 0);
        }
        if (i % 250 == 0)
            check_pdq(ix, &m, "t", (const uint8_t(*)[32])q, 8, 31, NULL, 0);
    }
    assert_int_equal(index_stats_get(ix, "t", &st), VG_OK);
    assert_int_equal(st.mih_tenants, 1);
    size_t with_mih = st.bytes;
    /* 2000 entries: tables for 1-2 variants (>= 500 x max(1, v^2/2)), flat for 8 or T > 31. */
    index_stats a, b;
    assert_int_equal(index_stats_get(ix, NULL, &a), VG_OK);
    check_pdq(ix, &m, "t", (const uint8_t(*)[32])q, 1, 31, NULL, 0);
    check_pdq(ix, &m, "t", (const uint8_t(*)[32])q, 2, 31, NULL, 0);
    assert_int_equal(index_stats_get(ix, NULL, &b), VG_OK);
    assert_int_equal(b.pdq_mih_searches - a.pdq_mih_searches, 2);
    check_pdq(ix, &m, "t", (const uint8_t(*)[32])q, 8, 31, NULL, 0);
    check_pdq(ix, &m, "t", (const uint8_t(*)[32])q, 1, 47, NULL, 0);
    assert_int_equal(index_stats_get(ix, NULL, &a), VG_OK);
    assert_int_equal(a.pdq_mih_searches, b.pdq_mih_searches);
    assert_int_equal(a.pdq_flat_searches - b.pdq_flat_searches, 2);
    /* Shrink below the crossover: compaction drops the tables. */
    for (int i = 0; i < 1700; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "r%d", i);
        assert_int_equal(index_remove_reference(ix, "t", ref_key(ref)), VG_OK);
        m.e[i].alive = 0;
    }
    assert_int_equal(index_stats_get(ix, "t", &st), VG_OK);
    assert_int_equal(st.mih_tenants, 0);
    assert_true(st.bytes < with_mih);
    check_pdq(ix, &m, "t", (const uint8_t(*)[32])q, 8, 31, NULL, 0);
    free(m.e);
    index_free(ix);
}

/* A bulk load (index_bulk_begin .. _end, the catalog's build at start) builds no tables while it
 * runs, searches stay exact meanwhile, and index_bulk_end leaves the same answers as adds one by
 * one, from tables covering every entry of each tenant. */
static void test_bulk_load_equals_incremental(void **state)
{
    (void)state;
    enum { N = 3000, NQ = 6 };
    uint64_t seed = 2024;
    model m = {0};
    uint8_t queries[NQ][8][32];
    make_random(&m, &seed, N, queries, NQ);
    for (int i = 0; i < 40; i++) { /* a second tenant: each gets its own tables */
        char ref[32];
        uint8_t h[32];
        snprintf(ref, sizeof ref, "s%d", i);
        vgt_flip_bits(&seed, queries[i % NQ][0], i % 40, h);
        model_add(&m, "small", "p", ref, h, 50);
    }
    index_config c = {.pdq_search = INDEX_SEARCH_MIH, .mih_min_entries = 500, .mih_tail_min = 64};
    index_db *bulk, *inc;
    assert_int_equal(index_new(&c, &bulk), VG_OK);
    assert_int_equal(index_new(&c, &inc), VG_OK);
    load_model(inc, &m);
    index_bulk_begin(bulk);
    load_model(bulk, &m);
    index_stats st;
    assert_int_equal(index_stats_get(bulk, NULL, &st), VG_OK);
    assert_int_equal(st.mih_tenants, 0); /* deferred */
    assert_int_equal(st.pdq_entries, N + 40);
    for (size_t qi = 0; qi < NQ; qi++)
        check_pdq(bulk, &m, "t", (const uint8_t(*)[32])queries[qi], 8, 31, NULL, 0);
    assert_int_equal(index_bulk_end(bulk), VG_OK);
    assert_int_equal(index_stats_get(bulk, NULL, &st), VG_OK);
    assert_int_equal(st.mih_tenants, 2);
    index_stats a, b;
    assert_int_equal(index_stats_get(bulk, NULL, &a), VG_OK);
    for (size_t qi = 0; qi < NQ; qi++) {
        for (size_t nv = 1; nv <= 8; nv += 7) {
            check_pdq(bulk, &m, "t", (const uint8_t(*)[32])queries[qi], nv, 31, NULL, 0);
            check_pdq(inc, &m, "t", (const uint8_t(*)[32])queries[qi], nv, 31, NULL, 0);
            check_pdq(bulk, &m, "small", (const uint8_t(*)[32])queries[qi], nv, 31, NULL, 0);
        }
    }
    assert_int_equal(index_stats_get(bulk, NULL, &b), VG_OK);
    assert_int_equal(b.pdq_mih_searches - a.pdq_mih_searches, NQ * 2 * 2);
    /* Adds after the load rebuild as before. */
    for (int i = 0; i < 1000; i++) {
        char ref[32];
        uint8_t h[32];
        snprintf(ref, sizeof ref, "late%d", i);
        vgt_rand_hash(&seed, h);
        model_add(&m, "t", "p0", ref, h, 10);
        assert_int_equal(index_pdq_add(bulk, "t", "p0", ref_key(ref), h, 10, 0), VG_OK);
    }
    check_pdq(bulk, &m, "t", (const uint8_t(*)[32])queries[0], 8, 31, NULL, 0);
    /* Nothing to build: a second end is a no-op. */
    assert_int_equal(index_bulk_end(bulk), VG_OK);
    free(m.e);
    index_free(bulk);
    index_free(inc);
}

static int hit_cmp(const void *a, const void *b)
{
    const index__hit *x = a, *y = b;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    return (x->variant > y->variant) - (x->variant < y->variant);
}

/* Multi-index ids packed in 3 bytes (tenants up to 2^24 entries) and plain 4-byte ids find the
 * same (entry, variant) pairs, and exactly those within the threshold (brute force). */
static void test_mih_id_widths(void **state)
{
    (void)state;
    enum { N = 5003, NQ = 8 };
    uint64_t seed = 31337;
    uint64_t *rows = index__alloc_big(index__pdq_row_bytes(N));
    assert_non_null(rows);
    uint8_t q[NQ][8][32];
    for (size_t i = 0; i < NQ; i++)
        for (int v = 0; v < 8; v++)
            vgt_rand_hash(&seed, q[i][v]);
    for (size_t p = 0; p < N; p++) {
        uint8_t h[32];
        if (p % 3 == 0)
            vgt_flip_bits(&seed, q[p % NQ][p % 8], (int)(p % 48), h);
        else
            vgt_rand_hash(&seed, h);
        index__pdq_words(h, rows + p * 4);
    }
    index__mih *m3, *m4;
    assert_int_equal(index__mih_build_with(rows, N, 16, 3, &m3), VG_OK);
    assert_int_equal(index__mih_build_with(rows, N, 16, 4, &m4), VG_OK);
    assert_true(index__mih_bytes(m3) < index__mih_bytes(m4));
    size_t total = 0;
    for (size_t i = 0; i < NQ; i++) {
        uint64_t qw[8][4];
        for (int v = 0; v < 8; v++)
            index__pdq_words(q[i][v], qw[v]);
        index__hits h3 = {0}, h4 = {0};
        assert_int_equal(index__mih_search(m3, rows, (const uint64_t(*)[4])qw, 8, 31, 0, &h3),
                         VG_OK);
        assert_int_equal(index__mih_search(m4, rows, (const uint64_t(*)[4])qw, 8, 31, 1, &h4),
                         VG_OK);
        size_t want = 0;
        for (size_t p = 0; p < N; p++)
            for (int v = 0; v < 8; v++) {
                int d = 0;
                for (int w = 0; w < 4; w++)
                    d += __builtin_popcountll(rows[p * 4 + (size_t)w] ^ qw[v][w]);
                want += d <= 31;
            }
        assert_int_equal(h3.n, want);
        assert_int_equal(h4.n, want);
        if (want) {
            qsort(h3.v, h3.n, sizeof *h3.v, hit_cmp);
            qsort(h4.v, h4.n, sizeof *h4.v, hit_cmp);
            assert_memory_equal(h3.v, h4.v, want * sizeof *h3.v);
        }
        total += want;
        vg_free(h3.v);
        vg_free(h4.v);
    }
    assert_true(total > 100);
    assert_int_equal(index__mih_build_with(rows, N, 16, 5, &m3 /* untouched */), VG_ETOOBIG);
    assert_int_equal(index__mih_build_with(rows, N, 11, 3, &m3), VG_ETOOBIG);
    assert_int_equal(index__mih_build_with(rows, N, 17, 3, &m3), VG_ETOOBIG);
    index__mih_free(m3);
    index__mih_free(m4);
    vg_free(rows);
}

/* Through the public API, a tenant large enough for chunks wider than 16 bits (2^19 + entries:
 * 15 chunks of 17-18 bits) answers exactly as brute force, with the tables, after a bulk load
 * and after deletes have compacted it (the compaction rebuilds the tables); at the layout's
 * largest threshold (44) with them, above it with the flat scan. */
static void test_mih_wide_chunks_public(void **state)
{
    (void)state;
    enum { N = (1 << 19) + 4099, NQ = 3 };
    uint64_t seed = 77;
    model m = {0};
    uint8_t queries[NQ][8][32];
    make_random(&m, &seed, N, queries, NQ);
    index_config c = {.pdq_search = INDEX_SEARCH_MIH};
    index_db *ix;
    assert_int_equal(index_new(&c, &ix), VG_OK);
    index_bulk_begin(ix);
    load_model(ix, &m);
    assert_int_equal(index_bulk_end(ix), VG_OK);
    index_stats a, b;
    assert_int_equal(index_stats_get(ix, NULL, &a), VG_OK);
    assert_int_equal(a.mih_tenants, 1);
    size_t found = 0;
    for (size_t qi = 0; qi < NQ; qi++) {
        found += check_pdq(ix, &m, "t", (const uint8_t(*)[32])queries[qi], 8, 31, NULL, 0);
        found += check_pdq(ix, &m, "t", (const uint8_t(*)[32])queries[qi], 1, 44, NULL, 0);
    }
    assert_int_equal(index_stats_get(ix, NULL, &b), VG_OK);
    assert_int_equal(b.pdq_mih_searches - a.pdq_mih_searches, NQ * 2);
    check_pdq(ix, &m, "t", (const uint8_t(*)[32])queries[0], 2, 45, NULL, 0);
    assert_int_equal(index_stats_get(ix, NULL, &a), VG_OK);
    assert_int_equal(a.pdq_flat_searches - b.pdq_flat_searches, 1);
    /* Delete every reference r<i> with i % 3 == 1: over a quarter of the entries, so the tenant
     * is compacted and its tables rebuilt over the survivors. */
    size_t removed = 0;
    for (size_t i = 0; i < m.n; i++) {
        unsigned long r = strtoul(m.e[i].ref + 1, NULL, 10);
        if (r % 3 != 1 || !m.e[i].alive)
            continue;
        assert_int_equal(index_remove_reference(ix, "t", ref_key(m.e[i].ref)), VG_OK);
        for (size_t j = i; j < m.n && j < i + 3; j++) /* a reference's entries are adjacent */
            if (!strcmp(m.e[j].ref, m.e[i].ref)) {
                m.e[j].alive = 0;
                removed++;
            }
    }
    assert_int_equal(index_stats_get(ix, "t", &a), VG_OK);
    assert_int_equal(a.pdq_entries, N - removed);
    assert_true(a.dead_entries < removed); /* compacted on the way */
    assert_int_equal(a.mih_tenants, 1);
    for (size_t qi = 0; qi < NQ; qi++)
        found += check_pdq(ix, &m, "t", (const uint8_t(*)[32])queries[qi], 8, 31, NULL, 0);
    assert_true(found > NQ * 10);
    free(m.e);
    index_free(ix);
}

/* Packed bucket starts hold at most 2^16 - 1 entries per block of buckets: a chunk with more
 * (70,000 identical hashes, as a tenant of many copies of one flat image would have) keeps plain
 * starts, and both layouts answer exactly. */
static void test_mih_plain_starts_fallback(void **state)
{
    (void)state;
    enum { SAME = 70000, OTHER = 30000, N = SAME + OTHER };
    uint64_t *rows = vg_aligned_alloc(64, (size_t)N * 32);
    assert_non_null(rows);
    uint64_t seed = 12;
    uint8_t same[32];
    vgt_rand_hash(&seed, same);
    for (size_t i = 0; i < N; i++) {
        uint8_t h[32];
        if (i % 10 < 7)
            memcpy(h, same, 32);
        else
            vgt_rand_hash(&seed, h);
        index__pdq_words(h, rows + i * 4);
    }
    index__mih *m;
    assert_int_equal(index__mih_build(rows, N, &m), VG_OK);
    unsigned plain = 0;
    for (unsigned c = 0; c < m->n_chunks; c++)
        plain += m->plain[c] != NULL;
    assert_int_equal(plain, m->n_chunks); /* every chunk has the identical hashes' block */
    uint64_t q[1][4];
    index__pdq_words(same, q[0]);
    index__hits h = {0};
    assert_int_equal(index__mih_search(m, rows, (const uint64_t(*)[4])q, 1, 0, 1, &h), VG_OK);
    assert_int_equal(h.n, SAME);
    vg_free(h.v);
    index__mih_free(m);
    /* The random rows alone pack, and a stored hash is found. */
    assert_int_equal(index__mih_build(rows + (size_t)SAME * 4, OTHER, &m), VG_OK);
    for (unsigned c = 0; c < m->n_chunks; c++)
        assert_null(m->plain[c]);
    index__hits h2 = {0};
    assert_int_equal(index__mih_search(m, rows + (size_t)SAME * 4,
                                       (const uint64_t(*)[4])(rows + (size_t)SAME * 4 + 4 * 7), 1,
                                       31, 1, &h2),
                     VG_OK);
    int found = 0;
    for (size_t i = 0; i < h2.n; i++)
        found |= h2.v[i].pos == 7 && h2.v[i].distance == 0;
    assert_true(found);
    vg_free(h2.v);
    index__mih_free(m);
    vg_free(rows);
}

/* The chunk count follows the tenant's size: 16 chunks of 16 bits below 2^19 entries, then
 * about log2(n) - 1 bits, down to 12 chunks of 21-22 bits from 2^23 (the 10M target) on. */
static void test_mih_chunks_for(void **state)
{
    (void)state;
    assert_int_equal(index__mih_chunks_for(0), 16);
    assert_int_equal(index__mih_chunks_for(1000), 16);
    assert_int_equal(index__mih_chunks_for((size_t)1 << 17), 16);
    assert_int_equal(index__mih_chunks_for(((size_t)1 << 18) + 5), 16); /* 17 bits: 16 chunks */
    assert_int_equal(index__mih_chunks_for((size_t)1 << 19), 15);       /* 18 bits */
    assert_int_equal(index__mih_chunks_for(1000000), 15);               /* 2^19.9: 18 bits */
    assert_int_equal(index__mih_chunks_for((size_t)1 << 21), 13);       /* 20 bits */
    assert_int_equal(index__mih_chunks_for(10000000), 12);              /* 22 bits */
    assert_int_equal(index__mih_chunks_for((size_t)1 << 30), 12);       /* capped at 22 */
}

/* Every chunk layout (12..16 chunks: 22 to 16 bits, radii by the refined pigeonhole bound, some
 * chunks not probed at all when threshold + 1 < chunks) finds exactly the (entry, variant)
 * pairs a brute-force scan finds, each once, at random sizes and thresholds up to the largest the
 * layout answers; one above it is refused. */
static void test_mih_chunk_layouts_exact(void **state)
{
    (void)state;
    enum { NQ = 3, NV = 4 };
    uint64_t seed = 4242;
    static const int thresholds[] = {0, 3, 11, 12, 20, 31, 35};
    for (unsigned chunks = INDEX__MIH_MIN_CHUNKS; chunks <= INDEX__MIH_MAX_CHUNKS; chunks++) {
        size_t n = 1 + (size_t)(vgt_rng_next(&seed) % 3000);
        uint64_t *rows = index__alloc_big(index__pdq_row_bytes(n + INDEX__GROUP));
        assert_non_null(rows);
        uint8_t q[NQ][NV][32];
        for (size_t i = 0; i < NQ; i++)
            for (int v = 0; v < NV; v++)
                vgt_rand_hash(&seed, q[i][v]);
        for (size_t p = 0; p < n; p++) {
            uint8_t h[32];
            if (p % 2 == 0) /* near the queries, at every distance up to 40 */
                vgt_flip_bits(&seed, q[p % NQ][p % NV], (int)(p % 41), h);
            else
                vgt_rand_hash(&seed, h);
            index__pdq_words(h, rows + p * 4);
        }
        index__mih *m;
        assert_int_equal(index__mih_build_with(rows, n, chunks, 3, &m), VG_OK);
        assert_int_equal(index__mih_max_threshold(m), (int)chunks * 3 - 1);
        size_t total = 0;
        for (size_t ti = 0; ti < sizeof thresholds / sizeof *thresholds; ti++) {
            int t = thresholds[ti];
            for (size_t i = 0; i < NQ; i++) {
                uint64_t qw[NV][4];
                for (int v = 0; v < NV; v++)
                    index__pdq_words(q[i][v], qw[v]);
                index__hits h = {0};
                assert_int_equal(
                    index__mih_search(m, rows, (const uint64_t(*)[4])qw, NV, t, (int)(i & 1), &h),
                    VG_OK);
                index__hits want = {0};
                for (size_t p = 0; p < n; p++)
                    for (int v = 0; v < NV; v++) {
                        int d = 0;
                        for (int w = 0; w < 4; w++)
                            d += __builtin_popcountll(rows[p * 4 + (size_t)w] ^ qw[v][w]);
                        if (d <= t)
                            assert_int_equal(index__hits_push(&want, (uint32_t)p, d, v), VG_OK);
                    }
                assert_int_equal(h.n, want.n);
                if (want.n) {
                    qsort(h.v, h.n, sizeof *h.v, hit_cmp);
                    assert_memory_equal(h.v, want.v, want.n * sizeof *h.v);
                }
                total += want.n;
                vg_free(h.v);
                vg_free(want.v);
            }
        }
        assert_true(total > 10);
        uint64_t qw[1][4] = {{0}};
        index__hits h = {0};
        assert_int_equal(index__mih_search(m, rows, (const uint64_t(*)[4])qw, 1,
                                           index__mih_max_threshold(m) + 1, 1, &h),
                         VG_EINVAL);
        index__mih_free(m);
        vg_free(rows);
    }
}

static void test_errors(void **state)
{
    (void)state;
    index_db *ix;
    assert_int_equal(index_new(NULL, &ix), VG_OK);
    uint8_t h[32] = {0};
    char long_id[VG_ID_MAX + 1];
    memset(long_id, 'x', VG_ID_MAX);
    long_id[VG_ID_MAX] = '\0';
    assert_int_equal(index_pdq_add(ix, "", "p", ref_key("r"), h, 50, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", NULL, ref_key("r"), h, 50, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", long_id, ref_key("r"), h, 50, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", "p", 0, h, 50, 0), VG_EINVAL); /* key 0 */
    assert_int_equal(index_pdq_add(ix, "t", "p", 1ull << 40, h, 50, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", "p", (1ull << 40) - 1, h, 50, 0), VG_OK);
    assert_int_equal(index_remove_reference(ix, "t", (1ull << 40) - 1), VG_OK);
    long_id[VG_ID_MAX - 1] = '\0'; /* 47 bytes: fits */
    assert_int_equal(index_pdq_add(ix, "t", long_id, ref_key("r2"), h, 50, 0), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("r"), h, 101, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("r"), h, -1, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("r"), NULL, 50, 0), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("r"), h, 50, 0), VG_OK);
    /* A reference's entries come one after the other: r2's run ended when r's began. */
    vg_err_clear();
    assert_int_equal(index_pdq_add(ix, "t", long_id, ref_key("r2"), h, 50, 0), VG_ECONFLICT);
    assert_non_null(strstr(vg_err_msg(), "one after the other"));
    vg_err_clear();
    assert_int_equal(index_pdq_add(ix, "t", "other", ref_key("r"), h, 50, 0), VG_ECONFLICT);
    assert_non_null(strstr(vg_err_msg(), "belongs to profile p"));
    float d[VG_DESCRIPTOR_DIM] = {0};
    assert_int_equal(index_face_add(ix, "t", "other", ref_key("r"), d), VG_ECONFLICT);
    d[5] = NAN;
    assert_int_equal(index_face_add(ix, "t", "p", ref_key("r"), d), VG_EINVAL);
    d[5] = INFINITY;
    assert_int_equal(index_face_add(ix, "t", "p", ref_key("r"), d), VG_EINVAL);

    index_pdq_query q = index_pdq_query_defaults();
    index_pdq_result r;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_EINVAL); /* no variants */
    q.variants = (const uint8_t(*)[32])h;
    q.n_variants = INDEX_PDQ_MAX_VARIANTS + 1;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_EINVAL);
    q.n_variants = 1;
    q.threshold = 257;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_EINVAL);
    q.threshold = -1;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_EINVAL);
    q.threshold = 0;
    assert_int_equal(index_pdq_search(ix, "t", &q, &r), VG_OK);
    assert_int_equal(r.n, 2); /* "r" and "r2" share the all-zero hash */
    index_pdq_result_free(&r);

    index_face_query fq = {0};
    index_face_result fr;
    assert_int_equal(index_face_search(ix, "t", &fq, &fr), VG_EINVAL);
    d[5] = NAN;
    fq.descriptor = d;
    assert_int_equal(index_face_search(ix, "t", &fq, &fr), VG_EINVAL);
    d[5] = 0;
    fq.top_k = INDEX_FACE_TOP_K_MAX + 1;
    assert_int_equal(index_face_search(ix, "t", &fq, &fr), VG_EINVAL);

    /* Per-tenant entry limit. */
    index_free(ix);
    index_config c = {.max_entries_per_tenant = 3};
    assert_int_equal(index_new(&c, &ix), VG_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("r"), h, 50, 0), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("r"), h, 50, 0), VG_ETOOBIG);
    assert_int_equal(index_face_add(ix, "t", "p", ref_key("r"), d), VG_ETOOBIG);
    assert_int_equal(index_pdq_add(ix, "u", "p", ref_key("r"), h, 50, 0), VG_OK); /* per tenant */
    index_free(ix);
    index_free(NULL);
    c = (index_config){.max_entries_per_tenant = (size_t)1 << 40};
    assert_int_equal(index_new(&c, &ix), VG_EINVAL);
}

/* ---- faces ---------------------------------------------------------------------------------- */

typedef struct fment {
    char profile[32], ref[32];
    float d[VG_DESCRIPTOR_DIM];
    int alive;
} fment;

static void rand_unit(uint64_t *s, float *d)
{
    double n = 0;
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++) {
        d[i] = (float)((double)(vgt_rng_next(s) >> 11) / 9007199254740992.0 - 0.5);
        n += (double)d[i] * d[i];
    }
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++)
        d[i] = (float)(d[i] / sqrt(n));
}

/* q + noise of L2 norm ~r */
static void near_desc(uint64_t *s, const float *q, double r, float *out)
{
    float noise[VG_DESCRIPTOR_DIM];
    rand_unit(s, noise);
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++)
        out[i] = q[i] + (float)r * noise[i];
}

typedef struct fwant {
    const char *ref, *profile;
    double d;
} fwant;

static int fwant_cmp(const void *a, const void *b)
{
    const fwant *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return strcmp(x->ref, y->ref);
}

static int fwant_by_ref(const void *a, const void *b)
{
    const fwant *x = a, *y = b;
    int c = strcmp(x->ref, y->ref);
    if (c)
        return c;
    return (x->d > y->d) - (x->d < y->d);
}

static void check_face(index_db *ix, const fment *e, size_t n, const float *q, float threshold,
                       size_t top_k, const char *profile)
{
    fwant *w = calloc(n + 1, sizeof *w);
    size_t nw = 0;
    double t = threshold > 0 ? threshold : INDEX_FACE_THRESHOLD_DEFAULT;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].alive || (profile && strcmp(e[i].profile, profile)))
            continue;
        double s = 0;
        for (int j = 0; j < VG_DESCRIPTOR_DIM; j++)
            s += ((double)e[i].d[j] - q[j]) * ((double)e[i].d[j] - q[j]);
        double d = sqrt(s);
        /* Summation order differs between kernels: keep test data off the boundary. */
        assert_true(fabs(d - t) > 1e-4);
        if (d >= t)
            continue;
        w[nw++] = (fwant){e[i].ref, e[i].profile, d};
    }
    qsort(w, nw, sizeof *w, fwant_by_ref);
    size_t uniq = 0;
    for (size_t i = 0; i < nw; i++)
        if (uniq == 0 || strcmp(w[uniq - 1].ref, w[i].ref))
            w[uniq++] = w[i];
    nw = uniq;
    qsort(w, nw, sizeof *w, fwant_cmp);
    size_t k = top_k ? top_k : INDEX_FACE_TOP_K_DEFAULT;
    size_t expect = VG_MIN(nw, k);
    index_face_query fq = {
        .descriptor = q, .threshold = threshold, .top_k = top_k, .profile_id = profile};
    index_face_result r;
    assert_int_equal(index_face_search(ix, "t", &fq, &r), VG_OK);
    assert_int_equal(r.n, expect);
    for (size_t i = 0; i < expect; i++) {
        assert_float_equal(r.matches[i].distance, w[i].d, 1e-5);
        /* Equal distances (several descriptors at one spot) may swap; the tests avoid them. */
        assert_string_equal(ref_name(r.matches[i].reference), w[i].ref);
        assert_string_equal(r.matches[i].profile_id, w[i].profile);
    }
    index_face_result_free(&r);
    free(w);
}

static void test_face_bruteforce(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1023, 1024, 1025, 3000};
    for (size_t ki = 0; ki < VG_ARRAY_LEN(all_kernels); ki++) {
        if (all_kernels[ki] == INDEX_KERNEL_POPCNT)
            continue;
        for (size_t si = 0; si < VG_ARRAY_LEN(sizes); si++) {
            index_db *ix;
            if (!open_ix(all_kernels[ki], INDEX_SEARCH_AUTO, &ix))
                continue;
            assert_int_equal(index_face_kernel(ix), all_kernels[ki]);
            uint64_t seed = 99 + sizes[si];
            size_t n = sizes[si];
            fment *e = calloc(n + 1, sizeof *e);
            _Alignas(64) float q[3][VG_DESCRIPTOR_DIM];
            for (int k = 0; k < 3; k++)
                rand_unit(&seed, q[k]);
            for (size_t i = 0; i < n; i++) {
                snprintf(e[i].ref, sizeof e[i].ref, "f%zu", i / 3); /* 3 descriptors per ref */
                snprintf(e[i].profile, sizeof e[i].profile, "p%zu", i / 30);
                if (i % 5 == 0)
                    /* distinct radii (no ties), >= 1e-4 from the thresholds used */
                    near_desc(&seed, q[i % 3], 0.02 + 0.0013 * (double)(i / 5), e[i].d);
                else
                    rand_unit(&seed, e[i].d);
                e[i].alive = 1;
                assert_int_equal(index_face_add(ix, "t", e[i].profile, ref_key(e[i].ref), e[i].d),
                                 VG_OK);
            }
            for (int k = 0; k < 3; k++) {
                check_face(ix, e, n, q[k], 0, 0, NULL);
                check_face(ix, e, n, q[k], 0.45f, 3, NULL);
                check_face(ix, e, n, q[k], 0.8f, 10000, NULL);
                check_face(ix, e, n, q[k], 0.8f, 5, "p1");
            }
            /* Deletes. */
            for (size_t i = 0; i < n; i += 7) {
                if (!e[i].alive)
                    continue;
                assert_int_equal(index_remove_reference(ix, "t", ref_key(e[i].ref)), VG_OK);
                for (size_t j = 0; j < n; j++)
                    if (!strcmp(e[j].ref, e[i].ref))
                        e[j].alive = 0;
            }
            for (int k = 0; k < 3; k++)
                check_face(ix, e, n, q[k], 0.8f, 10000, NULL);
            free(e);
            index_free(ix);
        }
    }
}

/* Threshold is strict on every kernel: a descriptor at exactly 0.6 (one component) misses,
 * 0.59 matches; the squared values are computed identically by all summation orders. */
static void test_face_threshold_strict(void **state)
{
    (void)state;
    for (size_t ki = 0; ki < VG_ARRAY_LEN(all_kernels); ki++) {
        index_db *ix;
        if (!open_ix(all_kernels[ki], INDEX_SEARCH_AUTO, &ix))
            continue;
        float a[VG_DESCRIPTOR_DIM] = {0}, b[VG_DESCRIPTOR_DIM] = {0}, q[VG_DESCRIPTOR_DIM] = {0};
        a[17] = 0.6f;
        b[100] = -0.59f;
        assert_int_equal(index_face_add(ix, "t", "p", ref_key("at"), a), VG_OK);
        assert_int_equal(index_face_add(ix, "t", "p", ref_key("below"), b), VG_OK);
        index_face_query fq = {.descriptor = q};
        index_face_result r;
        assert_int_equal(index_face_search(ix, "t", &fq, &r), VG_OK);
        assert_int_equal(r.n, 1);
        assert_string_equal(ref_name(r.matches[0].reference), "below");
        assert_float_equal(r.matches[0].distance, 0.59, 1e-6);
        index_face_result_free(&r);
        fq.threshold = 0.61f;
        assert_int_equal(index_face_search(ix, "t", &fq, &r), VG_OK);
        assert_int_equal(r.n, 2);
        index_face_result_free(&r);
        /* A PDQ query on a face-only tenant and the reverse find nothing. */
        uint8_t h[32] = {0};
        index_pdq_query pq = index_pdq_query_defaults();
        pq.variants = (const uint8_t(*)[32])h;
        pq.n_variants = 1;
        pq.threshold = 256;
        index_pdq_result pr;
        assert_int_equal(index_pdq_search(ix, "t", &pq, &pr), VG_OK);
        assert_int_equal(pr.n, 0);
        index_pdq_result_free(&pr);
        index_free(ix);
    }
}

/* ---- kernels and dispatch ------------------------------------------------------------------- */

static void test_kernel_selection(void **state)
{
    (void)state;
    index_db *ix;
    assert_int_equal(index_new(NULL, &ix), VG_OK);
    unsigned f = vg_cpu_features();
    index_kernel want = (f & VG_CPU_AVX512F) && (f & VG_CPU_AVX512VPOPCNTDQ) ? INDEX_KERNEL_AVX512
                        : (f & VG_CPU_AVX2)                                  ? INDEX_KERNEL_AVX2
                        : (f & VG_CPU_POPCNT)                                ? INDEX_KERNEL_POPCNT
                                              : INDEX_KERNEL_PORTABLE;
    assert_int_equal(index_pdq_kernel(ix), want);
    if (f == 0) {
        assert_int_equal(index_pdq_kernel(ix), INDEX_KERNEL_PORTABLE);
        assert_int_equal(index_face_kernel(ix), INDEX_KERNEL_PORTABLE);
        index_config c = {.pdq_kernel = INDEX_KERNEL_AVX2};
        index_db *x;
        assert_int_equal(index_new(&c, &x), VG_EUNSUPPORTED);
    }
    assert_string_equal(index_kernel_name(INDEX_KERNEL_AVX512), "avx512");
    assert_string_equal(index_kernel_name(INDEX_KERNEL_PORTABLE), "portable");
    index_free(ix);
    index_config bad = {.pdq_search = (index_search)7};
    assert_int_equal(index_new(&bad, &ix), VG_EINVAL);
}

/* ---- concurrency ---------------------------------------------------------------------------- */

enum { CONC_REFS = 3000, CONC_READERS = 3 };

/* Every reference's hash is a function of its number, so a reader can check each match. */
static void conc_hash(int i, uint8_t h[32])
{
    uint64_t s = 0x1234567ull + (uint64_t)i * 7919;
    vgt_rand_hash(&s, h);
}

typedef struct conc {
    index_db *ix;
    atomic_int deleted_upto;   /* refs [0, deleted_upto) have been removed (calls returned) */
    atomic_int delete_started; /* refs [0, delete_started) are removed or being removed */
    atomic_int added_upto;
    atomic_int stop;
    atomic_long queries;
    atomic_int failures;
} conc;

/* Every reference's descriptor is a function of its number too (a unit vector). */
static void conc_desc(int i, float d[VG_DESCRIPTOR_DIM])
{
    uint64_t s = 0x7654321ull + (uint64_t)i * 104729;
    rand_unit(&s, d);
}

static double l2(const float *a, const float *b)
{
    double s = 0;
    for (int k = 0; k < VG_DESCRIPTOR_DIM; k++)
        s += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
    return sqrt(s);
}

static void *conc_reader(void *arg)
{
    conc *c = arg;
    uint64_t seed = (uint64_t)(uintptr_t)&seed;
    for (long n = 0; !atomic_load(&c->stop); n++) {
        int del = atomic_load(&c->deleted_upto);
        int add = atomic_load(&c->added_upto);
        /* Pick a deleted ref (must be absent) or a live one (must be present). */
        int i = (int)(vgt_rng_next(&seed) % (uint64_t)(add > 0 ? add : 1));
        int found = 0, bad = 0;
        if (n % 2 == 0) {
            uint8_t h[32];
            conc_hash(i, h);
            index_pdq_query q = index_pdq_query_defaults();
            q.variants = (const uint8_t(*)[32])h;
            q.n_variants = 1;
            index_pdq_result r;
            if (index_pdq_search(c->ix, "t", &q, &r)) {
                atomic_fetch_add(&c->failures, 1);
                continue;
            }
            for (size_t k = 0; k < r.n; k++) {
                int j = atoi(ref_name(r.matches[k].reference) + 1);
                uint8_t hj[32];
                conc_hash(j, hj);
                bad += r.matches[k].distance != hamming(h, hj); /* a torn entry would differ */
                bad += j < del; /* deleted before the query started */
                found |= j == i;
            }
            index_pdq_result_free(&r);
        } else {
            float d[VG_DESCRIPTOR_DIM];
            conc_desc(i, d);
            index_face_query q = {.descriptor = d, .top_k = 3};
            index_face_result r;
            if (index_face_search(c->ix, "t", &q, &r)) {
                atomic_fetch_add(&c->failures, 1);
                continue;
            }
            for (size_t k = 0; k < r.n; k++) {
                int j = atoi(ref_name(r.matches[k].reference) + 1);
                float dj[VG_DESCRIPTOR_DIM];
                conc_desc(j, dj);
                bad += fabs(r.matches[k].distance - l2(d, dj)) > 1e-4;
                bad += j < del;
                found |= j == i;
            }
            index_face_result_free(&r);
        }
        /* Added before the query started and not even being deleted when it ended. */
        bad += i < add && i >= atomic_load(&c->delete_started) && !found;
        if (bad)
            atomic_fetch_add(&c->failures, bad);
        atomic_fetch_add(&c->queries, 1);
    }
    return NULL;
}

static void test_concurrent_readers_writer(void **state)
{
    (void)state;
    for (int s = INDEX_SEARCH_FLAT; s <= INDEX_SEARCH_MIH; s++) {
        conc c = {0};
        index_config cfg = {.pdq_search = (index_search)s, .mih_tail_min = 256};
        assert_int_equal(index_new(&cfg, &c.ix), VG_OK);
        pthread_t th[CONC_READERS];
        for (int i = 0; i < CONC_READERS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);
        while (atomic_load(&c.queries) < CONC_READERS)
            sched_yield();
        for (int i = 0; i < CONC_REFS; i++) {
            if (i % 64 == 0) { /* make sure readers run between the writes */
                long seen = atomic_load(&c.queries);
                while (atomic_load(&c.queries) < seen + CONC_READERS)
                    sched_yield();
            }
            char ref[32];
            uint8_t h[32];
            snprintf(ref, sizeof ref, "r%d", i);
            conc_hash(i, h);
            float desc[VG_DESCRIPTOR_DIM];
            conc_desc(i, desc);
            assert_int_equal(index_pdq_add(c.ix, "t", "p", ref_key(ref), h, 100, 0), VG_OK);
            assert_int_equal(index_face_add(c.ix, "t", "p", ref_key(ref), desc), VG_OK);
            atomic_store(&c.added_upto, i + 1);
            if (i % 3 == 2) { /* delete the oldest live one: triggers compactions too */
                int d = atomic_load(&c.deleted_upto);
                snprintf(ref, sizeof ref, "r%d", d);
                atomic_store(&c.delete_started, d + 1);
                assert_int_equal(index_remove_reference(c.ix, "t", ref_key(ref)), VG_OK);
                atomic_store(&c.deleted_upto, d + 1);
            }
        }
        atomic_store(&c.stop, 1);
        for (int i = 0; i < CONC_READERS; i++)
            pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&c.failures), 0);
        assert_true(atomic_load(&c.queries) > 0);
        index_free(c.ix);
    }
}

/* ---- allocation failures -------------------------------------------------------------------- */

/* index_pdq_query.tags: a search restricted to some tags never reports an entry of another tag,
 * even at distance 0, and reports the best entry among its own tags (copy detection's halves:
 * a query's top half meets only the references' top halves; the whole image never a half). */
static void test_pdq_tags_filter(void **state)
{
    (void)state;
    for (int s = INDEX_SEARCH_FLAT; s <= INDEX_SEARCH_MIH; s++) {
        index_db *ix;
        assert_true(open_ix(INDEX_KERNEL_AUTO, (index_search)s, &ix));
        uint64_t seed = 2024;
        uint8_t whole[32], top[32], bottom[32], q[32];
        vgt_rand_hash(&seed, whole);
        vgt_rand_hash(&seed, top);
        vgt_rand_hash(&seed, bottom);
        assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("a"), whole, 90, 0), VG_OK);
        assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("a"), top, 90, 5), VG_OK);
        assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("a"), bottom, 90, 6), VG_OK);
        for (int i = 0; i < 200; i++) { /* enough rows for the multi-index tables */
            char id[16];
            uint8_t h[32];
            vgt_rand_hash(&seed, h);
            snprintf(id, sizeof id, "f%d", i);
            assert_int_equal(index_pdq_add(ix, "t", "p", ref_key(id), h, 90, i % 7), VG_OK);
        }
        vgt_flip_bits(&seed, bottom, 3, q);
        static const struct {
            uint64_t tags;
            size_t n;
            int tag;
        } cases[] = {{0, 1, 6}, {1u << 6, 1, 6}, {1u << 5, 0, 0}, {0x1f, 0, 0}, {1ull << 63, 0, 0}};
        for (size_t c = 0; c < VG_ARRAY_LEN(cases); c++) {
            index_pdq_query iq = index_pdq_query_defaults();
            iq.variants = (const uint8_t(*)[32])q;
            iq.n_variants = 1;
            iq.tags = cases[c].tags;
            index_pdq_result r;
            assert_int_equal(index_pdq_search(ix, "t", &iq, &r), VG_OK);
            assert_int_equal(r.n, cases[c].n);
            if (r.n) {
                assert_string_equal(ref_name(r.matches[0].reference), "a");
                assert_int_equal(r.matches[0].distance, 3);
                assert_int_equal(r.matches[0].tag, cases[c].tag);
            }
            index_pdq_result_free(&r);
        }
        index_free(ix);
    }
}

/* Copy detection's merge rule: a reference with entries under several tags (whole image, its
 * trimmed content, a centre crop) and a query with several hash sets give one match per
 * reference, at the best distance over every entry and variant, reporting that entry's tag and
 * that variant; at equal distance and variant the lowest tag wins. Tags survive compaction. */
static void test_pdq_tags_merge(void **state)
{
    (void)state;
    index_db *ix;
    assert_int_equal(index_new(NULL, &ix), VG_OK);
    uint64_t seed = 1414;
    uint8_t whole[32], trimmed[32], crop[32], other[32], sym[32], q[3][32];
    vgt_rand_hash(&seed, whole);
    vgt_rand_hash(&seed, trimmed);
    vgt_rand_hash(&seed, crop);
    vgt_rand_hash(&seed, other);
    vgt_rand_hash(&seed, sym);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("a"), whole, 90, 0), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("a"), trimmed, 80, 1), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("a"), crop, 70, 4), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("b"), other, 90, 0), VG_OK);
    /* "c": the same hash as its whole image and as a part */
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("c"), sym, 60, 3), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("c"), sym, 90, 0), VG_OK);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("x"), sym, 90, 256), VG_EINVAL);
    assert_int_equal(index_pdq_add(ix, "t", "p", ref_key("x"), sym, 90, -1), VG_EINVAL);

    /* set 1 (variant 0): near the whole image (12 bits); set 2 (variants 1, 2): unrelated, then
     * near the trimmed content (5 bits): the trimmed entry wins, reported once */
    vgt_flip_bits(&seed, whole, 12, q[0]);
    vgt_rand_hash(&seed, q[1]);
    vgt_flip_bits(&seed, trimmed, 5, q[2]);
    for (int round = 0; round < 2; round++) {
        index_pdq_query iq = index_pdq_query_defaults();
        iq.variants = (const uint8_t(*)[32])q;
        iq.n_variants = 3;
        index_pdq_result r;
        assert_int_equal(index_pdq_search(ix, "t", &iq, &r), VG_OK);
        assert_int_equal(r.n, 1);
        assert_string_equal(ref_name(r.matches[0].reference), "a");
        assert_int_equal(r.matches[0].distance, 5);
        assert_int_equal(r.matches[0].dihedral, 2);
        assert_int_equal(r.matches[0].tag, 1);
        assert_int_equal(r.matches[0].quality, 80);
        index_pdq_result_free(&r);

        iq.variants = (const uint8_t(*)[32])sym;
        iq.n_variants = 1;
        assert_int_equal(index_pdq_search(ix, "t", &iq, &r), VG_OK);
        assert_int_equal(r.n, 1);
        assert_string_equal(ref_name(r.matches[0].reference), "c");
        assert_int_equal(r.matches[0].distance, 0);
        assert_int_equal(r.matches[0].tag, 0);
        assert_int_equal(r.matches[0].quality, 90);
        index_pdq_result_free(&r);

        iq.variants = (const uint8_t(*)[32])crop;
        assert_int_equal(index_pdq_search(ix, "t", &iq, &r), VG_OK);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.matches[0].tag, 4);
        index_pdq_result_free(&r);

        /* removing a reference removes all of its entries; the rest keep their tags through
         * the compaction that many removals trigger */
        if (round == 0) {
            char id[16];
            for (int i = 0; i < 40; i++) {
                uint8_t h[32];
                vgt_rand_hash(&seed, h);
                snprintf(id, sizeof id, "d%d", i);
                assert_int_equal(index_pdq_add(ix, "t", "p", ref_key(id), h, 90, 2), VG_OK);
            }
            for (int i = 0; i < 40; i++) {
                snprintf(id, sizeof id, "d%d", i);
                assert_int_equal(index_remove_reference(ix, "t", ref_key(id)), VG_OK);
            }
            assert_int_equal(index_remove_reference(ix, "t", ref_key("b")), VG_OK);
            index_stats st;
            assert_int_equal(index_stats_get(ix, "t", &st), VG_OK);
            assert_int_equal(st.pdq_entries, 5);
            assert_int_equal(st.references, 2);
        }
    }
    assert_int_equal(index_remove_reference(ix, "t", ref_key("a")), VG_OK);
    index_pdq_query iq = index_pdq_query_defaults();
    iq.variants = (const uint8_t(*)[32])crop;
    iq.n_variants = 1;
    index_pdq_result r;
    assert_int_equal(index_pdq_search(ix, "t", &iq, &r), VG_OK);
    assert_int_equal(r.n, 0);
    index_free(ix);
}

/* References by key: runs of PDQ and face entries per reference, removals by key and by
 * profile, keys re-added after their removal (a new run beside the dead one), compactions on
 * the way, part of it in a bulk load; after every step has_reference, the stats and a search
 * returning every entry agree with a model. */
static void test_reference_runs(void **state)
{
    (void)state;
    enum { NREF = 300, NPROF = 5 };
    typedef struct {
        int live, n_pdq, n_face, profile;
        uint8_t best[32]; /* its first hash: the search below finds it at distance 0 */
    } mref;
    static mref m[NREF + 1];
    memset(m, 0, sizeof m);
    index_db *ix;
    index_config cfg = {.pdq_search = INDEX_SEARCH_FLAT};
    assert_int_equal(index_new(&cfg, &ix), VG_OK);
    uint64_t seed = 77;
    const char *profs[NPROF] = {"pa", "pb", "pc", "pd", "pe"};
    /* The first 700 steps in a bulk load: the key sets are behind (lookups search the tail),
     * and index_bulk_end catches them up over live and removed runs alike. */
    index_bulk_begin(ix);
    for (int step = 0; step < 2000; step++) {
        if (step == 700)
            assert_int_equal(index_bulk_end(ix), VG_OK);
        uint64_t k = 1 + vgt_rng_next(&seed) % NREF;
        mref *x = &m[k];
        int op = (int)(vgt_rng_next(&seed) % 10);
        if (op < 6 && !x->live) { /* add a whole reference: its runs one after the other */
            x->profile = (int)(vgt_rng_next(&seed) % NPROF);
            x->n_pdq = (int)(vgt_rng_next(&seed) % 4);
            x->n_face = x->n_pdq ? (int)(vgt_rng_next(&seed) % 3) : 1;
            for (int i = 0; i < x->n_pdq; i++) {
                uint8_t h[32];
                vgt_rand_hash(&seed, h);
                if (i == 0)
                    memcpy(x->best, h, 32);
                assert_int_equal(index_pdq_add(ix, "t", profs[x->profile], k, h, 90, i), VG_OK);
            }
            for (int i = 0; i < x->n_face; i++) {
                float d[VG_DESCRIPTOR_DIM];
                for (int j = 0; j < VG_DESCRIPTOR_DIM; j++)
                    d[j] = (float)(vgt_rng_next(&seed) % 1000) / 1000.0f;
                assert_int_equal(index_face_add(ix, "t", profs[x->profile], k, d), VG_OK);
            }
            x->live = 1;
        } else if (op < 9) {
            int rc = index_remove_reference(ix, "t", k);
            assert_int_equal(rc, x->live ? VG_OK : VG_ENOTFOUND);
            x->live = 0;
        } else if (step % 97 == 0) {
            const char *p = profs[x->profile];
            int any = 0;
            for (int r = 1; r <= NREF; r++)
                if (m[r].live && m[r].profile == x->profile) {
                    m[r].live = 0;
                    any = 1;
                }
            assert_int_equal(index_remove_profile(ix, "t", p), any ? VG_OK : VG_ENOTFOUND);
        }
        if (step % 50 != 49)
            continue;
        size_t live = 0, pdq = 0, face = 0;
        for (int r = 1; r <= NREF; r++) {
            assert_int_equal(index_has_reference(ix, "t", (uint64_t)r), m[r].live);
            if (!m[r].live)
                continue;
            live++;
            pdq += (size_t)m[r].n_pdq;
            face += (size_t)m[r].n_face;
        }
        index_stats st;
        assert_int_equal(index_stats_get(ix, "t", &st), VG_OK);
        assert_int_equal(st.references, live);
        assert_int_equal(st.pdq_entries, pdq);
        assert_int_equal(st.face_entries, face);
        /* Every live reference with a PDQ entry once, at distance 0 to its first hash. */
        for (int r = 1; r <= NREF; r++) {
            if (!m[r].n_pdq)
                continue;
            index_pdq_query q = index_pdq_query_defaults();
            q.variants = (const uint8_t(*)[32])m[r].best;
            q.n_variants = 1;
            q.threshold = 0;
            q.profile_id = profs[m[r].profile];
            index_pdq_result res;
            assert_int_equal(index_pdq_search(ix, "t", &q, &res), VG_OK);
            int found = 0;
            for (size_t i = 0; i < res.n; i++) {
                assert_true(m[res.matches[i].reference].live);
                assert_string_equal(res.matches[i].profile_id, profs[m[r].profile]);
                found |= res.matches[i].reference == (uint64_t)r;
            }
            assert_int_equal(found, m[r].live);
            index_pdq_result_free(&res);
        }
    }
    index_free(ix);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    vg_log_level lvl = vg_log_get_level();
    vg_log_set_level(VG_LOG_OFF); /* failed rebuilds/compactions log warnings by design */
    for (long fail = 1;; fail++) {
        index_db *ix;
        index_config c = {.pdq_search = INDEX_SEARCH_MIH, .mih_tail_min = 50};
        assert_int_equal(index_new(&c, &ix), VG_OK);
        model m = {0};
        uint64_t seed = 5;
        uint8_t q[32];
        vgt_rand_hash(&seed, q);
        long allocs_before = vg_alloc_count();
        vg_alloc_fail_after(fail);
        int failed = 0;
        for (int i = 0; i < 100; i++) {
            char ref[32], prof[32];
            snprintf(ref, sizeof ref, "r%d", i);
            snprintf(prof, sizeof prof, "p%d", i % 7);
            uint8_t h[32];
            vgt_flip_bits(&seed, q, i % 50, h);
            int rc = index_pdq_add(ix, "t", prof, ref_key(ref), h, 100, 0);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            if (rc == VG_OK)
                model_add(&m, "t", prof, ref, h, 100);
            failed |= rc != VG_OK;
            if (i % 10 != 9)
                continue;
            snprintf(ref, sizeof ref, "r%d", (i * 7) % 100);
            rc = index_remove_reference(ix, "t", ref_key(ref));
            assert_true(rc == VG_OK || rc == VG_ENOTFOUND);
            for (size_t k = 0; k < m.n; k++)
                if (!strcmp(m.e[k].ref, ref))
                    m.e[k].alive = 0;
            index_pdq_query pq = index_pdq_query_defaults();
            pq.variants = (const uint8_t(*)[32])q;
            pq.n_variants = 1;
            index_pdq_result r;
            rc = index_pdq_search(ix, "t", &pq, &r);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            if (rc) {
                assert_int_equal(r.n, 0);
                assert_null(r.matches);
            }
            failed |= rc != VG_OK;
            index_pdq_result_free(&r);
        }
        long used = vg_alloc_count() - allocs_before;
        vg_alloc_fail_after(0);
        /* Whatever failed, the index agrees with what was acknowledged. */
        check_pdq(ix, &m, "t", (const uint8_t(*)[32]) & q, 1, 31, NULL, 0);
        check_pdq(ix, &m, "t", (const uint8_t(*)[32]) & q, 1, 47, NULL, 0);
        free(m.e);
        index_free(ix);
        if (!failed && fail > used)
            break; /* every allocation of the sequence has been failed once */
    }
    vg_log_set_level(lvl);
}

/* ---- the top-k helper (index__topk) --------------------------------------------------------- */

/* The expected answer, the slow way: best per reference by a scan, then a selection sort. */
static size_t topk_model(const index__cand *c, size_t n, size_t k, index__cand *out, size_t *n_refs)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < m && out[j].ref != c[i].ref)
            j++;
        if (j == m)
            out[m++] = c[i];
        else if (c[i].dist < out[j].dist || (c[i].dist == out[j].dist && c[i].tie < out[j].tie))
            out[j] = c[i];
    }
    *n_refs = m;
    for (size_t i = 0; i < m; i++)
        for (size_t j = i + 1; j < m; j++) {
            int c2 = out[j].dist != out[i].dist ? (out[j].dist < out[i].dist ? -1 : 1)
                                                : keycmp(out[j].ref, out[i].ref);
            if (c2 < 0) {
                index__cand t = out[i];
                out[i] = out[j];
                out[j] = t;
            }
        }
    return VG_MIN(k, m);
}

static void test_topk_best_per_reference_in_order(void **state)
{
    (void)state;
    /* ref 0: 5 (tie 2), 3 (tie 4), 3 (tie 1: kept); ref 1: 7; ref 2: 3; ref 3: 9, 1 */
    index__cand c[] = {{0, 5, 2, 50, 0}, {1, 7, 0, 10, 0}, {0, 3, 4, 40, 0}, {2, 3, 0, 20, 0},
                       {3, 9, 0, 30, 0}, {0, 3, 1, 41, 0}, {3, 1, 5, 31, 0}};
    size_t n_refs = 0;
    size_t n = index__topk(c, VG_ARRAY_LEN(c), 10, &n_refs);
    assert_int_equal(n, 4);
    assert_int_equal(n_refs, 4);
    /* 3 at 1; 0 and 2 at 3, by key; 1 at 7 */
    assert_int_equal(c[0].ref, 3);
    assert_true(c[0].dist == 1.0f);
    assert_int_equal(c[0].tie, 5);
    assert_int_equal(c[0].aux, 31);
    assert_int_equal(c[1].ref, 0);
    assert_true(c[1].dist == 3.0f);
    assert_int_equal(c[1].tie, 1);
    assert_int_equal(c[1].aux, 41);
    assert_int_equal(c[2].ref, 2);
    assert_int_equal(c[3].ref, 1);
}

static void test_topk_ties_cut_by_key(void **state)
{
    (void)state;
    /* Eight references at one distance: k = 3 keeps keys 0, 1, 2 whatever the input order. */
    uint64_t seed = 5;
    for (int round = 0; round < 50; round++) {
        index__cand c[8];
        for (uint32_t i = 0; i < 8; i++)
            c[i] = (index__cand){i, 2.5f, 0, 0, 0};
        for (size_t i = 7; i > 0; i--) {
            size_t j = vgt_rng_next(&seed) % (i + 1);
            index__cand t = c[i];
            c[i] = c[j];
            c[j] = t;
        }
        size_t n_refs = 0;
        assert_int_equal(index__topk(c, 8, 3, &n_refs), 3);
        assert_int_equal(n_refs, 8);
        assert_int_equal(c[0].ref, 0);
        assert_int_equal(c[1].ref, 1);
        assert_int_equal(c[2].ref, 2);
    }
}

static void test_topk_k_edges(void **state)
{
    (void)state;
    index__cand c[] = {{4, 2, 0, 0, 0}, {4, 1, 0, 0, 0}, {6, 1, 0, 0, 0}};
    size_t n_refs = 99;
    /* k = 0 keeps nothing but still counts the references */
    assert_int_equal(index__topk(c, 3, 0, &n_refs), 0);
    assert_int_equal(n_refs, 2);
    /* no candidates (and no array) */
    assert_int_equal(index__topk(NULL, 0, 5, &n_refs), 0);
    assert_int_equal(n_refs, 0);
    /* k larger than the references: all of them, in order; n_refs may be NULL */
    index__cand d[] = {{4, 2, 0, 0, 0}, {4, 1, 0, 0, 0}, {6, 1, 0, 0, 0}};
    assert_int_equal(index__topk(d, 3, 1000, NULL), 2);
    assert_int_equal(d[0].ref, 4); /* 4 < 6 at distance 1 */
    assert_int_equal(d[1].ref, 6);
    /* k equal to the references */
    index__cand e[] = {{5, 3, 0, 0, 0}, {6, 3, 0, 0, 0}};
    assert_int_equal(index__topk(e, 2, 2, &n_refs), 2);
    assert_int_equal(e[0].ref, 5);
    assert_int_equal(e[1].ref, 6);
}

static void test_topk_random_against_model(void **state)
{
    (void)state;
    uint64_t seed = 9;
    for (int round = 0; round < 2000; round++) {
        index__cand c[40], want[40];
        size_t n = vgt_rng_next(&seed) % 41, k = vgt_rng_next(&seed) % 10;
        for (size_t i = 0; i < n; i++)
            c[i] =
                (index__cand){(uint32_t)(vgt_rng_next(&seed) % 8), (float)(vgt_rng_next(&seed) % 6),
                              (uint16_t)(vgt_rng_next(&seed) % 3), (uint16_t)i, 0};
        size_t want_refs, got_refs;
        size_t nw = topk_model(c, n, k, want, &want_refs);
        size_t ng = index__topk(c, n, k, &got_refs);
        assert_int_equal(ng, nw);
        assert_int_equal(got_refs, want_refs);
        for (size_t i = 0; i < ng; i++) {
            assert_int_equal(c[i].ref, want[i].ref);
            assert_true(c[i].dist == want[i].dist);
            assert_int_equal(c[i].tie, want[i].tie);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_selection),
        cmocka_unit_test(test_pdq_bruteforce_all_paths),
        cmocka_unit_test(test_pdq_dihedral_reporting),
        cmocka_unit_test(test_pdq_max_results),
        cmocka_unit_test(test_haystack_needles),
        cmocka_unit_test(test_tenants_profiles_deletes),
        cmocka_unit_test(test_mih_auto_switch),
        cmocka_unit_test(test_bulk_load_equals_incremental),
        cmocka_unit_test(test_mih_id_widths),
        cmocka_unit_test(test_mih_plain_starts_fallback),
        cmocka_unit_test(test_mih_chunks_for),
        cmocka_unit_test(test_mih_wide_chunks_public),
        cmocka_unit_test(test_mih_chunk_layouts_exact),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_face_bruteforce),
        cmocka_unit_test(test_face_threshold_strict),
        cmocka_unit_test(test_concurrent_readers_writer),
        cmocka_unit_test(test_pdq_tags_merge),
        cmocka_unit_test(test_pdq_tags_filter),
        cmocka_unit_test(test_reference_runs),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_topk_best_per_reference_in_order),
        cmocka_unit_test(test_topk_ties_cut_by_key),
        cmocka_unit_test(test_topk_k_edges),
        cmocka_unit_test(test_topk_random_against_model),
    };
    /* INDEX_TEST_FILTER=<glob> runs a subset (handy when timing one test). */
    if (getenv("INDEX_TEST_FILTER"))
        cmocka_set_test_filter(getenv("INDEX_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
