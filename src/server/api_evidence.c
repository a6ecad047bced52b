/* Tenant routes for analysis and the evidence it records: scans and matches. */
#include "server/server_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "analyze/analyze.h"

/* ---- scans and matches ----------------------------------------------------------------------- */

/* PDQ matches say how they were found (analyze_match_mechanism): "mechanism" and, for a crop,
 * "region". Older evidence and other kinds have neither field. */
static json_t *with_mechanism(json_t *o, const char *mechanism, const char *region)
{
    if (o && mechanism && *mechanism) {
        json_object_set_new(o, "mechanism", json_string(mechanism));
        if (region && *region)
            json_object_set_new(o, "region", json_string(region));
    }
    return o;
}

/* A video match (schema 5) adds its details: "media":"video", both percentages, frame counts
 * and the segments (query start-end vs reference start-end, seconds). */
static json_t *with_video(json_t *o, const char *video_json)
{
    json_t *v = video_json ? json_loads(video_json, 0, NULL) : NULL;
    if (o && json_is_object(v))
        json_object_update(o, v);
    json_decref(v);
    return o;
}

static json_t *match_json(const store_match *m)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:o,s:o,s:o,s:o,s:o}", "id", m->id, "scan_id",
                  m->scan_id, "profile_id", m->profile_id, "reference_id", m->reference_id, "kind",
                  vg_match_kind_name(m->kind), "distance", m->distance, "confidence", m->confidence,
                  "dihedral", m->dihedral >= 0 ? json_integer(m->dihedral) : json_null(),
                  "face_index", m->face_index >= 0 ? json_integer(m->face_index) : json_null(),
                  "sha256", server__hex(m->scan_sha256, 32), "source_url",
                  server__str(m->scan_source_url), "created_at", server__time(m->created_ms));
    return with_video(with_mechanism(o, m->mechanism, m->region), m->video_json);
}

static json_t *scan_json(const store_scan *sc, int with_matches)
{
    json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:o,s:I}", "id", sc->id, "created_at",
                          server__time(sc->created_ms), "sha256", server__hex(sc->sha256, 32),
                          "source_url", server__str(sc->source_url), "level",
                          server__str(sc->level), "n_matches", (json_int_t)sc->n_matches);
    json_object_set_new(o, "pdq",
                        sc->has_pdq ? json_pack("{s:o,s:i}", "hash", server__pdq_hex(sc->pdq),
                                                "quality", sc->pdq_quality)
                                    : json_null());
    if (with_matches) {
        json_object_set_new(o, "faces", catalog_stored_json(sc->faces_json));
        json_object_set_new(o, "timings", catalog_stored_json(sc->timings_json));
        json_t *arr = json_array();
        for (size_t i = 0; sc->matches && i < sc->n_matches; i++)
            json_array_append_new(arr, match_json(&sc->matches[i]));
        json_object_set_new(o, "matches", arr);
    }
    return o;
}

void server__api_scan_list(http_req *req, void *ud)
{
    server *s = ud;
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    uint8_t sha[32];
    const char *h = http_req_query(req, "sha256");
    if (h) {
        if (strlen(h) != 64 || vg_hex_decode(h, sha, 32) != VG_OK) {
            http_reply_error(req, 422, "invalid_field", "sha256 must be 64 hex digits");
            return;
        }
        o.sha256 = sha;
    }
    store_scan *items;
    store_page page;
    int rc = store_scan_list(s->st, server__tenant(req), &o, http_req_arena(req), &items, &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot list scans");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, scan_json(&items[i], 0));
    server__reply_page(req, arr, &page);
}

void server__api_scan_get(http_req *req, void *ud)
{
    server *s = ud;
    store_scan sc;
    int rc = store_scan_get(s->st, server__tenant(req), http_req_param(req, "scan_id"),
                            http_req_arena(req), &sc);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such scan");
        return;
    }
    http_reply_json(req, 200, scan_json(&sc, 1));
}

