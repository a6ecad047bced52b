/*
 * Video over the API (docs/VIDEO.md, "API"): reference uploads of video works, analyses of found
 * videos (a short one answered directly, a long one as a job), GET /api/v1/jobs/{id}, and the
 * job workers.
 *
 * Flow: the handler recognises a video (Content-Type video/x, or the container's magic bytes in
 * application/octet-stream or in an `image`/`video` multipart part), copies its fields into a
 * task in the request arena, defers the request and queues the task. A video worker hashes it
 * through the video module (its own forked, resource-limited child per decode), then:
 *   - a reference: registers it through the catalog (stored with its frame hashes, added to the
 *     tenant's video index) and answers 201;
 *   - an analysis: hashed with the duration limit lowered to video_sync_max_s; when that limit
 *     refuses it (from the header, before decoding), the bytes go to a 0600 file under
 *     <data_dir>/jobs, a job row is committed, and the answer is 202 with Location; otherwise
 *     the tenant's video index is searched (vPDQ rule), the scan recorded, and the answer given.
 * Jobs run on the same workers (answers waiting on a worker go first) and survive a restart: the
 * row is written before the 202, owned by this node (node_id) under a lease (video_job_lease)
 * that the heartbeat thread renews every third of it. At start the node takes back its own open
 * jobs (same node_id) and takes over every job whose lease ran out; the heartbeat takes over
 * such jobs periodically too, so a dead node's jobs are resumed by exactly one live node
 * (store_job_takeover), failing after video_job_max_attempts starts. The bytes live in this
 * node's data_dir: a node that takes over another's job without them fails it cleanly ("the
 * uploaded video of this job is gone"). The bytes are deleted once the job ends. A finished job
 * may POST its JSON to the request's callback_url (one retry).
 *
 * Threads: `server_video` is created by server_open before the HTTP server starts and freed by
 * server_close after the last analysis answered; the queue is guarded by `mu`; each task is
 * owned by the worker that took it.
 */
#include "server/server_int.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "analyze/analyze.h"
#include "face/face.h"
#include "obs/obs.h"
#include "video/video.h"

#define SERVER_VIDEO_JOBS_DIR "jobs"
#define SERVER_VIDEO_CALLBACK_ATTEMPTS 2 /* one retry, no storm */
#define SERVER_VIDEO_CALLBACK_RETRY_MS 1000
/* Jobs one heartbeat takes over and queues at once; more wait for the next beat
 * (store_job_takeover takes no more than it lists). */
#define SERVER_VIDEO_TAKEOVER_MAX_JOBS 64

typedef enum { VT_REFERENCE = 0, VT_ANALYZE, VT_JOB } vt_kind;

/* One unit of work for a video worker. Sync tasks (REFERENCE, ANALYZE) live in the request
 * arena; JOB tasks are vg_malloc'ed and freed by the worker. */
typedef struct vtask {
    struct vtask *next;
    vt_kind kind;
    http_req *req; /* sync only */
    char tenant[STORE_ID_MAX];
    const uint8_t *bytes; /* sync: the request body */
    size_t len;
    /* analysis options (sync analyses; jobs read them from the job's params) */
    const char *source_url, *profile_id, *callback_url;
    int store;
    vg_level level;
    catalog_reference_new nr; /* references */
    char job_id[STORE_ID_MAX];
} vtask;

struct server_video {
    server *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vtask *sync_head, *sync_tail, *job_head, *job_tail;
    size_t jobs_queued;
    int stop;
    pthread_t *threads;
    size_t n_threads;
    char jobs_dir[4096];
    obs_metric *m_limits, *m_jobs, *m_takeovers;
    int curl_init; /* curl_global_init succeeded: paired with curl_global_cleanup */
    /* node ownership of jobs: the heartbeat thread sleeps on hb_cv (under mu) */
    char node[STORE_JOB_OWNER_MAX_BYTES];
    int64_t lease_ms;
    pthread_cond_t hb_cv;
    pthread_t hb;
    int hb_started;
};

/* ---- recognising a video -------------------------------------------------------------------- */

/* Containers by magic bytes: ISO BMFF (a top-level box type at offset 4), EBML (Matroska/WebM)
 * and RIFF AVI (not allowed, but refused by the video module naming the container rather than
 * by the image decoder as "not an image"). */
static int sniff_video(const uint8_t *b, size_t n)
{
    static const char *const boxes[] = {"ftyp", "moov", "mdat", "free", "skip", "wide"};
    if (n >= 12)
        for (size_t i = 0; i < VG_ARRAY_LEN(boxes); i++)
            if (memcmp(b + 4, boxes[i], 4) == 0)
                return 1;
    if (n >= 4 && b[0] == 0x1a && b[1] == 0x45 && b[2] == 0xdf && b[3] == 0xa3)
        return 1;
    return n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "AVI ", 4) == 0;
}

static int video_content_type(const char *ct)
{
    while (ct && *ct == ' ')
        ct++;
    return ct && strncasecmp(ct, "video/", 6) == 0;
}

