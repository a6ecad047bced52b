/*
 * video_match: the vPDQ comparison rule, answered through an index of frame hashes.
 *
 * The rule (vpdq/README.md of facebook/ThreatExchange): drop frames below the quality filter,
 * keep each side's unique hashes; a query frame is matched when some compared frame is within
 * distance D, and the other way round; the video matches when the compared video's matched
 * share reaches P_c and the query's P_q. The reference compares every pair of frames; here the
 * compared videos' frames sit in one multi-index-hashing table set (16 tables, one per 16-bit
 * word of the hash), so a query frame visits the few buckets within r = floor(D / 16) bits of
 * its 16 words: two hashes within D bits differ in at most r bits in some word (pigeonhole), so
 * nothing within D is missed, and each candidate is verified with its full distance.
 *
 * Regions (docs/VIDEO.md "Regions"): a frame's trimmed content and its top and bottom halves
 * are entries of their own beside its whole hash, each tagged by what it hashes and by the
 * frame it belongs to. A query frame's whole and trimmed hashes look up the entries tagged
 * whole or trimmed, its top half only those tagged top, its bottom half only bottom: each of
 * these three classes has its own word tables (a half's lookup never gathers a whole hash's
 * postings), and the tag is checked again before a candidate's distance (whole-only rule), so
 * regions cost more lookups and candidates, never all pairs. A frame counts as matched once,
 * however many of its hashes met.
 *
 * Invariants: entries of one video are contiguous (video_index_add appends them at once), and
 * so are the entries of one frame, frames numbered in entry order; tables cover entries
 * [0, built_n); later ones are scanned flat until the next build.
 */
#include "video/video_int.h"

#include "core/core.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define VIDEO__WORDS 16
#define VIDEO__BUCKETS 65536u
#define VIDEO__MIH_MAX_DISTANCE 47 /* r = 2: 137 buckets per word; beyond, a flat scan wins */
#define VIDEO__MAX_ENTRIES ((size_t)1 << 31)

/* Entry tags: what an entry hashes. */
enum { VIDEO__TAG_WHOLE = 0, VIDEO__TAG_TRIMMED, VIDEO__TAG_TOP, VIDEO__TAG_BOTTOM };
#define VIDEO__MASK_SHARED ((1u << VIDEO__TAG_WHOLE) | (1u << VIDEO__TAG_TRIMMED))
/* Table classes: whole and trimmed entries (they meet each other), top halves, bottom halves. */
#define VIDEO__CLASSES 3

static int video__tag_class(uint8_t tag)
{
    return tag <= VIDEO__TAG_TRIMMED ? 0 : tag - VIDEO__TAG_TRIMMED;
}

/* The tag of a frame's region's entry. */
static uint8_t video__region_tag(int region)
{
    return region == VIDEO_REGION_TRIMMED ? VIDEO__TAG_TRIMMED
           : region == VIDEO_REGION_TOP   ? VIDEO__TAG_TOP
                                          : VIDEO__TAG_BOTTOM;
}

/* The tags a query hash of tag qtag may meet. */
static unsigned video__tag_mask(uint8_t qtag)
{
    return qtag <= VIDEO__TAG_TRIMMED ? VIDEO__MASK_SHARED : 1u << qtag;
}

/* What a (query tag, entry tag) pair that met says. */
static uint8_t video__mech(uint8_t qtag, uint8_t etag)
{
    if (qtag == VIDEO__TAG_WHOLE && etag == VIDEO__TAG_WHOLE)
        return VIDEO_MECH_WHOLE;
    return qtag <= VIDEO__TAG_TRIMMED ? VIDEO_MECH_TRIMMED : VIDEO_MECH_HALF;
}

struct video_index {
    int min_quality;
    pdq_hash *hash; /* entry -> hash */
    uint32_t *vid;  /* entry -> video */
    double *ts;     /* entry -> timestamp (s) */
    uint32_t *unit; /* entry -> frame (numbered over the index, in entry order) */
    uint8_t *tag;   /* entry -> VIDEO__TAG_* */
    size_t n, cap;
    size_t nf;         /* frames */
    char **ids;        /* video -> id (owned) */
    uint32_t *v_start; /* video -> first entry */
    uint32_t *v_count; /* video -> unique frames */
    size_t nv, vcap;
    /* per table class (NULL when the class had no entries at the last build): */
    uint32_t *offs[VIDEO__CLASSES]; /* [VIDEO__WORDS][VIDEO__BUCKETS + 1] bucket starts in post */
    uint32_t *post[VIDEO__CLASSES]; /* [VIDEO__WORDS][built_cn] entries, bucket by bucket */
    size_t built_cn[VIDEO__CLASSES];
    size_t built_n; /* entries covered by the tables */
    int built;      /* video_index_build ran */
};

static inline uint32_t video__word(const pdq_hash *h, int t)
{
    return (uint32_t)(h->w[t >> 2] >> (16 * (t & 3))) & 0xffffu;
}

/* A frame kept for matching: its hash, time and position in the input. */
typedef struct video__uf {
    pdq_hash h;
    double ts;
    size_t idx;
    const video_frame *f; /* borrowed: its regions */
} video__uf;