void server__api_match_list(http_req *req, void *ud)
{
    server *s = ud;
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    o.profile_id = http_req_query(req, "profile_id");
    o.scan_id = http_req_query(req, "scan_id");
    const char *kind = http_req_query(req, "kind");
    if (kind) {
        vg_match_kind k;
        if (vg_match_kind_parse(kind, &k) != VG_OK) {
            http_reply_error(req, 422, "invalid_field", "kind must be exact, pdq or face");
            return;
        }
        o.kinds = 1u << k;
    }
    store_match *items;
    store_page page;
    int rc = store_match_list(s->st, server__tenant(req), &o, http_req_arena(req), &items, &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot list matches");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, match_json(&items[i]));
    server__reply_page(req, arr, &page);
}

void server__api_match_get(http_req *req, void *ud)
{
    server *s = ud;
    store_match m;
    int rc = store_match_get(s->st, server__tenant(req), http_req_param(req, "match_id"),
                             http_req_arena(req), &m);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such match");
        return;
    }
    http_reply_json(req, 200, match_json(&m));
}

/* ---- analyze --------------------------------------------------------------------------------- */

json_t *server__result_json(const analyze_result *r)
{
    const analyze_features *f = &r->features;
    json_t *faces = json_array();
    for (size_t i = 0; i < f->n_faces; i++) {
        const analyze_face *fc = &f->faces[i];
        json_array_append_new(faces, json_pack("{s:[f,f,f,f],s:f}", "box", fc->box[0], fc->box[1],
                                               fc->box[2], fc->box[3], "score", fc->score));
    }
    json_t *matches = json_array();
    for (size_t i = 0; i < r->n_matches; i++) {
        const analyze_match *m = &r->matches[i];
        const char *region = NULL, *mech = analyze_match_mechanism(m, &region);
        json_array_append_new(
            matches,
            with_mechanism(
                json_pack("{s:o,s:s,s:s,s:s,s:f,s:f,s:o,s:o}", "match_id",
                          m->match_id[0] ? json_string(m->match_id) : json_null(), "profile_id",
                          m->profile_id, "reference_id", m->reference_id, "kind",
                          vg_match_kind_name(m->kind), "distance", m->distance, "confidence",
                          m->confidence, "dihedral",
                          m->dihedral >= 0 ? json_integer(m->dihedral) : json_null(), "face_index",
                          m->face_index >= 0 ? json_integer(m->face_index) : json_null()),
                mech, region));
        if (m->video_frames) { /* the stored form, so answer and evidence read alike */
            json_t *v = catalog_video_frame_json(m);
            if (v)
                json_object_update(json_array_get(matches, json_array_size(matches) - 1), v);
            json_decref(v);
        }
    }
    const analyze_timings *t = &r->timings;
    /* No cache tier here: which tier answered is an operator's figure (metrics, logs). Told to
     * a tenant, it said whether anyone had analysed the same bytes before. */
    json_t *timings = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "cache_us", (json_int_t)t->cache_us, "decode_us",
        (json_int_t)t->decode_us, "pdq_us", (json_int_t)t->pdq_us, "detect_us",
        (json_int_t)t->detect_us, "landmarks_us", (json_int_t)t->landmarks_us, "descriptors_us",
        (json_int_t)t->descriptors_us, "match_us", (json_int_t)t->match_us, "store_us",
        (json_int_t)t->store_us, "total_us", (json_int_t)t->total_us);
    json_t *o = json_pack("{s:o,s:o,s:i,s:i,s:s,s:b,s:o,s:o,s:o}", "scan_id",
                          r->scan_id[0] ? json_string(r->scan_id) : json_null(), "sha256",
                          server__hex(f->sha256, 32), "width", (int)f->width, "height",
                          (int)f->height, "format", f->format, "faces_enabled", f->faces_enabled,
                          "faces", faces, "matches", matches, "timings", timings);
    json_object_set_new(o, "pdq",
                        f->has_pdq ? json_pack("{s:o,s:i}", "hash", server__pdq_hex(f->pdq),
                                               "quality", f->pdq_quality)
                                   : json_null());
    return o;
}

/* The same answer written straight to text: what json_dumps(server__result_json(r),
 * JSON_COMPACT) gives, byte for byte (jansson 2.14 keeps insertion order, writes integers with
 * %lld and reals as %.17g with ".0" added when there is no '.' or 'e' and the exponent's '+'
 * and leading zeros dropped), without building, dumping and freeing a tree of ~60 nodes: that
 * was half of a cached answer's instructions besides the SHA-256. Where the tree would come
 * out otherwise (a string needing escapes, a non-finite real, which jansson refuses), it
 * returns VG_EUNSUPPORTED and the caller uses the tree. */
typedef struct jtext {
    char *p;
    size_t n, cap;
    int bad; /* out of memory, or a value this writer leaves to jansson */
} jtext;