int server__video_input(http_req *req, srv_input *in, const uint8_t **data, size_t *len)
{
    memset(in, 0, sizeof *in);
    in->req = req;
    const char *ct = http_req_header(req, "Content-Type");
    size_t blen;
    const uint8_t *body = http_req_body(req, &blen);
    if (!http_content_type_is(ct, "multipart/form-data")) {
        if (blen == 0 ||
            !(video_content_type(ct) ||
              (http_content_type_is(ct, "application/octet-stream") && sniff_video(body, blen))))
            return 0;
        *data = body;
        *len = blen;
        return 1;
    }
    http_part *parts;
    size_t n_parts;
    /* the image path parses again when this is not a video: a second pass over a body
     * already in memory, cheaper than threading the parse through */
    if (http_multipart_parse(body, blen, ct, http_req_arena(req), 64, &parts, &n_parts) != VG_OK)
        return 0;
    const http_part *v = NULL;
    size_t media = 0;
    for (size_t i = 0; i < n_parts; i++) {
        const http_part *p = &parts[i];
        int is_video = strcmp(p->name, "video") == 0;
        if (!is_video && strcmp(p->name, "image") != 0)
            continue;
        media++;
        if (!v && p->len &&
            (is_video || video_content_type(p->content_type) || sniff_video(p->data, p->len)))
            v = p;
    }
    if (!v)
        return 0;
    if (media > 1) {
        http_reply_error(req, 422, "invalid_field", "one video per request");
        return -1;
    }
    in->multipart = 1;
    in->parts = parts;
    in->n_parts = n_parts;
    *data = v->data;
    *len = v->len;
    return 1;
}

/* ---- errors --------------------------------------------------------------------------------- */

/* The answer for a failed hash: 413 for bytes and memory, 422 for the other limits and for
 * undecodable input, naming the limit; the rest as the usual mapping. */
static int video_error(server_video *v, int rc, char *msg, size_t n, const char **code)
{
    video_limit_kind k = video_last_limit();
    const char *detail = vg_err_msg();
    *code = NULL;
    if (k != VIDEO_LIMIT_NONE) {
        if (v->m_limits)
            obs_inc(v->m_limits, OBS_LABELS(video_limit_name(k)));
        *code = "video_limit";
        snprintf(msg, n, "video refused by the limit '%s': %s", video_limit_name(k),
                 detail && *detail ? detail : vg_strerror(rc));
        return k == VIDEO_LIMIT_INPUT_BYTES || k == VIDEO_LIMIT_CHILD_MEMORY ? 413 : 422;
    }
    snprintf(msg, n, "%s", detail && *detail ? detail : vg_strerror(rc));
    switch (rc) {
    case VG_EFORMAT:
    case VG_ECORRUPT:
    case VG_ETRUNC:
    case VG_EDIM:
    case VG_EPIXELS:
    case VG_ETIMEDOUT:
    case VG_EINVAL:
        *code = "invalid_video";
        return 422;
    case VG_ETOOBIG:
        return 413;
    default:
        return http_status_of(rc);
    }
}

/* ---- hashing and matching ------------------------------------------------------------------- */

static void hash_opts(const server *s, video_hash_opts *o, double max_duration_s)
{
    video_hash_opts_default(o);
    const conf_settings *c = s->cfg;
    o->limits.max_input_bytes = (size_t)c->max_body_bytes;
    o->limits.max_duration_ms = (uint64_t)llround(max_duration_s * 1000.0);
    o->limits.max_dimension = (uint32_t)c->video_max_dimension;
    o->limits.child_mem_bytes = c->video_child_mem_bytes;
    o->limits.wall_ms = (uint32_t)c->video_wall_ms;
    o->regions = c->video_regions;
}

/* Analyses (not references) also keep frames for faces in video, when the server has faces. */
static void hash_opts_faces(const server *s, video_hash_opts *o)
{
    if (!s->models || !(s->cfg->video_face_rate > 0))
        return;
    o->face_rate = s->cfg->video_face_rate < o->rate ? s->cfg->video_face_rate : o->rate;
    o->face_max_frames = (uint32_t)s->cfg->video_face_max_frames;
}

static json_t *video_answer(const video_hash *h, const uint8_t sha[32],
                            const catalog_video_result *r, uint64_t hash_us, uint64_t match_us,
                            uint64_t store_us)
{
    json_t *matches = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const catalog_video_match *m = &r->matches[i];
        json_t *o = catalog_video_match_json(m);
        json_object_set_new(o, "match_id", m->match_id[0] ? json_string(m->match_id) : json_null());
        json_object_set_new(o, "profile_id", json_string(m->profile_id));
        json_object_set_new(o, "reference_id", json_string(m->reference_id));
        json_object_set_new(o, "kind", json_string(m->face ? "face" : "pdq"));
        if (m->ref_image) /* a photo or person in the video: the nearest frame's distance */
            json_object_set_new(o, "distance", json_real(round(m->distance * 1e4) / 1e4));
        json_array_append_new(matches, o);
    }
    json_t *o = json_pack("{s:o,s:s,s:o,s:i,s:i,s:f,s:s,s:s,s:I,s:I,s:o}", "scan_id",
                          r->scan_id[0] ? json_string(r->scan_id) : json_null(), "media", "video",
                          "sha256", server__hex(sha, 32), "width", (int)h->width, "height",
                          (int)h->height, "duration_s", round(h->duration_s * 1000.0) / 1000.0,
                          "container", h->container, "codec", h->codec, "frames", (json_int_t)h->n,
                          "query_frames", (json_int_t)r->query_frames, "matches", matches);
    json_object_set_new(o, "timings",
                        json_pack("{s:I,s:I,s:I,s:I}", "hash_us", (json_int_t)hash_us, "match_us",
                                  (json_int_t)match_us, "store_us", (json_int_t)store_us,
                                  "total_us", (json_int_t)(hash_us + match_us + store_us)));
    return o;
}

