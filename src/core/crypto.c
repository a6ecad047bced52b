/* SHA-256 through OpenSSL's EVP interface (the one thin wrapper around libcrypto), hex coding,
 * constant-time comparison and secure random bytes. */
#include "core/core.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <sys/random.h>

/* SHA-256 fetched from OpenSSL's default provider once, shared read-only by every thread.
 * EVP_sha256() makes each EVP_Digest fetch the implementation again (a locked method-store
 * lookup, ~8,000 instructions): more than hashing an API key or a cache key costs, three
 * times per cached analysis. The implementation is the same (SHA extensions where the CPU has
 * them); NULL (no provider) falls back to EVP_sha256(). */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int vg_sha256(const void *data, size_t len, uint8_t out[VG_SHA256_BYTES])
{
    unsigned int outlen = 0;
    pthread_once(&g_sha256_once, sha256_fetch);
    const EVP_MD *md = g_sha256 ? g_sha256 : EVP_sha256();
    /* EVP_Digest is the one-shot form: no context to leak on the error path. */
    if (!EVP_Digest(data, len, out, &outlen, md, NULL) || outlen != VG_SHA256_BYTES)
        return vg_err_set(VG_EINTERNAL, "EVP_Digest(sha256) failed");
    return VG_OK;
}

int vg_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[VG_SHA256_BYTES])
{
    unsigned int outlen = 0;
    /* HMAC() is OpenSSL's one-shot form (not deprecated in 3.x, unlike HMAC_CTX). A zero-length
     * key is valid HMAC; OpenSSL wants a non-NULL pointer for it. */
    static const uint8_t empty = 0;
    if (key_len > INT32_MAX)
        return vg_err_set(VG_EINVAL, "HMAC key too long");
    if (!HMAC(EVP_sha256(), key_len ? key : &empty, (int)key_len, data, len, out, &outlen) ||
        outlen != VG_SHA256_BYTES)
        return vg_err_set(VG_EINTERNAL, "HMAC(sha256) failed");
    return VG_OK;
}

void vg_hex_encode(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vg_hex_decode(const char *hex, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!hex[2 * i] || !hex[2 * i + 1])
            return VG_EINVAL;
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return VG_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[2 * len] != '\0')
        return VG_EINVAL;
    return VG_OK;
}

int vg_ct_equal(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

int vg_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return vg_err_set(VG_EIO, "getrandom failed: errno %d", errno);
        }
        p += n;
        len -= (size_t)n;
    }
    return VG_OK;
}
