/*
 * cache L2: entries as files on local disk, bounded by bytes, least recently used evicted first.
 *
 * Layout: <dir>/<hh>/<key hex>.vce where hh is the key's first byte (256 fan-out directories keep
 * each directory small), temp files in <dir>/tmp/. Each file is one entry (cache_int.h): a 56-byte
 * header with magic, version, key, value length and CRC32C, then the value.
 *
 * Crash safety without fsync: an entry is written to a temp file and renamed into place, so a
 * process crash leaves either the old file, the new file, or a stray temp file (deleted at the
 * next open), never a half-written entry under a final name. After a power loss or kernel crash
 * the file system may still expose a renamed file whose data never reached the disk (empty,
 * short or garbage): the header and value checksums catch that on read, and the entry is
 * deleted and counted, never served. Losing an entry only costs a recomputation, so paying an
 * fsync (milliseconds) on every put would buy nothing a cache needs.
 *
 * Recency: the index (hash table + LRU list) lives in memory and is rebuilt at open from the
 * files' mtimes; a hit bumps the file's mtime (futimens on the descriptor already open) so the
 * order survives a restart. Bytes counted are file sizes (headers included).
 *
 * Locking: one mutex guards the index, and the renames and unlinks that must agree with it; the
 * reads and writes of entry data happen outside it. A reader racing with an eviction either
 * reads the complete file (unlinked files stay readable while open) or finds it gone (a miss).
 */
#include "cache/cache_int.h"

#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#define L2_SUFFIX ".vce"
#define L2_NAME_LEN (2 * CACHE_KEY_BYTES + 4) /* hex + suffix */
#define L2_INITIAL_BUCKETS 1024

typedef struct l2_ent {
    cache_key key;
    uint64_t bytes;
    struct l2_ent *prev, *next; /* LRU: sentinel.next is the most recent */
    struct l2_ent *hnext;
} l2_ent;

/* Shared by all threads; the index fields are guarded by mu. */
struct cache_l2 {
    char *dir;
    pthread_mutex_t mu;
    l2_ent lru;
    l2_ent **table;
    size_t mask;
    size_t entries;
    uint64_t bytes, max_bytes;
    _Atomic uint64_t tmp_seq;
    uint64_t min_free;        /* free-space reserve in bytes (0 = none); set before use */
    cache_l2_free_fn free_fn; /* statvfs unless a test injected one; set before use */
    void *free_arg;
    cache_ctr ctr;
};

/* Disk usage of a file of n bytes as the free-space figure sees it: whole blocks. */
#define L2_BLOCK_BYTES 4096u

static uint64_t key_hash(const cache_key *k)
{
    uint64_t h;
    memcpy(&h, k->bytes + 8, sizeof h); /* bytes 0..7 pick the fan-out dir: use others */
    return h;
}

static int entry_path(const char *dir, const cache_key *key, char *buf, size_t buflen)
{
    char hex[65];
    cache_key_hex(key, hex);
    int n = snprintf(buf, buflen, "%s/%.2s/%s" L2_SUFFIX, dir, hex, hex);
    if (n < 0 || (size_t)n >= buflen)
        return vg_err_set(VG_EINVAL, "cache path too long under %s", dir);
    return VG_OK;
}

int cache__l2_entry_path(const cache_l2 *l2, const cache_key *key, char *buf, size_t buflen)
{
    return entry_path(l2->dir, key, buf, buflen);
}

/* ---- index (caller holds mu) ---------------------------------------------------------------- */