/* Faces in video: the faces of the frames the video module kept as pixels (face_rate), found
 * at the request's level by this worker's face engine (*fe, made on first use), then tracked
 * against the tenant's likeness references by the catalog. Nothing without face models. */
static int video_faces(server *s, face_engine **fe, const char *tenant, const char *profile_id,
                       vg_level level, const video_hash *h, catalog_video_result *r)
{
    if (!s->models || !h->n_images)
        return VG_OK;
    if (h->images_capped && s->video->m_limits)
        obs_inc(s->video->m_limits, OBS_LABELS("face_frames"));
    int rc = VG_OK;
    if (!*fe && (rc = face_engine_new(s->models, NULL, fe)) != VG_OK)
        return rc;
    face_opts fo;
    face_opts_for_level(level, &fo);
    if (fo.detector == FACE_DET_SSD && !face_models_has_ssd(s->models))
        face_opts_for_level(VG_LEVEL_BALANCED, &fo);
    fo.max_faces = ANALYZE_DEFAULT_MAX_FACES; /* per frame, as per image */
    face_result *fr = vg_calloc(h->n_images, sizeof *fr);
    if (!fr)
        return vg_err_set(VG_ENOMEM, "out of memory");
    size_t n_faces = 0;
    for (size_t i = 0; rc == VG_OK && i < h->n_images; i++) {
        const video_image *im = &h->images[i];
        face_image fi = {.rgb = im->rgb, .w = im->w, .h = im->h};
        rc = face_analyze(*fe, &fi, &fo, &fr[i]);
        n_faces += fr[i].n;
    }
    catalog_video_face *faces = rc == VG_OK && n_faces ? vg_calloc(n_faces, sizeof *faces) : NULL;
    if (rc == VG_OK && n_faces && !faces)
        rc = vg_err_set(VG_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; rc == VG_OK && i < h->n_images; i++)
        for (size_t j = 0; j < fr[i].n; j++)
            if (fr[i].faces[j].has_descriptor)
                faces[k++] = (catalog_video_face){h->images[i].ts, fr[i].faces[j].descriptor};
    if (rc == VG_OK)
        rc = catalog_video_face_search(s->cat, tenant, profile_id, faces, k, (uint32_t)h->n_images,
                                       (float)s->cfg->face_threshold,
                                       (uint32_t)llround(s->cfg->video_face_gap_s * 1000.0), r);
    vg_free(faces);
    for (size_t i = 0; i < h->n_images; i++)
        face_result_free(&fr[i]);
    vg_free(fr);
    return rc;
}