/* The frame's region r, when it was hashed with a quality of at least min_quality. */
static const pdq_hash *video__region_of(const video_frame *f, int r, int min_quality)
{
    return (f->regions >> r & 1u) && f->region_quality[r] >= min_quality ? &f->region[r] : NULL;
}

static int video__uf_cmp_hash(const void *a, const void *b)
{
    const video__uf *x = a, *y = b;
    for (int i = 0; i < 4; i++)
        if (x->h.w[i] != y->h.w[i])
            return x->h.w[i] < y->h.w[i] ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int video__uf_cmp_idx(const void *a, const void *b)
{
    const video__uf *x = a, *y = b;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The quality-filtered unique frames of h, in their order in h (the first of equal hashes).
 * *out owned (vg_free), may be NULL when *n_out is 0. */
static int video__unique(const video_hash *h, int min_quality, video__uf **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (h->n == 0)
        return VG_OK;
    video__uf *u = vg_malloc(h->n * sizeof *u);
    if (!u)
        return vg_err_set(VG_ENOMEM, "no memory for %zu frames", h->n);
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->frames[i].quality >= min_quality)
            u[k++] = (video__uf){h->frames[i].hash, h->frames[i].ts, i, &h->frames[i]};
    qsort(u, k, sizeof *u, video__uf_cmp_hash);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (m == 0 || !pdq_hash_equal(&u[m - 1].h, &u[i].h))
            u[m++] = u[i];
    qsort(u, m, sizeof *u, video__uf_cmp_idx);
    *out = u;
    *n_out = m;
    return VG_OK;
}

video_index *video_index_new(int min_quality)
{
    video_index *ix = vg_calloc(1, sizeof *ix);
    if (ix)
        ix->min_quality = min_quality;
    return ix;
}

void video_index_free(video_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->nv; i++)
        vg_free(ix->ids[i]);
    vg_free(ix->ids);
    vg_free(ix->v_start);
    vg_free(ix->v_count);
    vg_free(ix->hash);
    vg_free(ix->vid);
    vg_free(ix->ts);
    vg_free(ix->unit);
    vg_free(ix->tag);
    for (int c = 0; c < VIDEO__CLASSES; c++) {
        vg_free(ix->offs[c]);
        vg_free(ix->post[c]);
    }
    vg_free(ix);
}

/* Huge pages for the hash rows, which a search reads once per candidate at random: with 4 KiB
 * pages nearly every candidate of a large index also misses the TLB. Not for the word tables,
 * read once per bucket: faulting them in as huge pages (with the kernel compacting memory for
 * them) made video_index_build ~50% slower for a few percent of search time. */
#define VIDEO__HUGE_PAGE_BYTES ((size_t)2 << 20)

/* At least bytes, 64-byte aligned (a 32-byte hash row never straddles two cache lines); with
 * huge, from two huge pages up aligned to one and advised to use them. Release with vg_free. */
static void *video__alloc_aligned(size_t bytes, int huge)
{
    if (!huge || bytes < 2 * VIDEO__HUGE_PAGE_BYTES)
        return vg_aligned_alloc(64, bytes);
    size_t rounded;
    if (vg_add_size(bytes, VIDEO__HUGE_PAGE_BYTES - 1, &rounded) != VG_OK)
        return NULL;
    rounded &= ~(VIDEO__HUGE_PAGE_BYTES - 1);
    void *p = vg_aligned_alloc(VIDEO__HUGE_PAGE_BYTES, rounded);
    if (p)
        madvise(p, rounded, MADV_HUGEPAGE); /* advisory: failure only costs speed */
    return p;
}

/* Reallocates *p to n elements; 1 on success (then *p is the new block), 0 on failure. */
static int video__resize(void **p, size_t elem, size_t n)
{
    size_t bytes;
    if (vg_mul_size(elem, n, &bytes) != VG_OK)
        return 0;
    void *np = vg_realloc(*p, bytes);
    if (!np)
        return 0;
    *p = np;
    return 1;
}

/* Grows *p (capacity *cap elements) to hold need; VG_ENOMEM. */
static int video__grow(void **p, size_t elem, size_t need, size_t *cap)
{
    if (need <= *cap)
        return VG_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    if (!video__resize(p, elem, ncap))
        return VG_ENOMEM;
    *cap = ncap;
    return VG_OK;
}