static l2_ent **find_slot(cache_l2 *l2, const cache_key *key)
{
    l2_ent **pp = &l2->table[key_hash(key) & l2->mask];
    while (*pp && memcmp((*pp)->key.bytes, key->bytes, CACHE_KEY_BYTES) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(l2_ent *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push_front(cache_l2 *l2, l2_ent *e)
{
    e->prev = &l2->lru;
    e->next = l2->lru.next;
    l2->lru.next->prev = e;
    l2->lru.next = e;
}

/* Doubles the table when the load passes 1; a failed grow just leaves longer chains. */
static void maybe_grow(cache_l2 *l2)
{
    size_t buckets = l2->mask + 1;
    if (l2->entries <= buckets || buckets > ((size_t)1 << 28))
        return;
    l2_ent **t = vg_calloc(buckets * 2, sizeof *t);
    if (!t)
        return;
    size_t mask = buckets * 2 - 1;
    for (size_t i = 0; i < buckets; i++) {
        l2_ent *e = l2->table[i];
        while (e) {
            l2_ent *next = e->hnext;
            size_t b = key_hash(&e->key) & mask;
            e->hnext = t[b];
            t[b] = e;
            e = next;
        }
    }
    vg_free(l2->table);
    l2->table = t;
    l2->mask = mask;
}

static void index_insert(cache_l2 *l2, l2_ent *e)
{
    l2_ent **slot = find_slot(l2, &e->key);
    e->hnext = NULL;
    *slot = e;
    lru_push_front(l2, e);
    l2->entries++;
    l2->bytes += e->bytes;
    maybe_grow(l2);
}

static void index_detach(cache_l2 *l2, l2_ent *e)
{
    l2_ent **pp = find_slot(l2, &e->key);
    *pp = e->hnext;
    lru_unlink(e);
    l2->entries--;
    l2->bytes -= e->bytes;
}

/* Evicts from the tail (never `keep`) until the byte bound holds; unlinks the files. */
static void evict_locked(cache_l2 *l2, const l2_ent *keep)
{
    char path[PATH_MAX];
    while (l2->bytes > l2->max_bytes && l2->lru.prev != &l2->lru && l2->lru.prev != keep) {
        l2_ent *tail = l2->lru.prev;
        index_detach(l2, tail);
        if (entry_path(l2->dir, &tail->key, path, sizeof path) == VG_OK && unlink(path) != 0 &&
            errno != ENOENT)
            CACHE_CTR_INC(&l2->ctr, errors);
        vg_free(tail);
        CACHE_CTR_INC(&l2->ctr, evictions);
    }
}

/* ---- free-space reserve ---------------------------------------------------------------------- */

static int statvfs_free(void *arg, const char *dir, uint64_t *free_bytes)
{
    (void)arg;
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0)
        return vg_err_set(VG_EIO, "cache: statvfs %s: %s", dir, strerror(errno));
    /* f_bavail: what an unprivileged writer (SQLite, us) may still use. */
    *free_bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return VG_OK;
}

static uint64_t blocks_of(uint64_t bytes)
{
    return (bytes + L2_BLOCK_BYTES - 1) / L2_BLOCK_BYTES * L2_BLOCK_BYTES;
}

/* Makes room for `incoming` more bytes while leaving min_free free on the file system: the
 * database shares the volume, and a cache that fills it turns every database write into an
 * error. Evicts the least recently used entries first; VG_EUNAVAIL (counted as nospace) when
 * even an empty cache would leave less than the reserve: the caller skips the write. Takes mu
 * itself; the free-space probe runs outside it. */
static int reserve_room(cache_l2 *l2, uint64_t incoming)
{
    if (l2->min_free == 0)
        return VG_OK;
    uint64_t avail;
    if (l2->free_fn(l2->free_arg, l2->dir, &avail) != VG_OK) {
        CACHE_CTR_INC(&l2->ctr, errors);
        return VG_OK; /* cannot tell: behave as without a reserve */
    }
    uint64_t need = l2->min_free + blocks_of(incoming);
    if (avail >= need)
        return VG_OK;
    uint64_t deficit = need - avail, freed = 0;
    char path[PATH_MAX];
    pthread_mutex_lock(&l2->mu);
    while (freed < deficit && l2->lru.prev != &l2->lru) {
        l2_ent *tail = l2->lru.prev;
        index_detach(l2, tail);
        if (entry_path(l2->dir, &tail->key, path, sizeof path) == VG_OK && unlink(path) != 0 &&
            errno != ENOENT)
            CACHE_CTR_INC(&l2->ctr, errors);
        freed += blocks_of(tail->bytes);
        vg_free(tail);
        CACHE_CTR_INC(&l2->ctr, evictions);
    }
    pthread_mutex_unlock(&l2->mu);
    if (freed >= deficit)
        return VG_OK;
    if (incoming > 0) /* a write is skipped (not the check at set-up) */
        CACHE_CTR_INC(&l2->ctr, nospace);
    return vg_err_set(VG_EUNAVAIL, "cache: %llu bytes free on %s, reserve %llu: not writing",
                      (unsigned long long)avail, l2->dir, (unsigned long long)l2->min_free);
}

void cache__l2_set_free_fn(cache_l2 *l2, cache_l2_free_fn fn, void *arg)
{
    l2->free_fn = fn ? fn : statvfs_free;
    l2->free_arg = fn ? arg : NULL;
}

void cache__l2_set_min_free(cache_l2 *l2, uint64_t min_free_bytes)
{
    l2->min_free = min_free_bytes;
    /* The volume may already be below the reserve (the database grew while we were down). */
    vg_err_clear();
    if (reserve_room(l2, 0) != VG_OK)
        VG_WARN_LIMITED("cache", "%s", vg_err_msg());
}

/* ---- open: rebuild the index from the directory --------------------------------------------- */

typedef struct l2_found {
    cache_key key;
    uint64_t bytes;
    int64_t mtime_ns;
} l2_found;

typedef struct l2_found_vec {
    l2_found *v;
    size_t n, cap;
} l2_found_vec;

static int found_push(l2_found_vec *fv, const l2_found *f)
{
    if (fv->n == fv->cap) {
        size_t cap = fv->cap ? fv->cap * 2 : 256, bytes;
        if (vg_mul_size(cap, sizeof *fv->v, &bytes) != VG_OK)
            return VG_ENOMEM;
        l2_found *nv = vg_realloc(fv->v, bytes);
        if (!nv)
            return VG_ENOMEM;
        fv->v = nv;
        fv->cap = cap;
    }
    fv->v[fv->n++] = *f;
    return VG_OK;
}

static int cmp_mtime(const void *a, const void *b)
{
    const l2_found *x = a, *y = b;
    return (x->mtime_ns > y->mtime_ns) - (x->mtime_ns < y->mtime_ns);
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return VG_OK;
    return vg_err_set(VG_EIO, "cache: mkdir %s: %s", path, strerror(errno));
}

/* Deletes leftover temp files: they are writes a crash interrupted. */
static void clean_tmp(const char *tmpdir)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

/* Scans one fan-out directory, collecting entries and deleting obviously torn ones. */
static int scan_subdir(cache_l2 *l2, const char *sub, unsigned byte, l2_found_vec *fv)
{
    DIR *d = opendir(sub);
    if (!d)
        return vg_err_set(VG_EIO, "cache: opendir %s: %s", sub, strerror(errno));
    struct dirent *de;
    int rc = VG_OK;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strlen(name) != L2_NAME_LEN || strcmp(name + 2 * CACHE_KEY_BYTES, L2_SUFFIX) != 0)
            continue; /* not ours: leave it alone */
        /* Lower-case hex only: the name must be exactly the one entry_path() builds. */
        char hex[2 * CACHE_KEY_BYTES + 1];
        memcpy(hex, name, 2 * CACHE_KEY_BYTES);
        hex[2 * CACHE_KEY_BYTES] = 0;
        if (strspn(hex, "0123456789abcdef") != 2 * CACHE_KEY_BYTES)
            continue;
        l2_found f;
        if (vg_hex_decode(hex, f.key.bytes, CACHE_KEY_BYTES) != VG_OK || f.key.bytes[0] != byte)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        uint64_t size = (uint64_t)st.st_size;
        if (size < CACHE_ENTRY_HEADER_BYTES ||
            size > (uint64_t)CACHE_ENTRY_HEADER_BYTES + CACHE_MAX_VALUE_BYTES) {
            unlinkat(dirfd(d), name, 0); /* torn or impossible: never worth a read */
            CACHE_CTR_INC(&l2->ctr, corrupt);
            continue;
        }
        f.bytes = size;
        f.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if ((rc = found_push(fv, &f)) != VG_OK) {
            rc = vg_err_set(VG_ENOMEM, "cache: index of %s", l2->dir);
            break;
        }
    }
    closedir(d);
    return rc;
}