/* Matches a hashed video and records it; *out the answer (new reference). Errors with detail. */
static int analyse_hashed(server *s, face_engine **fe, const char *tenant, const char *profile_id,
                          const char *source_url, int record, vg_level level, const uint8_t *bytes,
                          size_t len, const video_hash *h, uint64_t hash_us, json_t **out)
{
    uint8_t sha[32];
    vg_sha256(bytes, len, sha);
    catalog_video_result r;
    uint64_t t0 = vg_now_ns();
    int rc = catalog_video_search(s->cat, tenant, profile_id, h, NULL, &r);
    if (rc != VG_OK)
        return rc;
    /* Cross-media: protected photos the video shows, by the image path's PDQ settings. */
    rc = catalog_video_photo_search(s->cat, tenant, profile_id, h, (int)s->cfg->pdq_threshold,
                                    (int)s->cfg->pdq_quality_min, VIDEO_DEFAULT_SEGMENT_GAP_MS, &r);
    if (rc == VG_OK)
        rc = video_faces(s, fe, tenant, profile_id, level, h, &r);
    if (rc != VG_OK) {
        catalog_video_result_free(&r);
        return rc;
    }
    uint64_t t1 = vg_now_ns();
    if (record) {
        char timings[128];
        snprintf(timings, sizeof timings, "{\"hash_us\":%llu,\"match_us\":%llu}",
                 (unsigned long long)hash_us, (unsigned long long)((t1 - t0) / 1000));
        rc = catalog_video_scan_record(s->cat, tenant, source_url, level, sha, timings, &r);
    }
    uint64_t t2 = vg_now_ns();
    if (rc == VG_OK)
        *out = video_answer(h, sha, &r, hash_us, (t1 - t0) / 1000, (t2 - t1) / 1000);
    catalog_video_result_free(&r);
    return rc;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

static json_t *job_json(const store_job *j)
{
    json_t *o =
        json_pack("{s:s,s:s,s:f,s:i,s:o,s:o}", "id", j->id, "state", store_job_state_name(j->state),
                  "progress", j->progress, "attempts", j->attempts, "created_at",
                  server__time(j->created_ms), "updated_at", server__time(j->updated_ms));
    /* Which node holds a job that is not over, and until when (issue 11: a job is owned by a
     * node under a lease, and taken over once the lease runs out). */
    int open = j->state == STORE_JOB_QUEUED || j->state == STORE_JOB_RUNNING;
    json_object_set_new(o, "node", open && j->owner ? json_string(j->owner) : json_null());
    json_object_set_new(o, "lease_until",
                        open && j->owner ? server__time(j->lease_until_ms) : json_null());
    json_object_set_new(o, "result", catalog_stored_json(j->result));
    json_object_set_new(o, "error",
                        j->state == STORE_JOB_FAILED
                            ? json_pack("{s:i,s:s,s:s}", "status", j->error_status, "code",
                                        http_status_code(j->error_status), "message",
                                        !j->error ? "failed"
                                        : j->error_status >= 500 && !strstr(j->error, "stopped")
                                            ? "internal error"
                                            : j->error)
                            : json_null());
    return o;
}

/* ---- callback addresses ---------------------------------------------------------------------
 * A callback_url is a request the server makes on a tenant's behalf: pointed at 127.0.0.1, the
 * cloud metadata address or an internal host, it would reach what the tenant cannot (SSRF). So
 * unless video_callback_allow_private is set, a URL whose host resolves to any non-public
 * address is refused with 422 when the job is submitted, and every connection the callback
 * makes is checked again (CURLOPT_OPENSOCKETFUNCTION), so a name that resolves differently
 * later (DNS rebinding) is refused too. */

/* Loopback, "this network", RFC 1918, carrier-grade NAT, link-local (metadata services), IETF
 * protocol assignments, benchmarking, multicast, reserved and broadcast. a in host order. */
static int ipv4_internal(uint32_t a)
{
    static const struct {
        uint32_t net, mask;
    } nets[] = {
        {0x00000000u, 0xff000000u}, /* 0.0.0.0/8 */
        {0x0a000000u, 0xff000000u}, /* 10/8 */
        {0x64400000u, 0xffc00000u}, /* 100.64/10 */
        {0x7f000000u, 0xff000000u}, /* 127/8 */
        {0xa9fe0000u, 0xffff0000u}, /* 169.254/16 */
        {0xac100000u, 0xfff00000u}, /* 172.16/12 */
        {0xc0000000u, 0xffffff00u}, /* 192.0.0/24 */
        {0xc0a80000u, 0xffff0000u}, /* 192.168/16 */
        {0xc6120000u, 0xfffe0000u}, /* 198.18/15 */
        {0xe0000000u, 0xe0000000u}, /* 224/3: multicast, reserved, broadcast */
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(nets); i++)
        if ((a & nets[i].mask) == nets[i].net)
            return 1;
    return 0;
}

/* Whether a callback may not reach sa: the IPv4 ranges above, and for IPv6 the unspecified and
 * loopback addresses, IPv4-mapped/-compatible and NAT64 forms of internal IPv4, link-local
 * (fe80::/10), unique local (fc00::/7), site-local (fec0::/10) and multicast. Any other family
 * is internal (a callback is http or https over IP). */
static int addr_internal(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ipv4_internal(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return 1;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero[12] = {0}, mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
                         nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
    if (memcmp(b, zero, 12) == 0) /* ::, ::1 and the deprecated IPv4-compatible form */
        return v4 <= 1 || ipv4_internal(v4);
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return ipv4_internal(v4);
    return (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||
           (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) || b[0] == 0xff;
}

/* Checks a callback_url's host: 0 when every address it resolves to is public, else -1 with the
 * reason in msg. Resolves on the calling thread, for as long as the resolver's own timeouts allow
 * (seconds): so it runs on a video worker (run_sync), never on a network thread, where a slow
 * DNS server would stall every connection that thread serves. */
static int callback_url_check(const char *url, char *msg, size_t n)
{
    CURLU *u = curl_url();
    char *host = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        snprintf(msg, n, "callback_url is not a URL with a host");
        curl_free(host);
        curl_url_cleanup(u);
        return -1;
    }
    /* An IPv6 literal comes back in brackets. */
    char name[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
        snprintf(name, sizeof name, "%.*s", (int)(hl - 2), host + 1);
    else
        snprintf(name, sizeof name, "%s", host);
    curl_free(host);
    curl_url_cleanup(u);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gr = getaddrinfo(name, NULL, &hints, &res);
    if (gr != 0 || !res) {
        snprintf(msg, n, "callback_url host '%s' does not resolve (%s)", name, gai_strerror(gr));
        return -1;
    }
    int rc = 0;
    for (const struct addrinfo *ai = res; ai && !rc; ai = ai->ai_next) {
        if (!addr_internal(ai->ai_addr))
            continue;
        char a[INET6_ADDRSTRLEN] = "?";
        const void *p = ai->ai_family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)ai->ai_addr)->sin_addr
                            : (const void *)&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        inet_ntop(ai->ai_family, p, a, sizeof a);
        snprintf(msg, n,
                 "callback_url must reach a public address: '%s' is %s, a loopback, private, "
                 "link-local or reserved address (rule: video_callback_allow_private is off)",
                 name, a);
        rc = -1;
    }
    freeaddrinfo(res);
    return rc;
}

/* The callback's connections: a non-public address is refused here too (the name may resolve
 * differently now than when the job was submitted). */
static curl_socket_t callback_open_socket(void *ud, curlsocktype purpose,
                                          struct curl_sockaddr *addr)
{
    server_video *v = ud;
    (void)purpose;
    if (!v->s->cfg->video_callback_allow_private && addr_internal(&addr->addr)) {
        if (v->m_limits)
            obs_inc(v->m_limits, OBS_LABELS("callback_address"));
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

/* POSTs the finished job's JSON to its callback_url: SERVER_VIDEO_CALLBACK_ATTEMPTS tries at
 * most, the second only after a network error or a 5xx. Runs on the worker. */
static void job_callback(server_video *v, const char *job_id, const char *url)
{
    vg_arena *a = vg_arena_new(0);
    store_job j;
    if (!a || store_job_get(v->s->st, NULL, job_id, a, &j) != VG_OK) {
        vg_arena_free(a);
        return;
    }
    json_t *o = job_json(&j);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    CURL *c = body ? curl_easy_init() : NULL;
    for (int i = 0; c && i < SERVER_VIDEO_CALLBACK_ATTEMPTS; i++) {
        if (i)
            usleep(SERVER_VIDEO_CALLBACK_RETRY_MS * 1000);
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)v->s->cfg->video_callback_timeout_ms);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, callback_open_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, v);
        CURLcode cr = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_slist_free_all(h);
        if (cr == CURLE_OK && code < 500) {
            if (code >= 300)
                VG_WARN("video", "job %s: callback answered %ld", job_id, code);
            break;
        }
        VG_WARN("video", "job %s: callback failed (%s, status %ld)", job_id,
                cr == CURLE_OK ? "server error" : curl_easy_strerror(cr), code);
    }
    if (c)
        curl_easy_cleanup(c);
    free(body);
    vg_arena_free(a);
}

