/* Fuzzes the tfjs manifest parser and weight decoder: input = manifest JSON, a NUL byte, then the
 * shard bytes. Every outcome must be a clean error or a model whose tensors fit the shards. */
#include "core/core.h"
#include "nn/nn.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t mlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *bin = nul ? nul + 1 : data + size;
    size_t blen = nul ? size - mlen - 1 : 0;
    nn_weights *w = NULL;
    if (nn_weights_parse((const char *)data, mlen, bin, blen, &w) == 0) {
        /* touch every decoded value so ASan sees any read outside the block */
        float acc = 0;
        for (size_t i = 0; i < nn_weights_count(w); i++) {
            const nn_param *p = nn_weights_at(w, i);
            for (size_t k = 0; k < p->count; k++)
                acc += p->dtype == NN_DT_F32 ? p->f[k] : (float)p->i[k];
        }
        if (acc == 12345.678f)
            nn_weights_free(NULL);
        nn_weights_free(w);
    }
    return 0;
}