int cache__l2_open(const char *dir, uint64_t max_bytes, cache_l2 **out)
{
    if (!dir || !*dir || !out || max_bytes == 0)
        return vg_err_set(VG_EINVAL, "L2 needs a directory and max_bytes >= 1");
    char path[PATH_MAX];
    if (strlen(dir) + 80 >= sizeof path)
        return vg_err_set(VG_EINVAL, "cache directory path too long: %s", dir);
    int rc = vg_mkdir_p(dir);
    if (rc != VG_OK)
        return rc;
    cache_l2 *l2 = cache__zalloc_aligned(sizeof *l2);
    if (!l2)
        return vg_err_set(VG_ENOMEM, "L2 cache");
    l2->dir = vg_strdup(dir);
    l2->table = vg_calloc(L2_INITIAL_BUCKETS, sizeof *l2->table);
    l2->mask = L2_INITIAL_BUCKETS - 1;
    l2->max_bytes = max_bytes;
    l2->free_fn = statvfs_free;
    l2->lru.prev = l2->lru.next = &l2->lru;
    pthread_mutex_init(&l2->mu, NULL);
    if (!l2->dir || !l2->table) {
        cache__l2_close(l2);
        return vg_err_set(VG_ENOMEM, "L2 cache");
    }

    snprintf(path, sizeof path, "%s/tmp", dir);
    if ((rc = ensure_dir(path)) != VG_OK) {
        cache__l2_close(l2);
        return rc;
    }
    clean_tmp(path);

    l2_found_vec fv = {0};
    for (unsigned b = 0; b < 256 && rc == VG_OK; b++) {
        snprintf(path, sizeof path, "%s/%02x", dir, b);
        rc = ensure_dir(path);
        if (rc == VG_OK)
            rc = scan_subdir(l2, path, b, &fv);
    }
    if (rc != VG_OK) {
        vg_free(fv.v);
        cache__l2_close(l2);
        return rc;
    }
    /* Oldest first, each pushed to the front: the newest ends up most recent. */
    if (fv.n > 1)
        qsort(fv.v, fv.n, sizeof *fv.v, cmp_mtime);
    for (size_t i = 0; i < fv.n; i++) {
        l2_ent *e = vg_malloc(sizeof *e);
        if (!e) {
            vg_free(fv.v);
            cache__l2_close(l2);
            return vg_err_set(VG_ENOMEM, "L2 index");
        }
        e->key = fv.v[i].key;
        e->bytes = fv.v[i].bytes;
        index_insert(l2, e);
    }
    vg_free(fv.v);
    evict_locked(l2, NULL); /* the bound may have shrunk since the last run */
    VG_INFO("cache", "L2 %s: %zu entries, %llu bytes (max %llu)", dir, l2->entries,
            (unsigned long long)l2->bytes, (unsigned long long)max_bytes);
    *out = l2;
    return VG_OK;
}