static void enqueue(server_video *v, vtask *t)
{
    pthread_mutex_lock(&v->mu);
    t->next = NULL;
    vtask **head = t->kind == VT_JOB ? &v->job_head : &v->sync_head;
    vtask **tail = t->kind == VT_JOB ? &v->job_tail : &v->sync_tail;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
    if (t->kind == VT_JOB)
        v->jobs_queued++;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

static int enqueue_job(server_video *v, const char *id)
{
    vtask *t = vg_calloc(1, sizeof *t);
    if (!t)
        return vg_err_set(VG_ENOMEM, "out of memory");
    t->kind = VT_JOB;
    snprintf(t->job_id, sizeof t->job_id, "%s", id);
    enqueue(v, t);
    return VG_OK;
}

/* A sync analysis too long to answer directly becomes a job: bytes to a 0600 file, the row
 * committed, then queued. Replies 202 (or the failure). */
static void make_job(server_video *v, vtask *t)
{
    server *s = v->s;
    http_req *req = t->req;
    pthread_mutex_lock(&v->mu);
    int full = v->jobs_queued >= (size_t)s->cfg->video_max_queued_jobs;
    pthread_mutex_unlock(&v->mu);
    if (full) {
        if (v->m_jobs)
            obs_inc(v->m_jobs, OBS_LABELS("refused"));
        http_reply_error(req, 503, NULL, "%lld video jobs are queued (video_max_queued_jobs)",
                         (long long)s->cfg->video_max_queued_jobs);
        return;
    }
    uint8_t rnd[16];
    char hex[33], rel[64], path[4200];
    vg_random_bytes(rnd, sizeof rnd);
    vg_hex_encode(rnd, sizeof rnd, hex);
    snprintf(rel, sizeof rel, "%s/%s.video", SERVER_VIDEO_JOBS_DIR, hex);
    snprintf(path, sizeof path, "%s/%s", s->cfg->data_dir, rel);
    json_t *p = json_pack("{s:o,s:o,s:b,s:s,s:o}", "source_url", server__str(t->source_url),
                          "profile_id", server__str(t->profile_id), "store", t->store, "level",
                          vg_level_name(t->level), "callback_url", server__str(t->callback_url));
    char *params = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    char id[STORE_ID_MAX];
    int rc = params ? vg_write_file_atomic(path, t->bytes, t->len) : VG_ENOMEM;
    if (rc == VG_OK) {
        rc = store_job_create(s->st, t->tenant, params, rel, t->len, v->node, v->lease_ms, id);
        if (rc != VG_OK)
            unlink(path);
    }
    free(params);
    if (rc == VG_OK)
        rc = enqueue_job(v, id); /* on failure the row stays queued: the next start runs it */
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot queue the video job");
        return;
    }
    if (v->m_jobs)
        obs_inc(v->m_jobs, OBS_LABELS("queued"));
    char loc[96];
    snprintf(loc, sizeof loc, "/api/v1/jobs/%s", id);
    http_reply_header(req, "Location", loc);
    store_job j;
    if (store_job_get(s->st, NULL, id, http_req_arena(req), &j) == VG_OK)
        http_reply_json(req, 202, job_json(&j));
    else
        http_reply_json(req, 202, json_pack("{s:s,s:s}", "id", id, "state", "queued"));
}

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && *v ? v : NULL;
}