static void jt_put(jtext *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *np = vg_realloc(b->p, cap);
        if (!np) {
            b->bad = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void jt_lit(jtext *b, const char *s)
{
    jt_put(b, s, strlen(s));
}

/* A string jansson writes unescaped (printable ASCII but '"' and '\'), else bad. */
static void jt_str(jtext *b, const char *s)
{
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f || *c == '"' || *c == '\\')
            b->bad = 1;
    jt_put(b, "\"", 1);
    jt_lit(b, s);
    jt_put(b, "\"", 1);
}

static void jt_int(jtext *b, long long v)
{
    char t[32];
    jt_put(b, t, (size_t)snprintf(t, sizeof t, "%lld", v));
}

static void jt_real(jtext *b, double v)
{
    char t[64];
    if (!isfinite(v)) {
        b->bad = 1;
        return;
    }
    int n = snprintf(t, sizeof t, "%.17g", v);
    if (n <= 0 || n >= (int)sizeof t - 3) {
        b->bad = 1;
        return;
    }
    char *e = strchr(t, 'e');
    if (!strchr(t, '.') && !e) {
        memcpy(t + n, ".0", 3);
        n += 2;
    } else if (e) { /* "1e+20" -> "1e20", "1e-05" -> "1e-5" */
        char *start = e + 1, *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, strlen(end) + 1);
            n = (int)strlen(t);
        }
    }
    jt_put(b, t, (size_t)n);
}

static void jt_key(jtext *b, const char *k, int first)
{
    if (!first)
        jt_put(b, ",", 1);
    jt_str(b, k);
    jt_put(b, ":", 1);
}

int server__result_text(const analyze_result *r, char **out, size_t *len)
{
    const analyze_features *f = &r->features;
    /* A photo found in a protected video carries the video's frame list (catalog's encoder):
     * rare, so that answer goes through the tree rather than a second encoder here. */
    for (size_t i = 0; i < r->n_matches; i++)
        if (r->matches[i].video_frames)
            return VG_EUNSUPPORTED;
    char hex[2 * 32 + 1];
    jtext b = {0};
    jt_put(&b, "{", 1);
    jt_key(&b, "scan_id", 1);
    if (r->scan_id[0])
        jt_str(&b, r->scan_id);
    else
        jt_lit(&b, "null");
    vg_hex_encode(f->sha256, 32, hex);
    jt_key(&b, "sha256", 0);
    jt_str(&b, hex);
    jt_key(&b, "width", 0);
    jt_int(&b, (int)f->width);
    jt_key(&b, "height", 0);
    jt_int(&b, (int)f->height);
    jt_key(&b, "format", 0);
    jt_str(&b, f->format);
    jt_key(&b, "faces_enabled", 0);
    jt_lit(&b, f->faces_enabled ? "true" : "false");
    jt_key(&b, "faces", 0);
    jt_put(&b, "[", 1);
    for (size_t i = 0; i < f->n_faces; i++) {
        const analyze_face *fc = &f->faces[i];
        jt_lit(&b, i ? ",{\"box\":[" : "{\"box\":[");
        for (int k = 0; k < 4; k++) {
            if (k)
                jt_put(&b, ",", 1);
            jt_real(&b, fc->box[k]);
        }
        jt_lit(&b, "],\"score\":");
        jt_real(&b, fc->score);
        jt_put(&b, "}", 1);
    }
    jt_lit(&b, "],\"matches\":[");
    for (size_t i = 0; i < r->n_matches; i++) {
        const analyze_match *m = &r->matches[i];
        const char *region = NULL, *mech = analyze_match_mechanism(m, &region);
        jt_lit(&b, i ? ",{" : "{");
        jt_key(&b, "match_id", 1);
        if (m->match_id[0])
            jt_str(&b, m->match_id);
        else
            jt_lit(&b, "null");
        jt_key(&b, "profile_id", 0);
        jt_str(&b, m->profile_id);
        jt_key(&b, "reference_id", 0);
        jt_str(&b, m->reference_id);
        jt_key(&b, "kind", 0);
        jt_str(&b, vg_match_kind_name(m->kind));
        jt_key(&b, "distance", 0);
        jt_real(&b, m->distance);
        jt_key(&b, "confidence", 0);
        jt_real(&b, m->confidence);
        jt_key(&b, "dihedral", 0);
        if (m->dihedral >= 0)
            jt_int(&b, m->dihedral);
        else
            jt_lit(&b, "null");
        jt_key(&b, "face_index", 0);
        if (m->face_index >= 0)
            jt_int(&b, m->face_index);
        else
            jt_lit(&b, "null");
        if (mech && *mech) {
            jt_key(&b, "mechanism", 0);
            jt_str(&b, mech);
            if (region && *region) {
                jt_key(&b, "region", 0);
                jt_str(&b, region);
            }
        }
        jt_put(&b, "}", 1);
    }
    const analyze_timings *t = &r->timings;
    const struct {
        const char *k;
        uint64_t v;
    } tv[] = {{"cache_us", t->cache_us},
              {"decode_us", t->decode_us},
              {"pdq_us", t->pdq_us},
              {"detect_us", t->detect_us},
              {"landmarks_us", t->landmarks_us},
              {"descriptors_us", t->descriptors_us},
              {"match_us", t->match_us},
              {"store_us", t->store_us},
              {"total_us", t->total_us}};
    jt_lit(&b, "],\"timings\":{");
    for (size_t i = 0; i < VG_ARRAY_LEN(tv); i++) {
        jt_key(&b, tv[i].k, i == 0);
        jt_int(&b, (long long)(json_int_t)tv[i].v);
    }
    jt_lit(&b, "},\"pdq\":");
    if (f->has_pdq) {
        pdq_hash h;
        char ph[PDQ_HEX_BYTES];
        memcpy(h.w, f->pdq, sizeof h.w);
        jt_lit(&b, "{\"hash\":");
        jt_str(&b, pdq_hash_to_hex(&h, ph));
        jt_lit(&b, ",\"quality\":");
        jt_int(&b, f->pdq_quality);
        jt_put(&b, "}", 1);
    } else {
        jt_lit(&b, "null");
    }
    jt_put(&b, "}", 1);
    if (b.bad) {
        vg_free(b.p);
        return VG_EUNSUPPORTED;
    }
    *out = b.p;
    *len = b.n;
    return VG_OK;
}

