/*
 * analyze: request lifecycle and threads.
 *
 *   caller thread (HTTP network thread, CLI):   sha256, cache lookup
 *        | hit                              | miss
 *        v                                  v
 *   finisher queue  <---- done ----  sched "image" queue -> worker (replica: face engine + pdq)
 *        |                                     decode, PDQ, faces, for a batch of images
 *        v
 *   finisher thread: cache fill, matching, callback (the server's records the evidence through
 *                    the catalog there, waiting for the group commit)
 *
 * Why three kinds of threads: CPU-bound work (decode, networks) runs on exactly as many workers
 * as there are replicas, so it never oversubscribes the cores; the evidence write in the
 * callback waits for an fsync and must not hold a worker while it does, so callbacks run on
 * finisher threads that mostly sleep; and the network threads only hash and look the cache up, so a
 * cached answer never queues behind inference. A hit whose caller records nothing (inline_hit)
 * skips the finisher too: matching and the callback run on the caller's thread.
 */
#include "analyze/analyze_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void analyze_config_default(analyze_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->default_level = VG_LEVEL_BALANCED;
    cfg->pdq_threshold = ANALYZE_DEFAULT_PDQ_THRESHOLD;
    cfg->pdq_min_quality = ANALYZE_DEFAULT_PDQ_MIN_QUALITY;
    cfg->face_threshold = ANALYZE_DEFAULT_FACE_THRESHOLD;
    cfg->max_faces = ANALYZE_DEFAULT_MAX_FACES;
    cfg->max_batch = ANALYZE_DEFAULT_MAX_BATCH;
    cfg->max_delay_us = ANALYZE_DEFAULT_MAX_DELAY_US;
    cfg->queue_capacity = ANALYZE_DEFAULT_QUEUE;
    cfg->deadline_ms = ANALYZE_DEFAULT_DEADLINE_MS;
    cfg->finishers = ANALYZE_DEFAULT_FINISHERS;
    cfg->lone_split = 0; /* on this 2-vCPU VM it did not win: docs/BENCHMARKS.md (perf13) */
}

const char *analyze_model_version(const analyze_ctx *ctx)
{
    return ctx->model_version;
}

/* ---- results -------------------------------------------------------------------------------- */

void analyze_features_free(analyze_features *f)
{
    if (!f)
        return;
    vg_free(f->faces);
    memset(f, 0, sizeof *f);
}

void analyze_result_free(analyze_result *r)
{
    if (!r)
        return;
    analyze_features_free(&r->features);
    vg_free(r->matches);
    memset(r, 0, sizeof *r);
}

/* ---- finishers ------------------------------------------------------------------------------ */

static void finisher_push(analyze_ctx *ctx, analyze_job *job)
{
    pthread_mutex_lock(&ctx->fmu);
    job->next = NULL;
    if (ctx->ftail)
        ctx->ftail->next = job;
    else
        ctx->fhead = job;
    ctx->ftail = job;
    pthread_cond_signal(&ctx->fcv);
    pthread_mutex_unlock(&ctx->fmu);
}

static void cache_fill(analyze_ctx *ctx, analyze_job *job)
{
    if (!ctx->deps.cache || !job->have_key || job->cached)
        return;
    uint8_t *blob = NULL;
    size_t len = 0;
    if (analyze__features_encode(&job->out->features, &blob, &len) == VG_OK)
        cache_put(ctx->deps.cache, &job->key, blob, len); /* a cache failure is not ours */
    vg_free(blob);
}