static void run_job(server_video *v, face_engine **fe, const char *id)
{
    server *s = v->s;
    const conf_settings *c = s->cfg;
    int started = 0;
    if (store_job_start(s->st, id, v->node, v->lease_ms, (int)c->video_job_max_attempts,
                        &started) != VG_OK) {
        VG_WARN("video", "job %s: %s", id, vg_err_msg());
        return;
    }
    vg_arena *a = vg_arena_new(0);
    store_job j;
    if (!a || store_job_get(s->st, NULL, id, a, &j) != VG_OK) {
        VG_ERROR("video", "job %s: %s", id, vg_err_msg());
        vg_arena_free(a);
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", c->data_dir, j.file);
    json_t *p = json_loads(j.params, 0, NULL);
    const char *cb = p ? jstr(p, "callback_url") : NULL;
    if (!started) { /* failed for its attempts */
        if (v->m_jobs)
            obs_inc(v->m_jobs, OBS_LABELS("failed"));
        unlink(path);
        if (cb)
            job_callback(v, id, cb);
        json_decref(p);
        vg_arena_free(a);
        return;
    }
    if (c->fault_video_job_delay_ms > 0)
        usleep((useconds_t)c->fault_video_job_delay_ms * 1000);
    uint8_t *bytes = NULL;
    size_t len = 0;
    video_hash h = {0};
    json_t *answer = NULL;
    char msg[512];
    const char *code = NULL;
    int status = 500;
    vg_err_clear();
    int rc = p ? VG_OK : vg_err_set(VG_ECORRUPT, "job parameters are unreadable");
    if (rc == VG_OK && (rc = vg_read_file(path, (size_t)c->max_body_bytes, &bytes, &len)) != VG_OK)
        rc = vg_err_set(rc, "the uploaded video of this job is gone (%s)", vg_err_msg());
    if (rc == VG_OK) {
        video_hash_opts o;
        hash_opts(s, &o, c->video_max_duration_s);
        hash_opts_faces(s, &o);
        uint64_t t0 = vg_now_ns();
        rc = video_hash_buffer(bytes, len, &o, &h);
        if (rc != VG_OK) {
            status = video_error(v, rc, msg, sizeof msg, &code);
        } else {
            store_job_progress(s->st, id, v->node, 0.6);
            vg_level level = (vg_level)c->default_level;
            const char *lv = jstr(p, "level");
            if (lv)
                vg_level_parse(lv, &level);
            vg_err_clear();
            rc = analyse_hashed(s, fe, j.tenant_id, jstr(p, "profile_id"), jstr(p, "source_url"),
                                json_is_true(json_object_get(p, "store")), level, bytes, len, &h,
                                (vg_now_ns() - t0) / 1000, &answer);
        }
    }
    if (rc != VG_OK && !code) {
        status = http_status_of(rc);
        snprintf(msg, sizeof msg, "%s", vg_err_msg()[0] ? vg_err_msg() : vg_strerror(rc));
    }
    char *result = answer ? json_dumps(answer, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    int frc =
        rc == VG_OK && result
            ? store_job_finish(s->st, id, v->node, STORE_JOB_DONE, result, NULL, 0)
            : store_job_finish(s->st, id, v->node, STORE_JOB_FAILED, NULL,
                               rc == VG_OK ? "out of memory" : msg, rc == VG_OK ? 500 : status);
    if (frc != VG_OK)
        VG_ERROR("video", "job %s: cannot record its end: %s", id, vg_err_msg());
    else if (v->m_jobs)
        obs_inc(v->m_jobs, OBS_LABELS(rc == VG_OK && result ? "done" : "failed"));
    unlink(path);
    free(result);
    json_decref(answer);
    video_hash_free(&h);
    vg_free(bytes);
    if (cb && frc == VG_OK)
        job_callback(v, id, cb);
    json_decref(p);
    vg_arena_free(a);
}

/* ---- sync tasks ----------------------------------------------------------------------------- */

static void run_sync(server_video *v, face_engine **fe, vtask *t)
{
    server *s = v->s;
    http_req *req = t->req;
    const conf_settings *c = s->cfg;
    double max_s = c->video_max_duration_s;
    int limited = t->kind == VT_ANALYZE && c->video_sync_max_s < max_s;
    char why[512];
    if (t->callback_url && !c->video_callback_allow_private &&
        callback_url_check(t->callback_url, why, sizeof why) != 0) {
        if (v->m_limits)
            obs_inc(v->m_limits, OBS_LABELS("callback_address"));
        http_reply_error(req, 422, "invalid_field", "%s", why);
        http_req_resume(req);
        return;
    }
    video_hash_opts o;
    hash_opts(s, &o, limited ? c->video_sync_max_s : max_s);
    if (t->kind == VT_ANALYZE)
        hash_opts_faces(s, &o);
    video_hash h;
    vg_err_clear();
    uint64_t t0 = vg_now_ns();
    int rc = video_hash_buffer(t->bytes, t->len, &o, &h);
    uint64_t hash_us = (vg_now_ns() - t0) / 1000;
    if (rc != VG_OK) {
        if (limited && video_last_limit() == VIDEO_LIMIT_DURATION) {
            make_job(v, t);
        } else {
            char msg[512];
            const char *code;
            int st = video_error(v, rc, msg, sizeof msg, &code);
            http_reply_error(req, st, code, "%s", msg);
        }
        http_req_resume(req);
        return;
    }
    if (t->kind == VT_REFERENCE) {
        analyze_features f;
        memset(&f, 0, sizeof f);
        vg_sha256(t->bytes, t->len, f.sha256);
        t->nr.features = &f;
        t->nr.video = &h;
        store_reference r;
        vg_err_clear();
        rc = catalog_reference_add(s->cat, t->tenant, &t->nr, http_req_arena(req), &r);
        if (rc != VG_OK)
            server__reply_err(req, rc, "cannot store the reference");
        else
            http_reply_json(req, 201, server__reference_json(&r));
    } else {
        json_t *answer = NULL;
        vg_err_clear();
        rc = analyse_hashed(s, fe, t->tenant, t->profile_id, t->source_url, t->store, t->level,
                            t->bytes, t->len, &h, hash_us, &answer);
        if (rc != VG_OK)
            server__reply_err(req, rc, "cannot analyse the video");
        else
            http_reply_json(req, t->store ? 201 : 200, answer);
    }
    video_hash_free(&h);
    http_req_resume(req);
}

static void *worker(void *arg)
{
    server_video *v = arg;
    face_engine *fe = NULL; /* this worker's, for faces in video: made on first use */
    pthread_mutex_lock(&v->mu);
    for (;;) {
        while (!v->stop && !v->sync_head && !v->job_head)
            pthread_cond_wait(&v->cv, &v->mu);
        if (v->stop)
            break;
        vtask *t;
        if (v->sync_head) { /* a client is waiting on these */
            t = v->sync_head;
            if (!(v->sync_head = t->next))
                v->sync_tail = NULL;
        } else {
            t = v->job_head;
            if (!(v->job_head = t->next))
                v->job_tail = NULL;
            v->jobs_queued--;
        }
        pthread_mutex_unlock(&v->mu);
        if (t->kind == VT_JOB) {
            run_job(v, &fe, t->job_id);
            vg_free(t);
        } else {
            run_sync(v, &fe, t);
        }
        pthread_mutex_lock(&v->mu);
    }
    pthread_mutex_unlock(&v->mu);
    face_engine_free(fe);
    return NULL;
}

/* ---- node ownership ------------------------------------------------------------------------- */

/* Takes over the jobs whose lease ran out (own: this node's own, what its previous process
 * left, at start) and, with queue, queues them here (at start store_job_queued does). Counts the
 * jobs taken from another node in vigil_video_job_takeovers_total, the failed ones in
 * vigil_video_jobs_total. */
static int take_over(server_video *v, int own, int queue, size_t *out_n)
{
    char ids[SERVER_VIDEO_TAKEOVER_MAX_JOBS][STORE_ID_MAX];
    size_t n = 0, failed = 0;
    int rc =
        store_job_takeover(v->s->st, v->node, v->lease_ms, (int)v->s->cfg->video_job_max_attempts,
                           own, ids, VG_ARRAY_LEN(ids), &n, &failed);
    if (rc != VG_OK)
        return rc;
    if (failed && v->m_jobs)
        obs_add(v->m_jobs, OBS_LABELS("failed"), failed);
    for (size_t i = 0; queue && i < n && rc == VG_OK; i++)
        rc = enqueue_job(v, ids[i]);
    if (!own && n && v->m_takeovers)
        obs_add(v->m_takeovers, NULL, n);
    if (n || failed)
        VG_INFO("video", "jobs: took over %zu %s, failed %zu after their attempts", n,
                own ? "of this node's previous process" : "whose node stopped renewing them",
                failed);
    if (out_n)
        *out_n = n;
    return rc;
}

/* The heartbeat: every third of the lease, renews this node's open jobs and takes over the jobs
 * of nodes that stopped renewing theirs. A failed beat (database down) is retried at the next;
 * the lease is three beats long, so one missed beat loses nothing. */
static void *heartbeat(void *arg)
{
    server_video *v = arg;
    uint64_t beat_ms = (uint64_t)v->lease_ms / 3;
    pthread_mutex_lock(&v->mu);
    while (!v->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (beat_ms % 1000) * 1000000ull;
        ts.tv_sec += (time_t)(beat_ms / 1000 + ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&v->hb_cv, &v->mu, &ts);
        if (v->stop)
            break;
        pthread_mutex_unlock(&v->mu);
        if (store_job_renew(v->s->st, v->node, v->lease_ms, NULL) != VG_OK ||
            take_over(v, 0, 1, NULL) != VG_OK)
            VG_WARN("video", "job heartbeat: %s", vg_err_msg());
        pthread_mutex_lock(&v->mu);
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static void submit(server *s, vtask *t)
{
    http_req_defer(t->req);
    enqueue(s->video, t);
}

static vtask *task_new(http_req *req, vt_kind kind, const uint8_t *bytes, size_t len)
{
    vtask *t = vg_arena_alloc(http_req_arena(req), sizeof *t);
    if (!t) {
        http_reply_error(req, 503, NULL, "out of memory");
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->req = req;
    t->bytes = bytes;
    t->len = len;
    snprintf(t->tenant, sizeof t->tenant, "%s", server__tenant(req));
    return t;
}

int server__video_reference(server *s, http_req *req, const char *profile_id)
{
    srv_input in;
    const uint8_t *bytes;
    size_t len;
    int r = server__video_input(req, &in, &bytes, &len);
    if (r <= 0)
        return r;
    store_profile p;
    int rc = store_profile_get(s->st, server__tenant(req), profile_id, http_req_arena(req), &p);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such profile");
        return -1;
    }
    const char *kind = server__input_field(&in, "kind");
    if (!kind || strcmp(kind, "work") != 0) {
        http_reply_error(req, 422, "invalid_field",
                         "a video reference must be of kind 'work' (a likeness is a photo)");
        return -1;
    }
    vtask *t = task_new(req, VT_REFERENCE, bytes, len);
    if (!t)
        return -1;
    t->nr.profile_id = profile_id;
    t->nr.kind = STORE_REF_WORK;
    t->nr.title = server__input_field(&in, "title");
    t->nr.description = server__input_field(&in, "description");
    t->nr.original_url = server__input_field(&in, "original_url");
    t->nr.copyright_holder = server__input_field(&in, "copyright_holder");
    submit(s, t);
    return 1;
}

int server__video_analyze(server *s, http_req *req)
{
    srv_input in;
    const uint8_t *bytes;
    size_t len;
    int r = server__video_input(req, &in, &bytes, &len);
    if (r <= 0)
        return r;
    analyze_request ar;
    vtask *t = task_new(req, VT_ANALYZE, bytes, len);
    if (!t)
        return -1;
    /* the image analysis's own option parsing: the same fields, errors and checks */
    if (server__analyze_fields(s, &in, &ar, &t->source_url, &t->store))
        return -1;
    t->profile_id = ar.profile_id;
    t->level = ar.level;
    t->callback_url = server__input_field(&in, "callback_url");
    if (t->callback_url && ((strncmp(t->callback_url, "http://", 7) != 0 &&
                             strncmp(t->callback_url, "https://", 8) != 0) ||
                            strlen(t->callback_url) >= STORE_URL_MAX_BYTES)) {
        http_reply_error(req, 422, "invalid_field",
                         "callback_url must be an http:// or https:// URL of under %d bytes",
                         STORE_URL_MAX_BYTES);
        return -1;
    }
    /* The callback's host is resolved and checked on the video worker (run_sync). */
    submit(s, t);
    return 1;
}

void server__api_job_get(http_req *req, void *ud)
{
    server *s = ud;
    store_job j;
    int rc = store_job_get(s->st, server__tenant(req), http_req_param(req, "job_id"),
                           http_req_arena(req), &j);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such job");
        return;
    }
    http_reply_json(req, 200, job_json(&j));
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int server__video_open(server *s)
{
    server_video *v = vg_calloc(1, sizeof *v);
    if (!v)
        return vg_err_set(VG_ENOMEM, "out of memory");
    v->s = s;
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    pthread_cond_init(&v->hb_cv, NULL);
    s->video = v;
    v->lease_ms = (int64_t)s->cfg->video_job_lease_ms;
    if (s->cfg->node_id && s->cfg->node_id[0]) {
        if (strlen(s->cfg->node_id) >= sizeof v->node)
            return vg_err_set(VG_EINVAL, "node_id is longer than %zu bytes", sizeof v->node - 1);
        snprintf(v->node, sizeof v->node, "%s", s->cfg->node_id);
    } else {
        char host[64] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !host[0])
            snprintf(host, sizeof host, "vigil");
        snprintf(v->node, sizeof v->node, "%s-%ld", host, (long)getpid());
    }
    /* before any worker: libcurl's global state is not set up thread-safely on demand */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return vg_err_set(VG_EINTERNAL, "libcurl cannot be initialised");
    v->curl_init = 1;
    int rc = VG_OK;
    if (s->reg) {
        rc = obs_counter_register(s->reg, "vigil_video_limit_hits_total",
                                  "videos refused by a limit (duration, dimension, container, ...)",
                                  "limit", &v->m_limits);
        if (rc == VG_OK)
            rc = obs_counter_register(s->reg, "vigil_video_jobs_total",
                                      "video jobs by outcome (queued, done, failed, refused)",
                                      "outcome", &v->m_jobs);
        if (rc == VG_OK)
            rc = obs_counter_register(s->reg, "vigil_video_job_takeovers_total",
                                      "video jobs this node took over from a node whose lease "
                                      "ran out",
                                      NULL, &v->m_takeovers);
        if (rc != VG_OK)
            return rc;
    }
    snprintf(v->jobs_dir, sizeof v->jobs_dir, "%s/%s", s->cfg->data_dir, SERVER_VIDEO_JOBS_DIR);
    if ((rc = vg_mkdir_p(v->jobs_dir)) != VG_OK)
        return rc;
    /* This node's previous process's jobs (same node_id) and every job whose lease ran out come
     * to this node (or fail after their attempts), then every queued job it owns is queued here,
     * oldest first. */
    size_t n = 0;
    if ((rc = take_over(v, 0, 0, NULL)) != VG_OK || (rc = take_over(v, 1, 0, NULL)) != VG_OK)
        return rc;
    vg_arena *a = vg_arena_new(0);
    char(*ids)[STORE_ID_MAX] = NULL;
    if (!a)
        return vg_err_set(VG_ENOMEM, "out of memory");
    rc = store_job_queued(s->st, v->node, (size_t)s->cfg->video_max_queued_jobs, a, &ids, &n);
    for (size_t i = 0; rc == VG_OK && i < n; i++)
        rc = enqueue_job(v, ids[i]);
    vg_arena_free(a);
    if (rc != VG_OK)
        return rc;
    if (n)
        VG_INFO("video", "jobs: %zu queued on node %s", n, v->node);
    v->threads = vg_calloc((size_t)s->cfg->video_workers, sizeof *v->threads);
    if (!v->threads)
        return vg_err_set(VG_ENOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)s->cfg->video_workers; i++) {
        if (pthread_create(&v->threads[i], NULL, worker, v) != 0)
            return vg_err_set(VG_EINTERNAL, "cannot start a video worker: %s", strerror(errno));
        v->n_threads++;
    }
    if (pthread_create(&v->hb, NULL, heartbeat, v) != 0)
        return vg_err_set(VG_EINTERNAL, "cannot start the job heartbeat: %s", strerror(errno));
    v->hb_started = 1;
    return VG_OK;
}

void server__video_close(server *s)
{
    server_video *v = s->video;
    if (!v)
        return;
    pthread_mutex_lock(&v->mu);
    v->stop = 1;
    pthread_cond_broadcast(&v->cv);
    pthread_cond_signal(&v->hb_cv);
    pthread_mutex_unlock(&v->mu);
    if (v->hb_started)
        pthread_join(v->hb, NULL);
    for (size_t i = 0; i < v->n_threads; i++)
        pthread_join(v->threads[i], NULL);
    /* Waiting clients get 503; queued jobs stay queued in the store for the next start. */
    for (vtask *t = v->sync_head, *next; t; t = next) {
        next = t->next;
        http_reply_error(t->req, 503, NULL, "the server is stopping");
        http_req_resume(t->req);
    }
    for (vtask *t = v->job_head, *next; t; t = next) {
        next = t->next;
        vg_free(t);
    }
    vg_free(v->threads);
    if (v->curl_init)
        curl_global_cleanup();
    pthread_cond_destroy(&v->hb_cv);
    pthread_cond_destroy(&v->cv);
    pthread_mutex_destroy(&v->mu);
    vg_free(v);
    s->video = NULL;
}