void cache__l2_close(cache_l2 *l2)
{
    if (!l2)
        return;
    l2_ent *e = l2->lru.next;
    while (e && e != &l2->lru) {
        l2_ent *next = e->next;
        vg_free(e);
        e = next;
    }
    vg_free(l2->table);
    vg_free(l2->dir);
    pthread_mutex_destroy(&l2->mu);
    vg_free(l2);
}

/* ---- get ------------------------------------------------------------------------------------ */

/* Forgets key and deletes its file: the entry failed validation (or vanished). */
static void drop_entry(cache_l2 *l2, const cache_key *key, const char *path, int unlink_file)
{
    pthread_mutex_lock(&l2->mu);
    l2_ent *e = *find_slot(l2, key);
    if (e)
        index_detach(l2, e);
    if (unlink_file)
        unlink(path);
    pthread_mutex_unlock(&l2->mu);
    vg_free(e);
}

static int read_full(int fd, struct iovec *iov, int iovcnt, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t r = readv(fd, iov, iovcnt);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        /* Advance the iovecs past what was read. */
        size_t left = (size_t)r;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return got == want ? 0 : 1; /* 1: short (file shrank under us) */
}

int cache__l2_get(cache_l2 *l2, const cache_key *key, cache_val **out)
{
    pthread_mutex_lock(&l2->mu);
    l2_ent *e = *find_slot(l2, key);
    if (e && l2->lru.next != e) {
        lru_unlink(e);
        lru_push_front(l2, e);
    }
    pthread_mutex_unlock(&l2->mu);
    if (!e) {
        CACHE_CTR_INC(&l2->ctr, misses);
        return VG_ENOTFOUND;
    }

    char path[PATH_MAX];
    if (entry_path(l2->dir, key, path, sizeof path) != VG_OK) {
        CACHE_CTR_INC(&l2->ctr, errors);
        return VG_ENOTFOUND;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) { /* evicted or removed meanwhile */
            drop_entry(l2, key, path, 0);
            CACHE_CTR_INC(&l2->ctr, misses);
        } else {
            CACHE_CTR_INC(&l2->ctr, errors);
        }
        return VG_ENOTFOUND;
    }
    struct stat st;
    cache_val *v = NULL;
    int corrupt = 0;
    if (fstat(fd, &st) != 0) {
        close(fd);
        CACHE_CTR_INC(&l2->ctr, errors);
        return VG_ENOTFOUND;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < CACHE_ENTRY_HEADER_BYTES ||
        size > (uint64_t)CACHE_ENTRY_HEADER_BYTES + CACHE_MAX_VALUE_BYTES) {
        vg_err_set(VG_ETRUNC, "file is %llu bytes", (unsigned long long)size);
        corrupt = 1;
    } else {
        size_t vlen = (size_t)(size - CACHE_ENTRY_HEADER_BYTES);
        uint8_t hdr[CACHE_ENTRY_HEADER_BYTES];
        uint8_t *data;
        if (cache__val_alloc_uninit(vlen, &v, &data) != VG_OK) {
            close(fd);
            CACHE_CTR_INC(&l2->ctr, errors);
            return VG_ENOTFOUND;
        }
        struct iovec iov[2] = {{hdr, sizeof hdr}, {data, vlen}};
        int r = read_full(fd, iov, 2, sizeof hdr + vlen);
        if (r < 0) {
            close(fd);
            cache_val_unref(v);
            CACHE_CTR_INC(&l2->ctr, errors);
            return VG_ENOTFOUND;
        }
        cache_entry_header h;
        if (r != 0)
            vg_err_set(VG_ETRUNC, "file shrank while read");
        if (r != 0 || cache__entry_header_parse(hdr, sizeof hdr, &h) != VG_OK ||
            cache__entry_check(&h, key, data, vlen) != VG_OK)
            corrupt = 1;
    }
    if (corrupt) {
        close(fd);
        cache_val_unref(v);
        VG_WARN("cache", "L2 entry %s is corrupt (%s): deleted", path, vg_err_msg());
        drop_entry(l2, key, path, 1);
        CACHE_CTR_INC(&l2->ctr, corrupt);
        CACHE_CTR_INC(&l2->ctr, misses);
        return VG_ENOTFOUND;
    }
    futimens(fd, NULL); /* recency for the next start; failure only costs accuracy */
    close(fd);
    CACHE_CTR_INC(&l2->ctr, hits);
    *out = v;
    return VG_OK;
}