int video_index_add(video_index *ix, const char *id, const video_hash *h, size_t *video_out)
{
    if (!ix || !id || !h)
        return vg_err_set(VG_EINVAL, "video_index_add: NULL argument");
    video__uf *u;
    size_t m;
    int rc = video__unique(h, ix->min_quality, &u, &m);
    if (rc != VG_OK)
        return rc;
    size_t ne = m; /* entries: each frame's whole hash and its regions over the quality gate */
    for (size_t i = 0; i < m; i++)
        for (int r = 0; r < VIDEO_REGION_COUNT; r++)
            ne += video__region_of(u[i].f, r, ix->min_quality) != NULL;
    if (ix->n + ne > VIDEO__MAX_ENTRIES) {
        vg_free(u);
        return vg_err_set(VG_ETOOBIG, "video index is full (%zu frames)", ix->n);
    }
    char *idc = vg_strdup(id);
    int ok = idc != NULL;
    if (ok && ix->n + ne > ix->cap) {
        size_t c = ix->cap ? ix->cap : 64;
        while (c < ix->n + ne)
            c *= 2;
        /* each realloc that succeeds is kept: a later failure leaves larger arrays, no loss */
        ok = video__resize((void **)&ix->hash, sizeof *ix->hash, c) &&
             video__resize((void **)&ix->vid, sizeof *ix->vid, c) &&
             video__resize((void **)&ix->ts, sizeof *ix->ts, c) &&
             video__resize((void **)&ix->unit, sizeof *ix->unit, c) &&
             video__resize((void **)&ix->tag, sizeof *ix->tag, c);
        if (ok)
            ix->cap = c;
    }
    if (ok && ix->nv + 1 > ix->vcap) {
        size_t c = ix->vcap ? ix->vcap * 2 : 16;
        ok = video__resize((void **)&ix->ids, sizeof *ix->ids, c) &&
             video__resize((void **)&ix->v_start, sizeof *ix->v_start, c) &&
             video__resize((void **)&ix->v_count, sizeof *ix->v_count, c);
        if (ok)
            ix->vcap = c;
    }
    if (!ok) {
        vg_free(idc);
        vg_free(u);
        return vg_err_set(VG_ENOMEM, "no memory to index %zu frames", m);
    }
    size_t v = ix->nv++;
    ix->ids[v] = idc;
    ix->v_start[v] = (uint32_t)ix->n;
    ix->v_count[v] = (uint32_t)m;
    for (size_t i = 0; i < m; i++) {
        for (int r = -1; r < VIDEO_REGION_COUNT; r++) {
            const pdq_hash *rh = r < 0 ? &u[i].h : video__region_of(u[i].f, r, ix->min_quality);
            if (!rh)
                continue;
            ix->hash[ix->n] = *rh;
            ix->vid[ix->n] = (uint32_t)v;
            ix->ts[ix->n] = u[i].ts;
            ix->unit[ix->n] = (uint32_t)ix->nf;
            ix->tag[ix->n] = r < 0 ? VIDEO__TAG_WHOLE : video__region_tag(r);
            ix->n++;
        }
        ix->nf++;
    }
    vg_free(u);
    if (video_out)
        *video_out = v;
    return VG_OK;
}

int video_index_build(video_index *ix)
{
    const size_t n = ix->n, offs_n = (size_t)VIDEO__WORDS * (VIDEO__BUCKETS + 1);
    size_t cn[VIDEO__CLASSES] = {0};
    uint32_t *offs[VIDEO__CLASSES] = {0}, *post[VIDEO__CLASSES] = {0};
    for (size_t e = 0; e < n; e++)
        cn[video__tag_class(ix->tag[e])]++;
    int ok = 1;
    for (int c = 0; c < VIDEO__CLASSES && ok; c++) {
        if (!cn[c] && c != 0)
            continue;
        ok = (offs[c] = video__alloc_aligned(offs_n * sizeof *offs[c], 0)) != NULL &&
             (!cn[c] || (post[c] = video__alloc_aligned(
                             (size_t)VIDEO__WORDS * cn[c] * sizeof *post[c], 0)) != NULL);
        if (ok)
            memset(offs[c], 0, offs_n * sizeof *offs[c]);
    }
    if (!ok) {
        for (int c = 0; c < VIDEO__CLASSES; c++) {
            vg_free(offs[c]);
            vg_free(post[c]);
        }
        return vg_err_set(VG_ENOMEM, "no memory for the tables of %zu frames", n);
    }
    for (int c = 0; c < VIDEO__CLASSES; c++) {
        for (int t = 0; cn[c] && t < VIDEO__WORDS; t++) {
            uint32_t *o = offs[c] + (size_t)t * (VIDEO__BUCKETS + 1);
            uint32_t *p = post[c] + (size_t)t * cn[c];
            for (size_t e = 0; e < n; e++)
                if (video__tag_class(ix->tag[e]) == c)
                    o[video__word(&ix->hash[e], t) + 1]++;
            for (uint32_t b = 0; b < VIDEO__BUCKETS; b++)
                o[b + 1] += o[b];
            /* fill, using o[b] as the cursor, then shift back */
            for (size_t e = 0; e < n; e++)
                if (video__tag_class(ix->tag[e]) == c)
                    p[o[video__word(&ix->hash[e], t)]++] = (uint32_t)e;
            for (uint32_t b = VIDEO__BUCKETS; b > 0; b--)
                o[b] = o[b - 1];
            o[0] = 0;
        }
        vg_free(ix->offs[c]);
        vg_free(ix->post[c]);
        ix->offs[c] = offs[c];
        ix->post[c] = post[c];
        ix->built_cn[c] = cn[c];
    }
    /* The rows a search verifies, moved to a 64-byte aligned block (huge pages when large):
     * realloc's 16-byte alignment lets half of the 32-byte rows straddle two cache lines. Its
     * capacity stays ix->cap rows; later adds realloc it as before until the next build. */
    pdq_hash *nh = n ? video__alloc_aligned(ix->cap * sizeof *ix->hash, 1) : NULL;
    if (nh) {
        memcpy(nh, ix->hash, n * sizeof *nh);
        vg_free(ix->hash);
        ix->hash = nh;
    }
    ix->built_n = n;
    ix->built = 1;
    return VG_OK;
}

