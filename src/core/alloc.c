/* Allocator wrappers with a fault-injection hook, overflow-checked size arithmetic, and the bump
 * arena. The hook is a pair of process-wide counters: tests set "fail after N" and walk N up to
 * exercise every allocation failure path of a function (SQLite's technique). */
#include "core/core.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long alloc_count;
static _Atomic long alloc_fail_at; /* 0 = never */

void vg_malloc_tune(void)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.malloc."))
        return;
    /* Setting either disables glibc's dynamic mmap threshold, which only grows after a large
     * block was freed and so still faults each size class in at least once per thread. */
    mallopt(M_MMAP_THRESHOLD, (int)VG_MALLOC_MMAP_MAX);
    mallopt(M_TRIM_THRESHOLD, (int)VG_MALLOC_TRIM_MAX);
}

int vg_malloc_trim(void)
{
    return malloc_trim(0);
}

void vg_alloc_fail_after(long n)
{
    atomic_store(&alloc_fail_at, n > 0 ? atomic_load(&alloc_count) + n : 0);
}

long vg_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

static int alloc_should_fail(void)
{
    long n = atomic_fetch_add(&alloc_count, 1) + 1;
    long at = atomic_load(&alloc_fail_at);
    return at > 0 && n >= at;
}

void *vg_malloc(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *vg_calloc(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *vg_realloc(void *p, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void vg_free(void *p)
{
    free(p);
}

char *vg_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = vg_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *vg_aligned_alloc(size_t alignment, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, alignment, n ? n : 1) != 0)
        return NULL;
    return p;
}

int vg_mul_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return VG_ETOOBIG;
    *out = r;
    return VG_OK;
}

int vg_add_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r))
        return VG_ETOOBIG;
    *out = r;
    return VG_OK;
}

/* ---- arena ---- */

typedef struct arena_block {
    struct arena_block *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    _Alignas(64) unsigned char data[];
} arena_block;

struct vg_arena {
    arena_block *head; /* current block; older ones follow via next */
    size_t block_bytes;
    size_t total_used;
};

static arena_block *arena_block_new(size_t size)
{
    arena_block *b = vg_aligned_alloc(64, sizeof(arena_block) + size);
    if (!b)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

vg_arena *vg_arena_new(size_t block_bytes)
{
    vg_arena *a = vg_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->block_bytes = block_bytes ? block_bytes : 64 * 1024;
    a->head = arena_block_new(a->block_bytes);
    if (!a->head) {
        vg_free(a);
        return NULL;
    }
    return a;
}

void vg_arena_free(vg_arena *a)
{
    if (!a)
        return;
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        vg_free(b);
        b = next;
    }
    vg_free(a);
}

void *vg_arena_alloc(vg_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        return NULL;
    arena_block *b = a->head;
    if (b->size - b->used < need) {
        size_t size = need > a->block_bytes ? need : a->block_bytes;
        arena_block *nb = arena_block_new(size);
        if (!nb)
            return NULL;
        nb->next = a->head;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->total_used += need;
    return p;
}

char *vg_arena_strdup(vg_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = vg_arena_alloc(a, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void vg_arena_reset(vg_arena *a)
{
    /* Keep the oldest block (the one made at creation); drop the others. */
    arena_block *b = a->head;
    while (b->next) {
        arena_block *next = b->next;
        vg_free(b);
        b = next;
    }
    b->used = 0;
    a->head = b;
    a->total_used = 0;
}

size_t vg_arena_bytes_used(const vg_arena *a)
{
    return a->total_used;
}