/* Runs the last stages of one job and its callback, then frees the job. */
static void finish(analyze_ctx *ctx, analyze_job *job)
{
    analyze_result *out = job->out;
    int rc = job->status;
    if (rc == VG_OK)
        cache_fill(ctx, job);
    if (rc == VG_OK && !job->features_only) {
        vg_err_clear();
        rc = analyze__match(ctx, job);
        if (rc != VG_OK)
            snprintf(job->errmsg, sizeof job->errmsg, "%s", vg_err_msg());
    }
    out->timings.total_us = (vg_now_ns() - job->t0_ns) / 1000;
    /* Always this job's own detail (never a previous job's left on this thread): the callback
     * may answer it to the job's client. */
    char detail[sizeof job->errmsg];
    if (rc == VG_OK) {
        atomic_fetch_add(&ctx->n_ok, 1);
        atomic_fetch_add(&ctx->n_faces, out->features.n_faces);
    } else {
        if (rc == VG_ETIMEDOUT)
            atomic_fetch_add(&ctx->n_expired, 1);
        else if (rc == VG_ECANCELED)
            atomic_fetch_add(&ctx->n_canceled, 1);
        atomic_fetch_add(&ctx->n_failed, 1);
        snprintf(detail, sizeof detail, "%s", job->errmsg[0] ? job->errmsg : vg_strerror(rc));
        analyze_result_free(out);
    }
    analyze_done_fn done = job->done;
    void *arg = job->arg;
    vg_free(job);
    done(arg, rc, rc == VG_OK ? NULL : detail);
}

static void *finisher_main(void *p)
{
    analyze_ctx *ctx = p;
    pthread_mutex_lock(&ctx->fmu);
    for (;;) {
        while (!ctx->fhead && !ctx->fstop)
            pthread_cond_wait(&ctx->fcv, &ctx->fmu);
        analyze_job *job = ctx->fhead;
        if (!job)
            break; /* stopping and drained */
        ctx->fhead = job->next;
        if (!ctx->fhead)
            ctx->ftail = NULL;
        pthread_mutex_unlock(&ctx->fmu);
        vg_err_clear();
        finish(ctx, job);
        pthread_mutex_lock(&ctx->fmu);
    }
    pthread_mutex_unlock(&ctx->fmu);
    return NULL;
}

/* ---- inference workers (sched) -------------------------------------------------------------- */

static int replica_new(void *user, unsigned index, void **out)
{
    analyze_ctx *ctx = user;
    (void)index;
    analyze_replica *rep = vg_calloc(1, sizeof *rep);
    if (!rep)
        return VG_ENOMEM;
    rep->h.pdq = pdq_ctx_new();
    if (!rep->h.pdq) {
        vg_free(rep);
        return VG_ENOMEM;
    }
    if (ctx->deps.models) {
        /* One OpenMP thread per replica: parallelism comes from the replicas themselves, which
         * keeps N replicas on N cores without oversubscription. */
        face_engine_opts eo = {.backend = NN_BACKEND_DNNL, .threads = 1};
        int rc = face_engine_new(ctx->deps.models, &eo, &rep->fe);
        if (!rc)
            rc = analyze__warm(ctx, rep);
        if (rc) {
            face_engine_free(rep->fe);
            analyze__hasher_free(&rep->h);
            vg_free(rep);
            return rc;
        }
    }
    *out = rep;
    return VG_OK;
}

static void replica_free(void *user, void *p)
{
    (void)user;
    analyze_replica *rep = p;
    if (!rep)
        return;
    face_engine_free(rep->fe);
    analyze__hasher_free(&rep->h);
    vg_free(rep);
}

/* ---- lone split: a lone request's hashing beside its face networks --------------------------
 *
 * One request at a time leaves a core idle: the worker decodes, hashes (PDQ and the copy
 * regions, 1-4 ms) and then runs the networks, all on one thread. When a batch holds one image
 * and the scheduler has nothing else queued or running (sched_lone), the worker hands the
 * hashing to this helper thread after the decode and runs the networks meanwhile. Under load
 * sched_lone is false (every core has a worker), so the helper never competes with them. */

static void *assist_main(void *arg)
{
    analyze_assist *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->has_work && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stop)
            break;
        analyze_job *job = a->job;
        const img_image *im = a->im;
        pthread_mutex_unlock(&a->mu);
        vg_err_clear();
        int rc = analyze__hash(&a->h, job, im);
        pthread_mutex_lock(&a->mu);
        a->status = rc;
        if (rc)
            snprintf(a->errmsg, sizeof a->errmsg, "%s", vg_err_msg());
        a->has_work = 0;
        a->done = 1;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void assist_free(analyze_assist *a)
{
    if (!a)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
    }
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    analyze__hasher_free(&a->h);
    vg_free(a);
}