size_t video_index_videos(const video_index *ix)
{
    return ix->nv;
}

size_t video_index_frames(const video_index *ix)
{
    return ix->nf;
}

size_t video_index_entries(const video_index *ix)
{
    return ix->n;
}

size_t video_index_bytes(const video_index *ix)
{
    size_t b = sizeof *ix +
               ix->cap * (sizeof(pdq_hash) + 2 * sizeof(uint32_t) + sizeof(double) + 1) +
               ix->vcap * (sizeof(char *) + 2 * sizeof(uint32_t));
    for (int c = 0; c < VIDEO__CLASSES; c++)
        if (ix->offs[c])
            b += (size_t)VIDEO__WORDS * (VIDEO__BUCKETS + 1) * sizeof(uint32_t) +
                 (size_t)VIDEO__WORDS * ix->built_cn[c] * sizeof(uint32_t);
    return b;
}

void video_match_opts_default(video_match_opts *o)
{
    o->distance = VIDEO_DEFAULT_MATCH_DISTANCE;
    o->min_quality = PDQ_MIN_RELIABLE_QUALITY;
    o->compared_pct = VIDEO_DEFAULT_COMPARED_MATCH_PCT;
    o->query_pct = VIDEO_DEFAULT_QUERY_MATCH_PCT;
    o->segment_gap_ms = VIDEO_DEFAULT_SEGMENT_GAP_MS;
    o->clip_pct = VIDEO_DEFAULT_CLIP_MATCH_PCT;
    o->clip_min_frames = VIDEO_DEFAULT_CLIP_MIN_FRAMES;
    o->only_matches = 1;
    o->regions = 1;
}

/* One verified (query frame, entry) pair. */
typedef struct video__pair {
    uint32_t video, q, e, u; /* u: the entry's frame */
    int d;
    uint8_t mech; /* VIDEO_MECH_* */
} video__pair;

typedef struct video__pairs {
    video__pair *p;
    size_t n, cap;
} video__pairs;

static int video__pairs_push(video__pairs *ps, uint32_t video, uint32_t q, uint32_t e, uint32_t u,
                             int d, uint8_t mech)
{
    if (ps->n == ps->cap) {
        size_t nc = ps->cap ? ps->cap * 2 : 1024;
        video__pair *np = vg_realloc(ps->p, nc * sizeof *np);
        if (!np)
            return VG_ENOMEM;
        ps->p = np;
        ps->cap = nc;
    }
    ps->p[ps->n++] = (video__pair){video, q, e, u, d, mech};
    return VG_OK;
}

