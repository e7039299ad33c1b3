/* GATT characteristic decoders: 0x2A35 Blood Pressure Measurement, 0x2A18 Glucose
 * Measurement, 0x2A34 Glucose Measurement Context, 0x2AA7 CGM Measurement.
 *
 * Written from the Bluetooth SIG GATT Specification Supplement (field order LSO first,
 * every optional field in flag order) and the decoder policy of DESIGN.md. The
 * pure-Python twin is core/reference/gatt.py; the two must give bit-identical records,
 * so every floating-point conversion below is done in one fixed order (and the build
 * uses -ffp-contract=off).
 *
 * Safety invariants: a value is never read beyond len (each decoder checks the length its
 * flags imply before reading), out is never written beyond out_cap, and no signed
 * arithmetic can overflow (CGM time is added modulo 2^64).
 */
#include <string.h>

#include "pmp.h"

/* ---- tables ------------------------------------------------------------------------ */

enum {
    UUID_BPM = 0x2A35,
    UUID_GLUCOSE = 0x2A18,
    UUID_GLUCOSE_CONTEXT = 0x2A34,
    UUID_CGM = 0x2AA7
};

/* IEEE-11073 SFLOAT specials, compared as whole 16-bit values. */
enum {
    SFLOAT_NAN = 0x07FF,
    SFLOAT_NRES = 0x0800,
    SFLOAT_PLUS_INF = 0x07FE,
    SFLOAT_MINUS_INF = 0x0802,
    SFLOAT_RESERVED = 0x0801
};

/* 10^k, exact in binary64 for k <= 22; SFLOAT exponents need k <= 8. */
static const double POW10[9] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};

#define KPA_TO_MMHG 7.50062
#define MGDL_PER_MMOLL 18.016
#define KGL_TO_MGDL 100000.0
#define MOLL_TO_MMOLL 1000.0
#define MS_PER_MINUTE 60000

/* 0x2A35 flags and measurement status bits. */
#define BPM_KPA 0x01
#define BPM_TIME 0x02
#define BPM_PULSE 0x04
#define BPM_USER 0x08
#define BPM_STATUS 0x10
#define BPM_ST_ARTIFACT 0x0023 /* body movement, cuff too loose, improper position */

/* 0x2A18 flags, sample type and sensor status annunciation bits. */
#define GLU_TIME_OFFSET 0x01
#define GLU_CONCENTRATION 0x02
#define GLU_MOL_PER_L 0x04
#define GLU_STATUS 0x08
#define GLU_CONTEXT_FOLLOWS 0x10
#define GLU_TYPE_CONTROL 10
#define GLU_LOCATION_CONTROL 4
#define GLU_SS_BATTERY_LOW 0x0001
#define GLU_SS_FAULT 0x0402 /* sensor malfunction, general device fault */
#define GLU_SS_HIGH 0x0020
#define GLU_SS_LOW 0x0040
#define GLU_SS_TIME_FAULT 0x0800

/* 0x2A34 flags. */
#define CTX_CARB 0x01
#define CTX_MEAL 0x02
#define CTX_TESTER_HEALTH 0x04
#define CTX_EXERCISE 0x08
#define CTX_MEDICATION 0x10
#define CTX_MEDICATION_L 0x20
#define CTX_HBA1C 0x40
#define CTX_EXTENDED 0x80

/* 0x2AA7 flags and 24-bit annunciation bits (Status octet 0-7, Cal/Temp 8-15,
 * Warning 16-23). */
#define CGM_TREND 0x01
#define CGM_QUALITY 0x02
#define CGM_WARNING_OCTET 0x20
#define CGM_CALTEMP_OCTET 0x40
#define CGM_STATUS_OCTET 0x80
#define CGM_MIN_SIZE 6
#define CGM_AN_BATTERY_LOW 0x000002u
#define CGM_AN_FAULT 0x000028u /* sensor malfunction, general device fault */
#define CGM_AN_LOW 0x400000u
#define CGM_AN_HIGH 0x800000u

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* ---- small helpers ----------------------------------------------------------------- */

static uint16_t u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static double not_a_number(void)
{
    return __builtin_nan("");
}