/* The analysis answer: the text writer, or the tree where it declines. */
static void reply_result(http_req *req, int code, const analyze_result *r)
{
    char *text;
    size_t len;
    if (server__result_text(r, &text, &len) == VG_OK) {
        http_reply_data(req, code, "application/json", text, len);
        vg_free(text);
    } else {
        http_reply_json(req, code, server__result_json(r));
    }
}

/* What to do with an analysis once it is done: record it as evidence (store=true, the default)
 * with its source_url. */
typedef struct an_record {
    int store;
    const char *source_url; /* request arena */
} an_record;

/* Reads source_url, profile_id, level and store from the input's fields. Replies on error. */
static int analyze_options(server *s, srv_input *in, analyze_request *ar, an_record *rec)
{
    http_req *req = in->req;
    memset(ar, 0, sizeof(*ar));
    ar->tenant_id = server__tenant(req);
    rec->source_url = server__input_field(in, "source_url");
    ar->profile_id = server__input_field(in, "profile_id");
    ar->level = (vg_level)s->cfg->default_level;
    rec->store = 1;
    const char *level = server__input_field(in, "level");
    if (level && vg_level_parse(level, &ar->level) != VG_OK) {
        http_reply_error(req, 422, "invalid_field",
                         "level must be speed, balanced, accuracy or memory");
        return -1;
    }
    const char *st = server__input_field(in, "store");
    if (st) {
        if (strcmp(st, "true") == 0 || strcmp(st, "1") == 0) {
            rec->store = 1;
        } else if (strcmp(st, "false") == 0 || strcmp(st, "0") == 0) {
            rec->store = 0;
        } else {
            http_reply_error(req, 422, "invalid_field", "store must be true or false");
            return -1;
        }
    }
    if (rec->source_url && strlen(rec->source_url) >= STORE_URL_MAX_BYTES) {
        http_reply_error(req, 422, "invalid_field", "source_url is longer than %d bytes",
                         STORE_URL_MAX_BYTES - 1);
        return -1;
    }
    if (ar->profile_id) {
        store_profile p;
        int rc = store_profile_get(s->st, ar->tenant_id, ar->profile_id, http_req_arena(req), &p);
        if (rc != VG_OK) {
            server__reply_err(req, rc, "no such profile");
            return -1;
        }
    }
    ar->deadline_ns = http_req_start_ns(req) + s->cfg->request_deadline_ms * 1000000ull;
    return 0;
}