static int video__pair_cmp(const void *a, const void *b)
{
    const video__pair *x = a, *y = b;
    if (x->video != y->video)
        return x->video < y->video ? -1 : 1;
    if (x->q != y->q)
        return x->q < y->q ? -1 : 1;
    if (x->mech != y->mech) /* whole before trimmed before half: the plainest reason first */
        return x->mech < y->mech ? -1 : 1;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

/* Candidates whose rows are prefetched ahead of the one verified (video__verify). */
#define VIDEO__PREFETCH_AHEAD 16

/* Buckets one lookup reads at most: per word its key and the keys within 2 bits of it. */
#define VIDEO__MAX_PROBES (VIDEO__WORDS * (1 + 16 + 120))

/* One bucket of a lookup: first its slot in the bucket starts (o: o[0], o[1] are its range in
 * p), then the postings it holds (src, n). */
typedef struct video__probe {
    const uint32_t *o, *p;
    const uint32_t *src;
    uint32_t n;
} video__probe;

/* Per-search scratch: cand holds one query frame's candidates until they are verified; probe
 * the buckets of one lookup (VIDEO__MAX_PROBES, allocated at the first lookup). */
typedef struct video__scratch {
    uint32_t *cand;
    size_t ncand, cap;
    video__probe *probe;
} video__scratch;

static void video__scratch_free(video__scratch *sc)
{
    vg_free(sc->cand);
    vg_free(sc->probe);
}

/* The candidates of the np buckets in sc->probe, into sc->cand (padded for the prefetch). The
 * bucket starts and the postings are reads at random over arrays of tens of MiB: each pass
 * prefetches what the next one reads, so the misses of a lookup's buckets overlap instead of
 * coming one after another.
 *
 * No de-duplication: an entry reached through two words is verified twice (rare except for
 * true matches) and gives a duplicate pair, which the counting ignores; a per-entry stamp
 * would cost one more cache miss for every candidate. */
static int video__gather(video__scratch *sc, size_t np)
{
    video__probe *pr = sc->probe;
    for (size_t i = 0; i < np; i++)
        __builtin_prefetch(pr[i].o);
    size_t total = 0, m = 0;
    for (size_t i = 0; i < np; i++) {
        uint32_t lo = pr[i].o[0], hi = pr[i].o[1];
        if (lo == hi)
            continue;
        pr[m].src = pr[i].p + lo;
        pr[m].n = hi - lo;
        __builtin_prefetch(pr[m].src);
        total += pr[m++].n;
    }
    if (total + VIDEO__PREFETCH_AHEAD > sc->cap) {
        size_t nc = sc->cap ? sc->cap : 4096;
        while (nc < total + VIDEO__PREFETCH_AHEAD)
            nc *= 2;
        uint32_t *nb = vg_realloc(sc->cand, nc * sizeof *nb);
        if (!nb)
            return VG_ENOMEM;
        sc->cand = nb;
        sc->cap = nc;
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        memcpy(sc->cand + k, pr[i].src, (size_t)pr[i].n * sizeof *sc->cand);
        k += pr[i].n;
    }
    memset(sc->cand + k, 0, VIDEO__PREFETCH_AHEAD * sizeof *sc->cand);
    sc->ncand = k;
    return VG_OK;
}

/* Verifies candidates with their full distance. The hashes are 32-byte rows scattered over the
 * whole index, so each is a cache miss: prefetching VIDEO__PREFETCH_AHEAD rows ahead keeps
 * several in flight (3x faster at 600k frames than one miss at a time; 16 measured a little
 * faster than 8 or 32 with 2.4M entries). The tag is read only for a candidate within D, so a
 * candidate that fails costs one miss, not two. */
#define VIDEO__VERIFY_BODY                                                                         \
    const pdq_hash *H = ix->hash;                                                                  \
    const pdq_hash qv = *qh; /* in registers: the pushes below could alias *qh */                  \
    for (size_t i = 0; i < n; i++) {                                                               \
        __builtin_prefetch(&H[cand[i + VIDEO__PREFETCH_AHEAD]]); /* cand is padded */              \
        uint32_t e = cand[i];                                                                      \
        int d = pdq_distance_inline(&qv, &H[e]);                                                   \
        /* the tag only for the few within D: reading it first was a second miss per candidate */  \
        if (__builtin_expect(d <= D, 0) && (mask >> ix->tag[e] & 1u) &&                            \
            video__pairs_push(ps, ix->vid[e], q, e, ix->unit[e], d,                                \
                              video__mech(qtag, ix->tag[e])) != VG_OK)                             \
            return VG_ENOMEM;                                                                      \
    }                                                                                              \
    return VG_OK;

__attribute__((target("popcnt"))) static int
video__verify_popcnt(const video_index *ix, const uint32_t *cand, size_t n, const pdq_hash *qh,
                     uint32_t q, uint8_t qtag, unsigned mask, int D, video__pairs *ps)
{
    VIDEO__VERIFY_BODY
}

static int video__verify_portable(const video_index *ix, const uint32_t *cand, size_t n,
                                  const pdq_hash *qh, uint32_t q, uint8_t qtag, unsigned mask,
                                  int D, video__pairs *ps)
{
    VIDEO__VERIFY_BODY
}

static int video__verify(const video_index *ix, const uint32_t *cand, size_t n, const pdq_hash *qh,
                         uint32_t q, uint8_t qtag, unsigned mask, int D, video__pairs *ps)
{
    return (vg_cpu_features() & VG_CPU_POPCNT)
               ? video__verify_popcnt(ix, cand, n, qh, q, qtag, mask, D, ps)
               : video__verify_portable(ix, cand, n, qh, q, qtag, mask, D, ps);
}

/* All entries of the tags in mask within D of query frame q's hash qh (tag qtag), into ps. */
static int video__lookup(const video_index *ix, video__scratch *sc, const pdq_hash *qh, uint32_t q,
                         uint8_t qtag, unsigned mask, int D, video__pairs *ps)
{
    size_t flat_from = 0;
    sc->ncand = 0;
    const int c = video__tag_class(qtag); /* mask lies within qtag's class */
    if (ix->built && D <= VIDEO__MIH_MAX_DISTANCE) {
        if (!sc->probe && !(sc->probe = vg_malloc(VIDEO__MAX_PROBES * sizeof *sc->probe)))
            return VG_ENOMEM;
        const int r = D / VIDEO__WORDS;
        size_t np = 0;
        for (int t = 0; ix->offs[c] && t < VIDEO__WORDS; t++) {
            const uint32_t *o = ix->offs[c] + (size_t)t * (VIDEO__BUCKETS + 1);
            const uint32_t *p = ix->post[c] + (size_t)t * ix->built_cn[c];
            const uint32_t k = video__word(qh, t);
            sc->probe[np++] = (video__probe){o + k, p, NULL, 0};
            for (int b1 = 0; r >= 1 && b1 < 16; b1++) {
                sc->probe[np++] = (video__probe){o + (k ^ (1u << b1)), p, NULL, 0};
                for (int b2 = b1 + 1; r >= 2 && b2 < 16; b2++)
                    sc->probe[np++] = (video__probe){o + (k ^ (1u << b1) ^ (1u << b2)), p, NULL, 0};
            }
        }
        if (np && video__gather(sc, np) != VG_OK)
            return VG_ENOMEM;
        flat_from = ix->built_n;
    }
    if (video__verify(ix, sc->cand, sc->ncand, qh, q, qtag, mask, D, ps) != VG_OK)
        return VG_ENOMEM;
    for (size_t e = flat_from; e < ix->n; e++) {
        if (!(mask >> ix->tag[e] & 1u))
            continue;
        int d = pdq_distance(qh, &ix->hash[e]);
        if (d <= D && video__pairs_push(ps, ix->vid[e], q, (uint32_t)e, ix->unit[e], d,
                                        video__mech(qtag, ix->tag[e])) != VG_OK)
            return VG_ENOMEM;
    }
    return VG_OK;
}

/* Every entry query frame q (uf) meets: its whole hash, and with regions its trimmed hash
 * against whole and trimmed entries, its halves against the same halves. */
static int video__lookup_frame(const video_index *ix, video__scratch *sc, const video__uf *uf,
                               uint32_t q, const video_match_opts *o, video__pairs *ps)
{
    const unsigned whole_mask = o->regions ? VIDEO__MASK_SHARED : 1u << VIDEO__TAG_WHOLE;
    int rc = video__lookup(ix, sc, &uf->h, q, VIDEO__TAG_WHOLE, whole_mask, o->distance, ps);
    for (int r = 0; r < VIDEO_REGION_COUNT && rc == VG_OK && o->regions; r++) {
        const pdq_hash *rh = video__region_of(uf->f, r, o->min_quality);
        const uint8_t tag = video__region_tag(r);
        if (rh)
            rc = video__lookup(ix, sc, rh, q, tag, video__tag_mask(tag), o->distance, ps);
    }
    return rc;
}

static int video__seg_cmp_frames(const void *a, const void *b)
{
    const video_segment *x = a, *y = b;
    if (x->frames != y->frames)
        return x->frames > y->frames ? -1 : 1;
    return x->q_start < y->q_start ? -1 : x->q_start > y->q_start;
}

static int video__seg_cmp_start(const void *a, const void *b)
{
    const video_segment *x = a, *y = b;
    return x->q_start < y->q_start ? -1 : x->q_start > y->q_start;
}

/* Segments of one video from its pairs p[0..n) (sorted by q, then distance): each query frame's
 * best entry, in query order; a run breaks where either side jumps by more than the gap or the
 * compared side goes backwards. */
static int video__segments(const video_index *ix, const video__uf *qf, const video__pair *p,
                           size_t n, double gap, video_match *m)
{
    video_segment *segs = NULL;
    size_t ns = 0, cap = 0;
    double pq = 0, pc = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && p[i].q == p[i - 1].q)
            continue; /* the first of a query frame's pairs is its best */
        double qt = qf[p[i].q].ts, ct = ix->ts[p[i].e];
        int brk = ns == 0 || qt - pq > gap || ct < pc - gap || ct - pc > (qt - pq) + gap;
        if (brk) {
            if (ns == cap) {
                size_t nc = cap ? cap * 2 : 8;
                video_segment *nsg = vg_realloc(segs, nc * sizeof *nsg);
                if (!nsg) {
                    vg_free(segs);
                    return VG_ENOMEM;
                }
                segs = nsg;
                cap = nc;
            }
            segs[ns++] = (video_segment){qt, qt, ct, ct, 0, {0}};
        }
        video_segment *s = &segs[ns - 1];
        s->q_end = qt;
        if (ct < s->c_start)
            s->c_start = ct;
        if (ct > s->c_end)
            s->c_end = ct;
        s->frames++;
        s->by_mech[p[i].mech]++;
        pq = qt;
        pc = ct;
    }
    /* The clip rule's segment: the one with the most query frames (the first on a tie). */
    for (size_t i = 0; i < ns; i++)
        if (i == 0 || segs[i].frames > m->clip.frames)
            m->clip = segs[i];
    m->clip_match_pct = m->query_frames ? 100.0 * m->clip.frames / (double)m->query_frames : 0.0;
    if (ns > VIDEO_MAX_SEGMENTS) {
        qsort(segs, ns, sizeof *segs, video__seg_cmp_frames);
        ns = VIDEO_MAX_SEGMENTS;
    }
    qsort(segs, ns, sizeof *segs, video__seg_cmp_start);
    m->segments = segs;
    m->n_segments = ns;
    return VG_OK;
}