/* SFLOAT -> double; every special is absent (NaN). */
static double sfloat(uint16_t raw)
{
    if (raw == SFLOAT_NAN || raw == SFLOAT_NRES || raw == SFLOAT_PLUS_INF ||
        raw == SFLOAT_MINUS_INF || raw == SFLOAT_RESERVED)
        return not_a_number();
    int mantissa = raw & 0x0FFF;
    if (mantissa >= 0x0800)
        mantissa -= 0x1000;
    int exponent = raw >> 12;
    if (exponent >= 8)
        exponent -= 16;
    if (exponent >= 0)
        return (double)mantissa * POW10[exponent];
    return (double)mantissa / POW10[-exponent];
}

/* A glucose concentration of -INF / +INF is the meter's LO / HI display. */
static uint16_t concentration_range(uint16_t raw)
{
    if (raw == SFLOAT_MINUS_INF)
        return PMP_F_RANGE_LO;
    if (raw == SFLOAT_PLUS_INF)
        return PMP_F_RANGE_HI;
    return 0;
}

static int is_nan(double x)
{
    return x != x;
}

static uint64_t fnv1a(uint16_t uuid, const uint8_t *p, size_t len)
{
    uint64_t h = FNV_OFFSET;
    h = (h ^ (uuid & 0xFFu)) * FNV_PRIME;
    h = (h ^ (uuid >> 8)) * FNV_PRIME;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

/* CRC-16/MCRF4XX: reflected polynomial 0x1021 (0x8408), init 0xFFFF, no final xor. */
static uint16_t crc16_mcrf4xx(const uint8_t *p, size_t len)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0x8408) : (uint16_t)(crc >> 1);
    }
    return crc;
}

static int is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int month)
{
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : DAYS[month - 1];
}

/* Days from 1970-01-01 to the given proleptic Gregorian date (year >= 1). */
static int64_t days_from_civil(int year, int month, int day)
{
    int y = month <= 2 ? year - 1 : year;
    int era = y / 400;
    int yoe = y - era * 400;
    int mp = month > 2 ? month - 3 : month + 9;
    int doy = (153 * mp + 2) / 5 + day - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

enum date_result { DATE_UNKNOWN, DATE_OK, DATE_IMPOSSIBLE };

/* Date Time (7 octets) read as if it were UTC, in ms. Year, month or day 0: unknown. */
static enum date_result date_time(const uint8_t *p, int64_t *ms)
{
    int year = u16le(p), month = p[2], day = p[3], hour = p[4], minute = p[5], second = p[6];
    if (year == 0 || month == 0 || day == 0)
        return DATE_UNKNOWN;
    if (year < 1582 || year > 9999 || month > 12 || day > days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 59)
        return DATE_IMPOSSIBLE;
    *ms = ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60000LL +
          second * 1000LL;
    return DATE_OK;
}

static void blank(struct pmp_reading *r, const struct pmp_gatt_context *ctx, uint8_t kind)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 4; i++)
        r->v[i] = not_a_number();
    r->rx = ctx->rx;
    r->device = ctx->device;
    r->patient = -1;
    r->user = 0xFF;
    memset(r->aux, 0xFF, sizeof r->aux);
    r->kind = kind;
    r->reason = PMP_R_OK;
}

static uint8_t uuid_kind(uint16_t uuid)
{
    switch (uuid) {
    case UUID_BPM: return PMP_K_BP;
    case UUID_GLUCOSE: return PMP_K_GLU;
    case UUID_GLUCOSE_CONTEXT: return PMP_K_GLU_CONTEXT;
    case UUID_CGM: return PMP_K_CGM;
    default: return PMP_K_NONE;
    }
}

/* ---- 0x2A35 Blood Pressure Measurement --------------------------------------------- */