/* ---- put ------------------------------------------------------------------------------------ */

static int write_full(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        ssize_t w = writev(fd, iov, iovcnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        size_t left = (size_t)w;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int cache__l2_put(cache_l2 *l2, const cache_key *key, const cache_val *v)
{
    size_t vlen = cache_val_len(v);
    uint64_t total = (uint64_t)CACHE_ENTRY_HEADER_BYTES + vlen;
    if (total > l2->max_bytes) {
        CACHE_CTR_INC(&l2->ctr, rejected);
        return vg_err_set(VG_ETOOBIG, "entry of %llu bytes exceeds L2 max_bytes %llu",
                          (unsigned long long)total, (unsigned long long)l2->max_bytes);
    }
    if (reserve_room(l2, total) != VG_OK)
        return VG_EUNAVAIL;
    uint8_t hdr[CACHE_ENTRY_HEADER_BYTES];
    cache__entry_header_encode(key, cache_val_data(v), vlen, hdr);

    char hex[65], tmp[PATH_MAX], path[PATH_MAX];
    cache_key_hex(key, hex);
    uint64_t seq = atomic_fetch_add_explicit(&l2->tmp_seq, 1, memory_order_relaxed);
    int n = snprintf(tmp, sizeof tmp, "%s/tmp/%s.%d.%llu.tmp", l2->dir, hex, (int)getpid(),
                     (unsigned long long)seq);
    if (n < 0 || (size_t)n >= sizeof tmp || entry_path(l2->dir, key, path, sizeof path) != VG_OK) {
        CACHE_CTR_INC(&l2->ctr, errors);
        return vg_err_set(VG_EINVAL, "cache path too long under %s", l2->dir);
    }
    l2_ent *fresh = vg_malloc(sizeof *fresh);
    if (!fresh) {
        CACHE_CTR_INC(&l2->ctr, errors);
        return vg_err_set(VG_ENOMEM, "L2 index entry");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        vg_free(fresh);
        CACHE_CTR_INC(&l2->ctr, errors);
        return vg_err_set(VG_EIO, "cache: %s: %s", tmp, strerror(e));
    }
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)cache_val_data(v), vlen}};
    int w = write_full(fd, iov, vlen ? 2 : 1);
    if (close(fd) != 0 && w == 0)
        w = -errno;
    if (w != 0) {
        unlink(tmp);
        vg_free(fresh);
        CACHE_CTR_INC(&l2->ctr, errors);
        return vg_err_set(VG_EIO, "cache: write %s: %s", tmp, strerror(-w));
    }

    pthread_mutex_lock(&l2->mu);
    if (rename(tmp, path) != 0) {
        int e = errno;
        pthread_mutex_unlock(&l2->mu);
        unlink(tmp);
        vg_free(fresh);
        CACHE_CTR_INC(&l2->ctr, errors);
        return vg_err_set(VG_EIO, "cache: rename to %s: %s", path, strerror(e));
    }
    l2_ent *e = *find_slot(l2, key);
    if (e) {
        l2->bytes = l2->bytes - e->bytes + total;
        e->bytes = total;
        lru_unlink(e);
        lru_push_front(l2, e);
    } else {
        e = fresh;
        fresh = NULL;
        e->key = *key;
        e->bytes = total;
        index_insert(l2, e);
    }
    evict_locked(l2, e);
    pthread_mutex_unlock(&l2->mu);
    vg_free(fresh);
    CACHE_CTR_INC(&l2->ctr, puts);
    return VG_OK;
}