static int video__match_cmp(const void *a, const void *b)
{
    const video_match *x = a, *y = b;
    if (x->compared_match_pct != y->compared_match_pct)
        return x->compared_match_pct > y->compared_match_pct ? -1 : 1;
    return x->video < y->video ? -1 : x->video > y->video;
}

void video_match_free(video_match *m)
{
    if (!m)
        return;
    vg_free(m->segments);
    m->segments = NULL;
    m->n_segments = 0;
}

void video_result_free(video_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        video_match_free(&r->matches[i]);
    vg_free(r->matches);
    memset(r, 0, sizeof *r);
}

static int video__check_match_opts(const video_match_opts *o)
{
    if (o->distance < 0 || o->distance > PDQ_HASH_BITS)
        return vg_err_set(VG_EINVAL, "match distance %d is outside 0..256", o->distance);
    if (!(o->compared_pct >= 0 && o->compared_pct <= 100) ||
        !(o->query_pct >= 0 && o->query_pct <= 100) || !(o->clip_pct >= 0))
        return vg_err_set(VG_EINVAL, "match percentages must be within 0..100");
    return VG_OK;
}

int video_index_search(const video_index *ix, const video_hash *q, const video_match_opts *o,
                       video_result *out)
{
    video_match_opts def;
    if (!o) {
        video_match_opts_default(&def);
        o = &def;
    }
    if (!ix || !q || !out)
        return vg_err_set(VG_EINVAL, "video_index_search: NULL argument");
    int rc = video__check_match_opts(o);
    if (rc != VG_OK)
        return rc;
    memset(out, 0, sizeof *out);
    video__uf *qf = NULL;
    size_t nq = 0;
    if ((rc = video__unique(q, o->min_quality, &qf, &nq)) != VG_OK)
        return rc;
    out->query_frames = (uint32_t)nq;
    uint32_t *stamp = ix->nf ? vg_calloc(ix->nf, sizeof *stamp) : NULL;
    video__scratch sc = {NULL, 0, 0, NULL};
    video__pairs ps = {0};
    if (ix->n && !stamp) {
        vg_free(qf);
        return vg_err_set(VG_ENOMEM, "no memory for a search over %zu frames", ix->n);
    }
    uint32_t gen = 0;
    for (size_t i = 0; i < nq && rc == VG_OK && ix->n; i++)
        rc = video__lookup_frame(ix, &sc, &qf[i], (uint32_t)i, o, &ps);
    if (rc == VG_OK && ps.n)
        qsort(ps.p, ps.n, sizeof *ps.p, video__pair_cmp);
    /* One group of pairs per video. */
    size_t mcap = 0;
    for (size_t i = 0; i < ps.n && rc == VG_OK;) {
        size_t j = i;
        uint32_t v = ps.p[i].video, qm = 0, cm = 0, by_mech[VIDEO_MECH_COUNT] = {0};
        ++gen;
        for (; j < ps.n && ps.p[j].video == v; j++) {
            if (j == i || ps.p[j].q != ps.p[j - 1].q) {
                qm++;
                by_mech[ps.p[j].mech]++; /* the first of a query frame's pairs is its best */
            }
            if (stamp[ps.p[j].u] != gen) {
                stamp[ps.p[j].u] = gen;
                cm++;
            }
        }
        video_match m = {0};
        memcpy(m.by_mech, by_mech, sizeof m.by_mech);
        m.video = v;
        m.id = ix->ids[v];
        m.query_frames = (uint32_t)nq;
        m.query_matched = qm;
        m.compared_frames = ix->v_count[v];
        m.compared_matched = cm;
        m.query_match_pct = nq ? 100.0 * qm / (double)nq : 0.0;
        m.compared_match_pct = m.compared_frames ? 100.0 * cm / (double)m.compared_frames : 0.0;
        m.match = m.compared_match_pct >= o->compared_pct && m.query_match_pct >= o->query_pct;
        /* The clip's frames are matched query frames: below clip_pct of them, no clip. */
        int may_clip = m.query_match_pct >= o->clip_pct && qm >= o->clip_min_frames;
        if (m.match || may_clip || !o->only_matches) {
            if (video__segments(ix, qf, ps.p + i, j - i, o->segment_gap_ms / 1000.0, &m) != VG_OK) {
                rc = vg_err_set(VG_ENOMEM, "no memory for the matches");
                break;
            }
            m.clip_match = m.clip_match_pct >= o->clip_pct && m.clip.frames >= o->clip_min_frames;
            if (!m.match && !m.clip_match && o->only_matches) {
                video_match_free(&m);
            } else if (video__grow((void **)&out->matches, sizeof *out->matches, out->n + 1,
                                   &mcap) != VG_OK) {
                video_match_free(&m);
                rc = vg_err_set(VG_ENOMEM, "no memory for the matches");
                break;
            } else {
                out->matches[out->n++] = m;
            }
        }
        i = j;
    }
    if (rc != VG_OK)
        video_result_free(out);
    else if (out->n)
        qsort(out->matches, out->n, sizeof *out->matches, video__match_cmp);
    vg_free(ps.p);
    video__scratch_free(&sc);
    vg_free(stamp);
    vg_free(qf);
    return rc;
}

