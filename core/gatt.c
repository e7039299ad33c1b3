/* GATT characteristic decoders: placeholder until the decoders land (every value is
 * reported as an unknown characteristic). */
#include "pmp.h"

int pmp_gatt_decode(uint16_t uuid, const uint8_t *value, size_t len,
                    const struct pmp_gatt_context *ctx,
                    struct pmp_reading *out, size_t out_cap, size_t *n_out)
{
    (void)uuid; (void)value; (void)len; (void)ctx; (void)out; (void)out_cap;
    *n_out = 0;
    return PMP_E_UUID;
}

int64_t pmp_gatt_decode_batch(const uint8_t *buf, const int64_t *offsets, size_t n,
                              const uint16_t *uuid, const struct pmp_gatt_context *ctx,
                              struct pmp_reading *out, size_t out_cap,
                              int32_t *out_value, uint8_t *errors)
{
    (void)buf; (void)offsets; (void)n; (void)uuid; (void)ctx; (void)out; (void)out_cap;
    (void)out_value; (void)errors;
    return -1;
}