/* One image of an analyze request, in flight on the analysis threads. Lives in the request
 * arena: the handler allocates it before analyze_submit and touches neither it nor the arena
 * afterwards, so the completion (on an analysis thread) owns both until it resumes the request. */
typedef struct an_job {
    struct an_batch *batch; /* NULL for a single /analyze */
    server *s;
    http_req *req;
    analyze_request ar;
    an_record rec;
    analyze_result res;
    int status;
    const char *filename;
    char detail[256]; /* why it failed, copied on the completing thread */
} an_job;

typedef struct an_batch {
    http_req *req;
    size_t n;
    an_job *jobs;
    _Atomic size_t pending; /* jobs not done + 1 for the submitting handler */
} an_batch;

int server__analyze_fields(server *s, srv_input *in, analyze_request *ar, const char **source_url,
                           int *store_out)
{
    an_record rec;
    if (analyze_options(s, in, ar, &rec))
        return -1;
    *source_url = rec.source_url;
    *store_out = rec.store;
    return 0;
}

/* parse -> analyze -> catalog -> reply: the catalog step, on the analysis thread that completed
 * the job (the evidence write waits for its commit there, not on a network thread). 0, or the
 * failure with its detail in j->detail. */
static int an_record_scan(an_job *j, int status, const char *detail)
{
    /* Cross-media: the image may be a frame of a protected video (a thumbnail). */
    if (status == VG_OK) {
        vg_err_clear();
        status = catalog_video_frame_match(j->s->cat, j->ar.tenant_id, j->ar.profile_id,
                                           (int)j->s->cfg->pdq_threshold,
                                           (int)j->s->cfg->pdq_quality_min, &j->res);
        if (status != VG_OK) {
            detail = vg_err_msg();
            analyze_result_free(&j->res);
        }
    }
    if (status == VG_OK && j->rec.store) {
        vg_err_clear();
        status = catalog_scan_record(j->s->cat, j->ar.tenant_id, j->rec.source_url, j->ar.level,
                                     &j->res);
        if (status != VG_OK) {
            detail = vg_err_msg();
            analyze_result_free(&j->res);
        }
    }
    if (status == VG_OK)
        server__metrics_analysis(j->s, j->ar.level, &j->res, 1, j->res.scan_id[0] != 0);
    j->status = status;
    server__ops_analysis(j->s, status, status == VG_OK ? &j->res.timings : NULL);
    if (status != VG_OK)
        snprintf(j->detail, sizeof(j->detail), "%s", detail ? detail : vg_strerror(status));
    return status;
}

/* The answer names the deadline, the shutdown, the img limit, the damage or the store's
 * failure: the detail the failing step gave, not a generic message. */
static void single_done(void *arg, int status, const char *detail)
{
    an_job *j = arg;
    if (an_record_scan(j, status, detail) == VG_OK) {
        reply_result(j->req, j->res.scan_id[0] ? 201 : 200, &j->res);
        analyze_result_free(&j->res);
    } else {
        server__reply_detail(j->req, j->status, j->detail);
    }
    http_req_resume(j->req);
}

/* Several nodes (docs/SCALING.md): before matching, apply what other nodes committed and this
 * one has not applied yet, so an analysis sent right after a reference add answered by another
 * node matches it. A failure is not the analysis's: it matches against the index as it is, and
 * the sync thread retries. */
static void index_catch_up(server *s)
{
    if (s->cfg->index_sync_before_analysis && s->cat && catalog_sync_catch_up(s->cat) != VG_OK)
        VG_WARN_LIMITED("server", "index catch-up before an analysis: %s", vg_err_msg());
}

