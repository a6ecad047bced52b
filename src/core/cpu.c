/* CPU feature detection with cpuid/xgetbv, cached once. Run-time dispatch everywhere: the
 * binaries are built for baseline x86-64 and pick AVX2/AVX-512 paths from these bits. */
#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static unsigned cpu_bits;
static char cpu_desc[256];
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void cpu_detect(void)
{
    unsigned bits = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        if (c & bit_SSE4_2)
            bits |= VG_CPU_SSE42;
        if (c & bit_POPCNT)
            bits |= VG_CPU_POPCNT;
        int osxsave = (c & bit_OSXSAVE) != 0;
        unsigned long long xcr0 = 0;
        if (osxsave) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = ((unsigned long long)hi << 32) | lo;
        }
        int ymm_ok = (xcr0 & 0x6) == 0x6;
        int zmm_ok = (xcr0 & 0xe6) == 0xe6;
        if (ymm_ok && (c & bit_FMA))
            bits |= VG_CPU_FMA;
        if (__get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            if (ymm_ok && (b & bit_AVX2))
                bits |= VG_CPU_AVX2;
            if (zmm_ok) {
                if (b & bit_AVX512F)
                    bits |= VG_CPU_AVX512F;
                if (b & bit_AVX512BW)
                    bits |= VG_CPU_AVX512BW;
                if (b & bit_AVX512VL)
                    bits |= VG_CPU_AVX512VL;
                if (c & bit_AVX512VNNI)
                    bits |= VG_CPU_AVX512VNNI;
                if (c & bit_AVX512VPOPCNTDQ)
                    bits |= VG_CPU_AVX512VPOPCNTDQ;
            }
            __cpuid_count(7, 1, a, b, c, d);
            if (zmm_ok && (a & (1u << 5)))
                bits |= VG_CPU_AVX512BF16;
            if (ymm_ok && (a & (1u << 4)))
                bits |= VG_CPU_AVXVNNI;
        }
    }
#endif
    const char *mask = getenv("VIGIL_CPU_MASK");
    if (mask && *mask)
        bits &= (unsigned)strtoul(mask, NULL, 16);
    cpu_bits = bits;

    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {VG_CPU_SSE42, "sse4.2"},
        {VG_CPU_POPCNT, "popcnt"},
        {VG_CPU_AVX2, "avx2"},
        {VG_CPU_FMA, "fma"},
        {VG_CPU_AVXVNNI, "avx-vnni"},
        {VG_CPU_AVX512F, "avx512f"},
        {VG_CPU_AVX512BW, "avx512bw"},
        {VG_CPU_AVX512VL, "avx512vl"},
        {VG_CPU_AVX512VNNI, "avx512vnni"},
        {VG_CPU_AVX512BF16, "avx512bf16"},
        {VG_CPU_AVX512VPOPCNTDQ, "avx512vpopcntdq"},
    };
    size_t off = 0;
    cpu_desc[0] = '\0';
    for (size_t i = 0; i < VG_ARRAY_LEN(names); i++) {
        if (!(bits & names[i].bit))
            continue;
        int n =
            snprintf(cpu_desc + off, sizeof cpu_desc - off, "%s%s", off ? " " : "", names[i].name);
        if (n < 0 || (size_t)n >= sizeof cpu_desc - off)
            break;
        off += (size_t)n;
    }
    if (!off)
        snprintf(cpu_desc, sizeof cpu_desc, "baseline");
}

unsigned vg_cpu_features(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return cpu_bits;
}

const char *vg_cpu_describe(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return cpu_desc;
}

int vg_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