static int assist_new(analyze_assist **out)
{
    analyze_assist *a = vg_calloc(1, sizeof *a);
    if (!a)
        return VG_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->h.pdq = pdq_ctx_new();
    if (!a->h.pdq || pthread_create(&a->thread, NULL, assist_main, a) != 0) {
        assist_free(a);
        return vg_err_set(VG_ENOMEM, "analyze: cannot start the lone-split helper thread");
    }
    a->started = 1;
    *out = a;
    return VG_OK;
}

/* Claims the helper for one batch of n images when it is lone; 1 when claimed. */
static int assist_claim(analyze_ctx *ctx, size_t n)
{
    analyze_assist *a = ctx->assist;
    if (!a || n != 1 || !ctx->deps.models || !sched_lone(ctx->sch))
        return 0;
    return atomic_exchange(&a->claimed, 1) == 0;
}

static void assist_start(analyze_assist *a, analyze_job *job, const img_image *im)
{
    pthread_mutex_lock(&a->mu);
    a->job = job;
    a->im = im;
    a->done = 0;
    a->has_work = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Waits for the hashing started by assist_start; its status (message in errmsg). */
static int assist_wait(analyze_assist *a, char *errmsg, size_t errmsg_len)
{
    pthread_mutex_lock(&a->mu);
    while (!a->done)
        pthread_cond_wait(&a->cv, &a->mu);
    const int rc = a->status;
    if (rc)
        snprintf(errmsg, errmsg_len, "%s", a->errmsg);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* Test-only fault injection: fails the k-th computed image when floor(k * rate) steps up, so
 * exactly the configured share fails, evenly spread. */
static int fault_hit(analyze_ctx *ctx)
{
    double rate = ctx->cfg.fault_error_rate;
    if (!(rate > 0))
        return 0;
    uint64_t k = atomic_fetch_add(&ctx->fault_seq, 1);
    return (uint64_t)((double)(k + 1) * rate) > (uint64_t)((double)k * rate);
}

/* One batch of images on one replica: decode and hash each, then the faces of all of them per
 * level in shared network calls (dynamic batching across concurrent requests). */
static int run_batch(void *replica, void *kind_user, void *const *items, size_t n, int *status)
{
    analyze_ctx *ctx = kind_user;
    analyze_replica *rep = replica;
    img_image *ims = vg_calloc(n, sizeof *ims);
    analyze_job **group = vg_calloc(n, sizeof *group);
    img_image *gims = vg_calloc(n, sizeof *gims);
    int *gstatus = vg_calloc(n, sizeof *gstatus);
    if (!ims || !group || !gims || !gstatus) {
        vg_free(ims);
        vg_free(group);
        vg_free(gims);
        vg_free(gstatus);
        return VG_ENOMEM;
    }
    /* A lone image: decode here, hash on the helper while the networks run here. */
    int split = assist_claim(ctx, n), split_started = 0;
    for (size_t i = 0; i < n; i++) {
        analyze_job *job = items[i];
        vg_err_clear();
        if (ctx->cfg.fault_stage_delay_ms) {
            uint32_t ms = ctx->cfg.fault_stage_delay_ms;
            struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
            nanosleep(&ts, NULL);
        }
        status[i] = analyze__prepare(ctx, rep, job, &ims[i], split);
        if (status[i] == VG_OK && fault_hit(ctx)) {
            img_image_free(&ims[i]);
            status[i] = vg_err_set(VG_EINTERNAL,
                                   "injected analysis fault (fault_analysis_error_rate "
                                   "%.3g, test only)",
                                   ctx->cfg.fault_error_rate);
        }
        if (status[i]) {
            snprintf(job->errmsg, sizeof job->errmsg, "%s", vg_err_msg());
            img_limit_kind k = img_last_limit(); /* this thread's last img call */
            if (k > IMG_LIMIT_NONE && k < IMG_LIMIT_COUNT)
                atomic_fetch_add(&ctx->n_img_limit[k], 1);
        }
    }
    if (split && status[0] == VG_OK) {
        ((analyze_job *)items[0])->out->timings.pdq_beside_faces = 1;
        assist_start(ctx->assist, items[0], &ims[0]);
        split_started = 1;
        atomic_fetch_add(&ctx->n_lone_split, 1);
    }
    /* The networks' threads, per batch: every core for a lone image (none is busy), one per
     * worker otherwise (each core has a worker then). */
    if (rep->fe)
        face_engine_set_threads(rep->fe, !split && n == 1 && ctx->cfg.lone_threads > 1 &&
                                                 sched_lone(ctx->sch)
                                             ? (int)ctx->cfg.lone_threads
                                             : 1);
    for (int level = 0; ctx->deps.models && level <= VG_LEVEL_MEMORY; level++) {
        size_t g = 0;
        for (size_t i = 0; i < n; i++) {
            analyze_job *job = items[i];
            if (status[i] == VG_OK && (int)job->req.level == level) {
                group[g] = job;
                gims[g++] = ims[i];
            }
        }
        if (!g)
            continue;
        vg_err_clear();
        analyze__faces(ctx, rep, (vg_level)level, group, gims, g, gstatus);
        for (size_t i = 0, k = 0; i < n; i++) {
            analyze_job *job = items[i];
            if (status[i] != VG_OK || (int)job->req.level != level)
                continue;
            status[i] = gstatus[k++];
            if (status[i])
                snprintf(job->errmsg, sizeof job->errmsg, "%s", vg_err_msg());
        }
    }
    if (split_started) {
        analyze_job *job = items[0];
        char msg[sizeof job->errmsg];
        const int hrc = assist_wait(ctx->assist, msg, sizeof msg);
        if (hrc && status[0] == VG_OK) {
            status[0] = hrc;
            snprintf(job->errmsg, sizeof job->errmsg, "%s", msg);
        }
    }
    if (split)
        atomic_store(&ctx->assist->claimed, 0);
    for (size_t i = 0; i < n; i++)
        img_image_free(&ims[i]);
    vg_free(ims);
    vg_free(group);
    vg_free(gims);
    vg_free(gstatus);
    return VG_OK;
}

static void sched_done(void *arg, int status)
{
    analyze_job *job = arg;
    job->status = status;
    if (status == VG_ETIMEDOUT)
        snprintf(job->errmsg, sizeof job->errmsg,
                 "request deadline passed after %llu ms in the analysis queue, before analysis "
                 "started",
                 (unsigned long long)((vg_now_ns() - job->t0_ns) / 1000000u));
    else if (status == VG_ECANCELED)
        snprintf(job->errmsg, sizeof job->errmsg, "server shutting down");
    finisher_push(job->ctx, job);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void build_model_version(analyze_ctx *ctx)
{
    snprintf(ctx->model_version, sizeof ctx->model_version,
             "vigil-features-%d;pdq-fast-%d;faces=%s", ANALYZE_FEATURES_VERSION,
             PDQ_FAST_MIN_SIDE_PX, ctx->deps.models ? "face-api-1.7.15" : "off");
}

int analyze_ctx_new(const analyze_config *cfg, const analyze_deps *deps, analyze_ctx **out)
{
    if (deps && deps->index && !deps->resolve)
        return vg_err_set(VG_EINVAL, "analyze: an index needs a reference resolver");
    analyze_config c;
    if (cfg)
        c = *cfg;
    else
        analyze_config_default(&c);
    if ((unsigned)c.default_level > VG_LEVEL_MEMORY)
        return vg_err_set(VG_EINVAL, "analyze: bad default level");
    if (c.pdq_threshold < 0 || c.pdq_threshold > 256)
        return vg_err_set(VG_EINVAL, "analyze: pdq threshold %d not in 0..256", c.pdq_threshold);
    if (!(c.face_threshold > 0.0f && c.face_threshold < 4.0f))
        return vg_err_set(VG_EINVAL, "analyze: face threshold must be in (0, 4)");
    if (c.max_batch == 0 || c.max_batch > SCHED_MAX_BATCH)
        return vg_err_set(VG_EINVAL, "analyze: max_batch %u not in 1..%d", c.max_batch,
                          SCHED_MAX_BATCH);
    if (c.queue_capacity == 0 || c.queue_capacity > SCHED_MAX_QUEUE_CAPACITY)
        return vg_err_set(VG_EINVAL, "analyze: queue capacity %u out of range", c.queue_capacity);
    if (!(c.fault_error_rate >= 0.0 && c.fault_error_rate <= 1.0))
        return vg_err_set(VG_EINVAL, "analyze: fault_error_rate must be in 0..1");
    if (c.max_faces == 0 || c.max_faces > FACE_DEFAULT_MAX_FACES)
        return vg_err_set(VG_EINVAL, "analyze: max_faces must be 1..%d", FACE_DEFAULT_MAX_FACES);
    if (c.finishers == 0)
        c.finishers = ANALYZE_DEFAULT_FINISHERS;
    if (c.deadline_ms == 0)
        c.deadline_ms = ANALYZE_DEFAULT_DEADLINE_MS;
    if (c.lone_threads == 0)
        c.lone_threads = VG_MIN((unsigned)vg_cpu_count(), ANALYZE_LONE_THREADS_MAX);
    if (c.tenant_quota == 0) {
        c.tenant_quota = c.queue_capacity / ANALYZE_DEFAULT_TENANT_QUOTA_DIVISOR;
        if (c.tenant_quota == 0)
            c.tenant_quota = 1;
    }

    analyze_ctx *ctx = vg_calloc(1, sizeof *ctx);
    if (!ctx)
        return VG_ENOMEM;
    ctx->cfg = c;
    if (deps)
        ctx->deps = *deps;
    img_limits_default(&ctx->limits);
    if (c.max_input_bytes)
        ctx->limits.max_input_bytes = c.max_input_bytes;
    if (c.max_pixels)
        ctx->limits.max_pixels = c.max_pixels;
    if (c.max_dimension)
        ctx->limits.max_dimension = c.max_dimension;
    if (c.max_jpeg_scans)
        ctx->limits.max_jpeg_scans = c.max_jpeg_scans;
    if (c.max_lossless_pixels)
        ctx->limits.max_lossless_pixels = c.max_lossless_pixels;
    if (c.max_decode_work)
        ctx->limits.max_decode_work = c.max_decode_work;
    if (c.max_decode_ratio)
        ctx->limits.max_decode_ratio = c.max_decode_ratio;
    build_model_version(ctx);
    pthread_mutex_init(&ctx->fmu, NULL);
    pthread_cond_init(&ctx->fcv, NULL);

    ctx->fthreads = vg_calloc(c.finishers, sizeof *ctx->fthreads);
    if (!ctx->fthreads) {
        analyze_ctx_free(ctx);
        return VG_ENOMEM;
    }
    for (unsigned i = 0; i < c.finishers; i++) {
        if (pthread_create(&ctx->fthreads[i], NULL, finisher_main, ctx) != 0) {
            analyze_ctx_free(ctx);
            return vg_err_set(VG_ENOMEM, "analyze: cannot start finisher thread");
        }
        ctx->nfthreads++;
    }

    if (c.lone_split && deps && deps->models) {
        int arc = assist_new(&ctx->assist);
        if (arc) {
            analyze_ctx_free(ctx);
            return arc;
        }
    }
    sched_kind_config kind;
    sched_kind_config_init(&kind);
    kind.name = "image";
    kind.run = run_batch;
    kind.user = ctx;
    kind.max_batch = c.max_batch;
    kind.max_delay_us = c.max_delay_us;
    kind.queue_capacity = c.queue_capacity;
    kind.tenant_quota = c.tenant_quota;
    sched_config sc;
    sched_config_init(&sc);
    sc.kinds = &kind;
    sc.n_kinds = 1;
    sc.replica_new = replica_new;
    sc.replica_free = replica_free;
    sc.replica_user = ctx;
    if (c.min_workers)
        sc.min_replicas = c.min_workers;
    if (c.max_workers)
        sc.max_replicas = c.max_workers;
    if (sc.max_replicas < sc.min_replicas)
        sc.max_replicas = sc.min_replicas;
    sc.default_deadline_ms = c.deadline_ms;
    int rc = sched_new(&sc, &ctx->sch);
    if (rc) {
        analyze_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return VG_OK;
}

void analyze_shutdown(analyze_ctx *ctx)
{
    /* Workers first: their completions feed the finishers, which must still be running. */
    if (ctx && ctx->sch)
        sched_shutdown(ctx->sch, 1); /* queued: callbacks with VG_ECANCELED; running: finish */
}

void analyze_ctx_free(analyze_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->sch) {
        analyze_shutdown(ctx);
        sched_free(ctx->sch);
    }
    assist_free(ctx->assist); /* after the workers: none can be using it now */
    pthread_mutex_lock(&ctx->fmu);
    ctx->fstop = 1;
    pthread_cond_broadcast(&ctx->fcv);
    pthread_mutex_unlock(&ctx->fmu);
    for (unsigned i = 0; i < ctx->nfthreads; i++)
        pthread_join(ctx->fthreads[i], NULL);
    vg_free(ctx->fthreads);
    pthread_mutex_destroy(&ctx->fmu);
    pthread_cond_destroy(&ctx->fcv);
    vg_free(ctx);
}

/* ---- requests ------------------------------------------------------------------------------- */

/* Looks the features up in the cache. 1 on a hit (out->features filled). */
static int cache_lookup(analyze_ctx *ctx, analyze_job *job)
{
    analyze_result *out = job->out;
    out->timings.cache_tier = "off";
    if (!ctx->deps.cache)
        return 0;
    uint64_t t = vg_now_ns();
    /* Scoped by tenant unless configured global: see analyze_config.cache_global. */
    const char *scope = ctx->cfg.cache_global ? NULL : job->req.tenant_id;
    if (cache_key_make_scoped(out->features.sha256, scope, ctx->model_version,
                              (uint32_t)job->req.level, &job->key) != VG_OK)
        return 0;
    job->have_key = 1;
    cache_val *v = NULL;
    cache_tier tier = CACHE_TIER_MISS;
    int hit = 0;
    if (cache_get(ctx->deps.cache, &job->key, &v, &tier) == VG_OK) {
        analyze_features f;
        if (analyze__features_decode(cache_val_data(v), cache_val_len(v), &f) == VG_OK &&
            memcmp(f.sha256, out->features.sha256, 32) == 0) {
            out->features = f;
            hit = 1;
        } else {
            /* Undecodable or from another image: drop it and compute afresh. */
            cache_remove(ctx->deps.cache, &job->key);
            tier = CACHE_TIER_MISS;
        }
        cache_val_unref(v);
    }
    out->timings.cache_tier = cache_tier_name(tier);
    atomic_fetch_add(&ctx->n_cache[tier], 1);
    out->timings.cache_us = (vg_now_ns() - t) / 1000;
    return hit;
}

void analyze_cache_purge(analyze_ctx *ctx, const char *tenant_id, const uint8_t sha256[32])
{
    if (!ctx || !ctx->deps.cache || !sha256)
        return;
    /* Every key this image can have been cached under with the current model: each level, in
     * the tenant's scope and in the global one (entries made while cache_global was on). */
    const char *scopes[2] = {NULL, tenant_id};
    for (int sc = 0; sc < 2; sc++) {
        if (sc == 1 && (!tenant_id || !*tenant_id))
            break;
        for (uint32_t level = 0; level <= (uint32_t)VG_LEVEL_MEMORY; level++) {
            cache_key k;
            if (cache_key_make_scoped(sha256, scopes[sc], ctx->model_version, level, &k) == VG_OK)
                cache_remove(ctx->deps.cache, &k);
        }
    }
}

int analyze_submit(analyze_ctx *ctx, const analyze_request *req, int features_only,
                   analyze_result *out, analyze_done_fn done, void *arg)
{
    if (!ctx || !req || !out || !done || (!req->bytes && req->len))
        return vg_err_set(VG_EINVAL, "analyze_submit: NULL argument");
    if ((unsigned)req->level > VG_LEVEL_MEMORY)
        return vg_err_set(VG_EINVAL, "analyze: bad level %d", (int)req->level);
    if (!features_only && (!req->tenant_id || !*req->tenant_id))
        return vg_err_set(VG_EINVAL, "analyze: a tenant scope is required for matching");
    if (req->len == 0)
        return vg_err_set(VG_ETRUNC, "empty image");
    if (req->len > ctx->limits.max_input_bytes) {
        atomic_fetch_add(&ctx->n_img_limit[IMG_LIMIT_INPUT_BYTES], 1);
        return vg_err_set(VG_ETOOBIG, "image is %zu bytes, more than max_input_bytes %zu", req->len,
                          ctx->limits.max_input_bytes);
    }

    analyze_job *job = vg_calloc(1, sizeof *job);
    if (!job)
        return VG_ENOMEM;
    job->ctx = ctx;
    job->req = *req;
    job->features_only = features_only;
    job->out = out;
    job->done = done;
    job->arg = arg;
    job->t0_ns = vg_now_ns();
    memset(out, 0, sizeof *out);
    atomic_fetch_add(&ctx->n_requests, 1);

    int rc = vg_sha256(req->bytes, req->len, out->features.sha256);
    if (rc) {
        vg_free(job);
        return rc;
    }
    if (cache_lookup(ctx, job)) {
        job->cached = 1;
        if (req->inline_hit)
            finish(ctx, job); /* frees job; done has run */
        else
            finisher_push(ctx, job);
        return VG_OK;
    }
    uint64_t deadline = req->deadline_ns;
    if (deadline == 0)
        deadline = job->t0_ns + (uint64_t)ctx->cfg.deadline_ms * 1000000ull;
    rc = sched_submit_for(ctx->sch, 0, req->tenant_id, job, deadline, sched_done, job);
    if (rc) {
        if (rc == VG_EBUSY) {
            atomic_fetch_add(&ctx->n_rejected, 1);
            vg_err_set(VG_EBUSY, "analysis queue is full (%u images waiting)",
                       ctx->cfg.queue_capacity);
        } else if (rc == VG_EQUOTA) {
            atomic_fetch_add(&ctx->n_quota, 1);
            vg_err_set(VG_EQUOTA,
                       "this tenant already has %u images queued or in analysis (the most one "
                       "tenant may have); retry later",
                       ctx->cfg.tenant_quota);
        } else if (rc == VG_ECANCELED) {
            vg_err_set(VG_ECANCELED, "server shutting down");
        }
        memset(out, 0, sizeof *out);
        vg_free(job);
        return rc;
    }
    return VG_OK;
}

/* ---- blocking wrappers ---------------------------------------------------------------------- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    char msg[512];
} waiter;

static void waiter_done(void *arg, int status, const char *detail)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    if (status)
        snprintf(w->msg, sizeof w->msg, "%s", detail);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int run_and_wait(analyze_ctx *ctx, const analyze_request *req, int features_only,
                        analyze_result *out)
{
    waiter w = {.done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = analyze_submit(ctx, req, features_only, out, waiter_done, &w);
    if (rc == VG_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.status;
        if (rc)
            vg_err_set(rc, "%s", w.msg); /* carry the detail over to the caller's thread */
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

int analyze_run(analyze_ctx *ctx, const analyze_request *req, analyze_result *out)
{
    return run_and_wait(ctx, req, 0, out);
}

int analyze_features_compute(analyze_ctx *ctx, const analyze_request *req, analyze_features *out,
                             analyze_timings *timings)
{
    analyze_result r;
    int rc = run_and_wait(ctx, req, 1, &r);
    if (rc)
        return rc;
    *out = r.features;
    if (timings)
        *timings = r.timings;
    vg_free(r.matches);
    return VG_OK;
}

void analyze_sched_stats_get(analyze_ctx *ctx, sched_stats *out)
{
    sched_stats_get(ctx->sch, out);
}

void analyze_stats_get(analyze_ctx *ctx, analyze_stats *out)
{
    memset(out, 0, sizeof *out);
    out->requests = atomic_load(&ctx->n_requests);
    out->ok = atomic_load(&ctx->n_ok);
    out->failed = atomic_load(&ctx->n_failed);
    out->rejected = atomic_load(&ctx->n_rejected);
    out->quota_rejected = atomic_load(&ctx->n_quota);
    out->expired = atomic_load(&ctx->n_expired);
    out->canceled = atomic_load(&ctx->n_canceled);
    out->faces_described = atomic_load(&ctx->n_faces);
    for (int i = 0; i < 4; i++)
        out->cache_hits[i] = atomic_load(&ctx->n_cache[i]);
    for (int i = 0; i < IMG_LIMIT_COUNT; i++)
        out->img_limit_hits[i] = atomic_load(&ctx->n_img_limit[i]);
    out->lone_splits = atomic_load(&ctx->n_lone_split);
    sched_stats ss;
    sched_stats_get(ctx->sch, &ss);
    out->batches = ss.kinds[0].batches;
    out->batch_images = ss.kinds[0].batch_items;
    out->queue_depth = (unsigned)ss.kinds[0].queue_depth;
    out->workers = ss.replicas;
    out->workers_busy = ss.replicas_busy;
}

/* ---- run-time knobs ------------------------------------------------------------------------- */

int analyze_cache_l1_set_capacity(analyze_ctx *ctx, size_t max_entries, size_t max_bytes)
{
    if (!ctx->deps.cache)
        return vg_err_set(VG_EUNSUPPORTED, "analysis runs without a feature cache");
    return cache_l1_set_capacity(ctx->deps.cache, max_entries, max_bytes);
}

void analyze_cache_l1_capacity(analyze_ctx *ctx, size_t *max_entries, size_t *max_bytes)
{
    cache_l1_capacity(ctx->deps.cache, max_entries, max_bytes);
}

uint64_t analyze_cache_l1_clear(analyze_ctx *ctx)
{
    return cache_l1_clear(ctx->deps.cache);
}

int analyze_cache_warm(analyze_ctx *ctx, size_t n, size_t *loaded)
{
    if (!ctx->deps.cache) {
        if (loaded)
            *loaded = 0;
        return vg_err_set(VG_EUNSUPPORTED, "analysis runs without a feature cache");
    }
    return cache_warm_l1_from_l2(ctx->deps.cache, n, loaded);
}

int analyze_batching_tune(analyze_ctx *ctx, unsigned max_batch, uint32_t max_delay_us)
{
    return sched_kind_tune(ctx->sch, 0, max_batch, max_delay_us);
}

void analyze_batching(analyze_ctx *ctx, unsigned *max_batch, uint32_t *max_delay_us)
{
    sched_stats ss;
    sched_stats_get(ctx->sch, &ss);
    if (max_batch)
        *max_batch = ss.kinds[0].max_batch;
    if (max_delay_us)
        *max_delay_us = ss.kinds[0].max_delay_us;
}

int analyze_add_replica(analyze_ctx *ctx)
{
    return sched_add_replica(ctx->sch);
}

int analyze_replace_failing_replica(analyze_ctx *ctx, unsigned min_streak, unsigned *index)
{
    return sched_replace_failing_replica(ctx->sch, min_streak, index);
}

void analyze_replicas(analyze_ctx *ctx, analyze_replica_info *out)
{
    sched_stats ss;
    sched_stats_get(ctx->sch, &ss);
    memset(out, 0, sizeof *out);
    out->current = ss.replicas;
    out->min = ss.min_replicas;
    out->max = ss.max_replicas;
    out->busy = ss.replicas_busy;
    out->worst_fail_streak = ss.worst_fail_streak;
    out->replaced = ss.replicas_replaced;
    out->batch_failures = ss.batch_failures;
}