static int decode_bpm(const uint8_t *p, size_t len, const struct pmp_gatt_context *ctx,
                      struct pmp_reading *r)
{
    uint8_t flags = p[0];
    size_t need = 1 + 6 + ((flags & BPM_TIME) ? 7 : 0) + ((flags & BPM_PULSE) ? 2 : 0) +
                  ((flags & BPM_USER) ? 1 : 0) + ((flags & BPM_STATUS) ? 2 : 0);
    if (len < need)
        return PMP_E_TRUNCATED;
    blank(r, ctx, PMP_K_BP);
    size_t at = 1;
    for (int i = 0; i < 3; i++, at += 2) {
        double x = sfloat(u16le(p + at));
        r->v[i] = (flags & BPM_KPA) && !is_nan(x) ? x * KPA_TO_MMHG : x;
    }
    r->unit_in = (flags & BPM_KPA) ? PMP_U_KPA : PMP_U_MMHG;
    if (flags & BPM_TIME) {
        int64_t local_ms = 0;
        enum date_result d = date_time(p + at, &local_ms);
        if (d == DATE_IMPOSSIBLE)
            return PMP_E_DATE;
        if (d == DATE_OK) {
            r->t = local_ms - (int64_t)ctx->tz_min * MS_PER_MINUTE;
            r->flags |= PMP_F_HAS_TIME;
        }
        at += 7;
    }
    if (flags & BPM_PULSE) {
        r->v[3] = sfloat(u16le(p + at));
        at += 2;
    }
    if (flags & BPM_USER)
        r->user = p[at++];
    if (flags & BPM_STATUS) {
        r->status = u16le(p + at);
        if (r->status & BPM_ST_ARTIFACT)
            r->flags |= PMP_F_ARTIFACT;
    }
    r->fingerprint = fnv1a(UUID_BPM, p, len);
    return PMP_E_OK;
}

/* ---- 0x2A18 Glucose Measurement ---------------------------------------------------- */

static int decode_glucose(const uint8_t *p, size_t len, const struct pmp_gatt_context *ctx,
                          struct pmp_reading *r)
{
    uint8_t flags = p[0];
    size_t need = 1 + 2 + 7 + ((flags & GLU_TIME_OFFSET) ? 2 : 0) +
                  ((flags & GLU_CONCENTRATION) ? 3 : 0) + ((flags & GLU_STATUS) ? 2 : 0);
    if (len < need)
        return PMP_E_TRUNCATED;
    blank(r, ctx, PMP_K_GLU);
    r->seq = u16le(p + 1);
    r->flags |= PMP_F_HAS_SEQ;
    int64_t local_ms = 0;
    enum date_result d = date_time(p + 3, &local_ms);
    if (d == DATE_IMPOSSIBLE)
        return PMP_E_DATE;
    size_t at = 10;
    int64_t offset_min = 0;
    if (flags & GLU_TIME_OFFSET) {
        offset_min = (int16_t)u16le(p + at);
        at += 2;
    }
    if (d == DATE_OK) {
        r->t = local_ms + offset_min * MS_PER_MINUTE - (int64_t)ctx->tz_min * MS_PER_MINUTE;
        r->flags |= PMP_F_HAS_TIME;
    }
    if (flags & GLU_CONCENTRATION) {
        uint16_t raw = u16le(p + at);
        double x = sfloat(raw);
        r->flags |= concentration_range(raw);
        if (flags & GLU_MOL_PER_L) {
            r->unit_in = PMP_U_MOL_PER_L;
            r->v[0] = is_nan(x) ? x : x * MOLL_TO_MMOLL;
        } else {
            r->unit_in = PMP_U_KG_PER_L;
            r->v[0] = is_nan(x) ? x : (x * KGL_TO_MGDL) / MGDL_PER_MMOLL;
        }
        uint8_t type = p[at + 2] & 0x0F, location = p[at + 2] >> 4;
        r->aux[0] = type;
        r->aux[1] = location;
        if (type == GLU_TYPE_CONTROL || location == GLU_LOCATION_CONTROL)
            r->flags |= PMP_F_CONTROL;
        at += 3;
    }
    if (flags & GLU_STATUS) {
        uint16_t ss = u16le(p + at);
        r->status = ss;
        if (ss & GLU_SS_BATTERY_LOW)
            r->flags |= PMP_F_BATTERY_LOW;
        if (ss & GLU_SS_FAULT)
            r->flags |= PMP_F_DEVICE_FAULT;
        if (ss & GLU_SS_HIGH)
            r->flags |= PMP_F_RANGE_HI;
        if (ss & GLU_SS_LOW)
            r->flags |= PMP_F_RANGE_LO;
        if (ss & GLU_SS_TIME_FAULT)
            r->flags |= PMP_F_TIME_FAULT;
    }
    if (flags & GLU_CONTEXT_FOLLOWS)
        r->flags |= PMP_F_CONTEXT_FOLLOWS;
    r->fingerprint = fnv1a(UUID_GLUCOSE, p, len);
    return PMP_E_OK;
}