void server__api_analyze(http_req *req, void *ud)
{
    server *s = ud;
    if (!s->an) {
        server__unavailable(req, "analyze");
        return;
    }
    index_catch_up(s);
    if (server__video_analyze(s, req) != 0) /* a video: answered, now or by a video worker */
        return;
    srv_input in;
    if (server__input_parse(req, 1, &in))
        return;
    an_job *j = vg_arena_alloc(http_req_arena(req), sizeof(*j));
    if (!j) {
        http_reply_error(req, 503, NULL, "out of memory");
        return;
    }
    memset(j, 0, sizeof(*j));
    j->s = s;
    j->req = req;
    if (analyze_options(s, &in, &j->ar, &j->rec))
        return;
    j->ar.bytes = in.images[0].data;
    j->ar.len = in.images[0].len;
    /* A cached answer that records nothing is matched and answered on this network thread:
     * single_done then replies and resumes before the handler returns, so the reply goes out
     * at once (no finisher wake-up, no suspend/resume round trip). With store=true the evidence
     * write waits for its commit, which must not hold a network thread. */
    j->ar.inline_hit = !j->rec.store;
    http_req_defer(req);
    int rc = analyze_submit(s->an, &j->ar, 0, &j->res, single_done, j);
    if (rc != VG_OK) { /* not queued: done will not run */
        server__ops_analysis(s, rc, NULL);
        server__reply_err(req, rc,
                          rc == VG_EBUSY ? "the analysis queue is full" : "cannot analyse");
        http_req_resume(req);
    }
}

static void batch_finish(an_batch *b)
{
    json_t *results = json_array();
    size_t ok = 0;
    for (size_t i = 0; i < b->n; i++) {
        an_job *j = &b->jobs[i];
        json_t *item;
        if (j->status == VG_OK) {
            item = server__result_json(&j->res);
            analyze_result_free(&j->res);
            ok++;
        } else {
            int st = http_status_of(j->status);
            item = json_pack("{s:i,s:{s:s,s:s}}", "status", st, "error", "code",
                             http_status_code(st), "message",
                             st == 500      ? "internal error"
                             : j->detail[0] ? j->detail
                                            : vg_strerror(j->status));
        }
        json_object_set_new(item, "index", json_integer((json_int_t)i));
        if (j->filename)
            json_object_set_new(item, "filename", json_string(j->filename));
        json_array_append_new(results, item);
    }
    http_reply_json(b->req, 200,
                    json_pack("{s:I,s:I,s:o}", "count", (json_int_t)b->n, "ok", (json_int_t)ok,
                              "results", results));
    http_req_resume(b->req);
}

static void batch_done(void *arg, int status, const char *detail)
{
    an_job *j = arg;
    an_record_scan(j, status, detail);
    if (atomic_fetch_sub(&j->batch->pending, 1) == 1)
        batch_finish(j->batch);
}

void server__api_analyze_batch(http_req *req, void *ud)
{
    server *s = ud;
    if (!s->an) {
        server__unavailable(req, "analyze");
        return;
    }
    index_catch_up(s);
    if (!http_content_type_is(http_req_header(req, "Content-Type"), "multipart/form-data")) {
        http_reply_error(req, 415, NULL, "a batch is multipart/form-data with 'image' parts");
        return;
    }
    srv_input in;
    if (server__input_parse(req, (size_t)s->cfg->max_batch_images, &in))
        return;
    analyze_request ar;
    an_record rec;
    if (analyze_options(s, &in, &ar, &rec))
        return;
    vg_arena *a = http_req_arena(req);
    an_batch *b = vg_arena_alloc(a, sizeof(*b));
    an_job *jobs = b ? vg_arena_alloc(a, in.n_images * sizeof(*jobs)) : NULL;
    if (!jobs) {
        http_reply_error(req, 503, NULL, "out of memory");
        return;
    }
    memset(jobs, 0, in.n_images * sizeof(*jobs));
    b->req = req;
    b->n = in.n_images;
    b->jobs = jobs;
    atomic_store(&b->pending, in.n_images + 1);
    for (size_t i = 0; i < in.n_images; i++) {
        jobs[i].batch = b;
        jobs[i].s = s;
        jobs[i].req = req;
        jobs[i].ar = ar;
        jobs[i].rec = rec;
        jobs[i].ar.bytes = in.images[i].data;
        jobs[i].ar.len = in.images[i].len;
        jobs[i].filename = in.images[i].filename;
    }
    http_req_defer(req);
    for (size_t i = 0; i < in.n_images; i++) {
        int rc = analyze_submit(s->an, &jobs[i].ar, 0, &jobs[i].res, batch_done, &jobs[i]);
        if (rc != VG_OK) /* not queued: count it as answered with its error */
            batch_done(&jobs[i], rc, vg_err_msg());
    }
    /* the handler's own share: whoever drops the count to zero answers */
    if (atomic_fetch_sub(&b->pending, 1) == 1)
        batch_finish(b);
}