static int video__pair_cmp_entry(const void *a, const void *b)
{
    const video__pair *x = a, *y = b;
    if (x->u != y->u)
        return x->u < y->u ? -1 : 1;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return x->q < y->q ? -1 : x->q > y->q;
}

static int video__hit_cmp(const void *a, const void *b)
{
    const video_frame_hit *x = a, *y = b;
    if (x->video != y->video)
        return x->video < y->video ? -1 : 1;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

int video_index_frame_search(const video_index *ix, const pdq_hash *q, size_t nq, int distance,
                             video_frame_hit **out, size_t *n_out)
{
    if (!ix || (nq && !q) || !out || !n_out)
        return vg_err_set(VG_EINVAL, "video_index_frame_search: NULL argument");
    if (distance < 0 || distance > 256)
        return vg_err_set(VG_EINVAL, "distance %d is outside 0..256", distance);
    *out = NULL;
    *n_out = 0;
    video__scratch sc = {NULL, 0, 0, NULL};
    video__pairs ps = {0};
    int rc = VG_OK;
    for (size_t i = 0; i < nq && rc == VG_OK && ix->n; i++)
        if (video__lookup(ix, &sc, &q[i], (uint32_t)i, VIDEO__TAG_WHOLE, VIDEO__MASK_SHARED,
                          distance, &ps) != VG_OK)
            rc = vg_err_set(VG_ENOMEM, "no memory for a frame search");
    video__scratch_free(&sc);
    video_frame_hit *h = NULL;
    size_t n = 0;
    if (rc == VG_OK && ps.n && !(h = vg_malloc(ps.n * sizeof *h)))
        rc = vg_err_set(VG_ENOMEM, "no memory for %zu frame hits", ps.n);
    if (rc == VG_OK && ps.n) {
        /* A frame reached through several words, several query hashes or its whole and
         * trimmed entries appears once, with its smallest distance. */
        qsort(ps.p, ps.n, sizeof *ps.p, video__pair_cmp_entry);
        for (size_t i = 0; i < ps.n; i++) {
            const video__pair *p = &ps.p[i];
            if (i && p->u == ps.p[i - 1].u)
                continue;
            h[n++] = (video_frame_hit){.video = p->video,
                                       .entry = p->u,
                                       .ts = ix->ts[p->e],
                                       .distance = p->d,
                                       .query = p->q};
        }
        qsort(h, n, sizeof *h, video__hit_cmp);
    }
    vg_free(ps.p);
    if (rc != VG_OK) {
        vg_free(h);
        return rc;
    }
    *out = h;
    *n_out = n;
    return VG_OK;
}

int video_compare(const video_hash *q, const video_hash *c, const video_match_opts *o,
                  video_match *out)
{
    video_match_opts mo;
    if (o)
        mo = *o;
    else
        video_match_opts_default(&mo);
    mo.only_matches = 0;
    video_index *ix = video_index_new(mo.min_quality);
    if (!ix)
        return vg_err_set(VG_ENOMEM, "no memory for an index");
    int rc = video_index_add(ix, "compared", c, NULL);
    if (rc == VG_OK)
        rc = video_index_build(ix);
    video_result r = {0};
    if (rc == VG_OK)
        rc = video_index_search(ix, q, &mo, &r);
    if (rc == VG_OK) {
        memset(out, 0, sizeof *out);
        if (r.n) {
            *out = r.matches[0];
            r.matches[0].segments = NULL;
            r.matches[0].n_segments = 0;
        } else {
            out->query_frames = r.query_frames;
            out->compared_frames = ix->v_count[0];
            out->match = 0 >= mo.compared_pct && 0 >= mo.query_pct && out->compared_frames;
        }
        out->id = NULL; /* the index is gone */
    }
    video_result_free(&r);
    video_index_free(ix);
    return rc;
}

/* Whether frames a and b meet by the rule (o->regions: through their regions too). */
static int video__frames_meet(const video__uf *a, const video__uf *b, const video_match_opts *o)
{
    const int D = o->distance, mq = o->min_quality;
    if (pdq_distance(&a->h, &b->h) <= D)
        return 1;
    if (!o->regions)
        return 0;
    const pdq_hash *at = video__region_of(a->f, VIDEO_REGION_TRIMMED, mq);
    const pdq_hash *bt = video__region_of(b->f, VIDEO_REGION_TRIMMED, mq);
    if ((at && pdq_distance(at, &b->h) <= D) || (bt && pdq_distance(&a->h, bt) <= D) ||
        (at && bt && pdq_distance(at, bt) <= D))
        return 1;
    for (int r = VIDEO_REGION_TOP; r <= VIDEO_REGION_BOTTOM; r++) {
        const pdq_hash *x = video__region_of(a->f, r, mq), *y = video__region_of(b->f, r, mq);
        if (x && y && pdq_distance(x, y) <= D)
            return 1;
    }
    return 0;
}

int video__compare_brute(const video_hash *q, const video_hash *c, const video_match_opts *o,
                         video_match *out)
{
    video__uf *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int rc = video__unique(q, o->min_quality, &a, &na);
    if (rc == VG_OK)
        rc = video__unique(c, o->min_quality, &b, &nb);
    if (rc == VG_OK) {
        memset(out, 0, sizeof *out);
        uint32_t qm = 0, cm = 0;
        for (size_t i = 0; i < na; i++)
            for (size_t j = 0; j < nb; j++)
                if (video__frames_meet(&a[i], &b[j], o)) {
                    qm++;
                    break;
                }
        for (size_t j = 0; j < nb; j++)
            for (size_t i = 0; i < na; i++)
                if (video__frames_meet(&a[i], &b[j], o)) {
                    cm++;
                    break;
                }
        out->query_frames = (uint32_t)na;
        out->compared_frames = (uint32_t)nb;
        out->query_matched = qm;
        out->compared_matched = cm;
        out->query_match_pct = na ? 100.0 * qm / (double)na : 0.0;
        out->compared_match_pct = nb ? 100.0 * cm / (double)nb : 0.0;
        out->match =
            out->compared_match_pct >= o->compared_pct && out->query_match_pct >= o->query_pct;
    }
    vg_free(a);
    vg_free(b);
    return rc;
}