/* ---- 0x2A34 Glucose Measurement Context -------------------------------------------- */

static int decode_context(const uint8_t *p, size_t len, const struct pmp_gatt_context *ctx,
                          struct pmp_reading *r)
{
    uint8_t flags = p[0];
    size_t need = 1 + 2 + ((flags & CTX_EXTENDED) ? 1 : 0) + ((flags & CTX_CARB) ? 3 : 0) +
                  ((flags & CTX_MEAL) ? 1 : 0) + ((flags & CTX_TESTER_HEALTH) ? 1 : 0) +
                  ((flags & CTX_EXERCISE) ? 3 : 0) + ((flags & CTX_MEDICATION) ? 3 : 0) +
                  ((flags & CTX_HBA1C) ? 2 : 0);
    if (len < need)
        return PMP_E_TRUNCATED;
    blank(r, ctx, PMP_K_GLU_CONTEXT);
    r->seq = u16le(p + 1);
    r->flags |= PMP_F_HAS_SEQ;
    size_t at = 3;
    if (flags & CTX_EXTENDED)
        at += 1; /* extended flags: all RFU */
    if (flags & CTX_CARB) {
        r->aux[0] = p[at];
        r->v[0] = sfloat(u16le(p + at + 1));
        at += 3;
    }
    if (flags & CTX_MEAL)
        r->aux[1] = p[at++];
    if (flags & CTX_TESTER_HEALTH) {
        r->aux[2] = p[at] & 0x0F;
        r->aux[3] = p[at] >> 4;
        at += 1;
    }
    if (flags & CTX_EXERCISE) {
        r->v[3] = (double)u16le(p + at);
        r->aux[4] = p[at + 2];
        at += 3;
    }
    if (flags & CTX_MEDICATION) {
        r->aux[5] = p[at];
        r->v[1] = sfloat(u16le(p + at + 1));
        r->unit_in = (flags & CTX_MEDICATION_L) ? PMP_U_L : PMP_U_KG;
        at += 3;
    }
    if (flags & CTX_HBA1C)
        r->v[2] = sfloat(u16le(p + at));
    r->fingerprint = fnv1a(UUID_GLUCOSE_CONTEXT, p, len);
    return PMP_E_OK;
}

/* ---- 0x2AA7 CGM Measurement -------------------------------------------------------- */

/* Length of a CGM record without its E2E-CRC, from its flags. */
static size_t cgm_length(uint8_t flags)
{
    return CGM_MIN_SIZE + ((flags & CGM_STATUS_OCTET) ? 1 : 0) +
           ((flags & CGM_CALTEMP_OCTET) ? 1 : 0) + ((flags & CGM_WARNING_OCTET) ? 1 : 0) +
           ((flags & CGM_TREND) ? 2 : 0) + ((flags & CGM_QUALITY) ? 2 : 0);
}

static void cgm_record(const uint8_t *p, size_t size, const struct pmp_gatt_context *ctx,
                       struct pmp_reading *r)
{
    uint8_t flags = p[1];
    blank(r, ctx, PMP_K_CGM);
    r->unit_in = PMP_U_MG_PER_DL;
    uint16_t raw = u16le(p + 2);
    double glucose = sfloat(raw);
    r->v[0] = is_nan(glucose) ? glucose : glucose / MGDL_PER_MMOLL;
    r->flags |= concentration_range(raw);
    uint16_t offset_min = u16le(p + 4);
    r->v[3] = (double)offset_min;
    if (ctx->has_cgm_start) {
        r->t = (int64_t)((uint64_t)ctx->cgm_start + (uint64_t)offset_min * MS_PER_MINUTE);
        r->flags |= PMP_F_HAS_TIME;
    }
    size_t at = 6;
    uint32_t annunciation = 0;
    if (flags & CGM_STATUS_OCTET)
        annunciation |= (uint32_t)p[at++];
    if (flags & CGM_CALTEMP_OCTET)
        annunciation |= (uint32_t)p[at++] << 8;
    if (flags & CGM_WARNING_OCTET)
        annunciation |= (uint32_t)p[at++] << 16;
    r->status = annunciation;
    if (annunciation & CGM_AN_BATTERY_LOW)
        r->flags |= PMP_F_BATTERY_LOW;
    if (annunciation & CGM_AN_FAULT)
        r->flags |= PMP_F_DEVICE_FAULT;
    if (annunciation & CGM_AN_LOW)
        r->flags |= PMP_F_RANGE_LO;
    if (annunciation & CGM_AN_HIGH)
        r->flags |= PMP_F_RANGE_HI;
    if (flags & CGM_TREND) {
        double trend = sfloat(u16le(p + at));
        r->v[1] = is_nan(trend) ? trend : trend / MGDL_PER_MMOLL;
        at += 2;
    }
    if (flags & CGM_QUALITY)
        r->v[2] = sfloat(u16le(p + at));
    r->fingerprint = fnv1a(UUID_CGM, p, size);
}