/* Overwrites the whole file at path with zeros and syncs it, so its blocks no longer hold the
 * value when they are freed. Without the sync the dirty pages would be dropped by the unlink
 * that follows and the old bytes would stay on the disk. Caller holds mu (no rename can swap
 * the file meanwhile). */
static void scrub_file(cache_l2 *l2, const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            CACHE_CTR_INC(&l2->ctr, errors);
        return;
    }
    struct stat st;
    static const uint8_t zeros[L2_BLOCK_BYTES];
    int ok = fstat(fd, &st) == 0;
    for (off_t off = 0; ok && off < st.st_size;) {
        size_t n = (size_t)VG_MIN((off_t)sizeof zeros, st.st_size - off);
        ssize_t w = pwrite(fd, zeros, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += w > 0 ? w : 0;
    }
    if (!ok || fdatasync(fd) != 0)
        CACHE_CTR_INC(&l2->ctr, errors);
    close(fd);
}

void cache__l2_remove(cache_l2 *l2, const cache_key *key)
{
    char path[PATH_MAX];
    if (entry_path(l2->dir, key, path, sizeof path) != VG_OK)
        return;
    pthread_mutex_lock(&l2->mu);
    l2_ent *e = *find_slot(l2, key);
    if (e)
        index_detach(l2, e);
    scrub_file(l2, path);
    if (unlink(path) != 0 && errno != ENOENT)
        CACHE_CTR_INC(&l2->ctr, errors);
    pthread_mutex_unlock(&l2->mu);
    vg_free(e);
}

cache_ctr *cache__l2_ctr(cache_l2 *l2)
{
    return &l2->ctr;
}

void cache__l2_stats(cache_l2 *l2, cache_tier_stats *out)
{
    cache__ctr_snapshot(&l2->ctr, out);
    pthread_mutex_lock(&l2->mu);
    out->entries = l2->entries;
    out->bytes = l2->bytes;
    pthread_mutex_unlock(&l2->mu);
}

size_t cache__l2_recent(cache_l2 *l2, cache_key *keys, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&l2->mu);
    for (l2_ent *e = l2->lru.next; e != &l2->lru && n < max; e = e->next)
        keys[n++] = e->key;
    pthread_mutex_unlock(&l2->mu);
    return n;
}
