/*
 * Deterministic random data for tests and benchmarks (header-only: each test and benchmark is
 * its own program, and a library for three functions would be more build than code).
 * SplitMix64: one 64-bit state, no allocation, the same sequence on every machine, so a
 * failing seed reproduces.
 */
#ifndef VGT_RANDOM_H
#define VGT_RANDOM_H

#include <stdint.h>
#include <string.h>

static inline uint64_t vgt_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniformly random 256-bit PDQ-sized hash. */
static inline void vgt_rand_hash(uint64_t *s, uint8_t h[32])
{
    for (int i = 0; i < 32; i += 8) {
        uint64_t x = vgt_rng_next(s);
        memcpy(h + i, &x, 8);
    }
}

/* Copies src with exactly k (0..256) distinct bits flipped: a hash at Hamming distance k. */
static inline void vgt_flip_bits(uint64_t *s, const uint8_t src[32], int k, uint8_t dst[32])
{
    memcpy(dst, src, 32);
    uint8_t used[256] = {0};
    for (int n = 0; n < k;) {
        int b = (int)(vgt_rng_next(s) % 256);
        if (used[b])
            continue;
        used[b] = 1;
        dst[b / 8] ^= (uint8_t)(1u << (b % 8));
        n++;
    }
}

#endif