static int decode_cgm(const uint8_t *p, size_t len, const struct pmp_gatt_context *ctx,
                      struct pmp_reading *out, size_t out_cap, size_t *n_out)
{
    size_t at = 0, n = 0;
    while (at < len) {
        size_t left = len - at;
        if (left < 2)
            return PMP_E_TRUNCATED;
        size_t size = p[at], plain = cgm_length(p[at + 1]);
        if (size != plain && size != plain + 2)
            return PMP_E_CGM_SIZE;
        if (size > left)
            return PMP_E_TRUNCATED;
        if (size == plain + 2 && crc16_mcrf4xx(p + at, plain) != u16le(p + at + plain))
            return PMP_E_CGM_CRC;
        if (n >= out_cap)
            return PMP_E_CAPACITY;
        cgm_record(p + at, size, ctx, &out[n++]);
        at += size;
    }
    *n_out = n;
    return PMP_E_OK;
}

/* ---- public API ---------------------------------------------------------------------- */

int pmp_gatt_decode(uint16_t uuid, const uint8_t *value, size_t len,
                    const struct pmp_gatt_context *ctx,
                    struct pmp_reading *out, size_t out_cap, size_t *n_out)
{
    *n_out = 0;
    uint8_t kind = uuid_kind(uuid);
    if (kind == PMP_K_NONE)
        return PMP_E_UUID;
    if (len == 0)
        return PMP_E_EMPTY;
    if (kind == PMP_K_CGM)
        return decode_cgm(value, len, ctx, out, out_cap, n_out);
    if (out_cap == 0)
        return PMP_E_CAPACITY;
    int err;
    if (kind == PMP_K_BP)
        err = decode_bpm(value, len, ctx, out);
    else if (kind == PMP_K_GLU)
        err = decode_glucose(value, len, ctx, out);
    else
        err = decode_context(value, len, ctx, out);
    if (err == PMP_E_OK)
        *n_out = 1;
    return err;
}

int64_t pmp_gatt_decode_batch(const uint8_t *buf, const int64_t *offsets, size_t n,
                              const uint16_t *uuid, const struct pmp_gatt_context *ctx,
                              struct pmp_reading *out, size_t out_cap,
                              int32_t *out_value, uint8_t *errors)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)(offsets[i + 1] - offsets[i]);
        const uint8_t *value = len ? buf + offsets[i] : buf;
        if (j >= out_cap)
            return -1;
        size_t got = 0;
        int err = pmp_gatt_decode(uuid[i], value, len, &ctx[i], out + j, out_cap - j, &got);
        if (err == PMP_E_CAPACITY)
            return -1;
        errors[i] = (uint8_t)err;
        if (err != PMP_E_OK) {
            struct pmp_reading *r = &out[j];
            blank(r, &ctx[i], uuid_kind(uuid[i]));
            r->reason = err == PMP_E_UUID ? PMP_R_SCHEMA : PMP_R_DECODE;
            r->fingerprint = fnv1a(uuid[i], value, len);
            got = 1;
        }
        for (size_t k = 0; k < got; k++)
            out_value[j + k] = (int32_t)i;
        j += got;
    }
    return (int64_t)j;
}
