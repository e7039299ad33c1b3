/* pmp.h: the one source of truth for the core's record layout and C decoder API.
 *
 * This file is read twice: by the C compiler (core/gatt.c includes it) and by cffi
 * (core/_build_ffi.py feeds it to ffi.cdef after dropping preprocessor lines). So it
 * holds only declarations cffi can parse: enums with explicit values, structs, and
 * function prototypes. core/layout.py builds the matching numpy dtype and checks it
 * against this struct (size and every offset) at import.
 *
 * Units are canonical everywhere: pressure mmHg, glucose mmol/L, pulse beats/min,
 * time int64 milliseconds since 1970-01-01 UTC. An absent value is NaN.
 */
#ifndef PMP_H
#define PMP_H
#include <stddef.h>
#include <stdint.h>

/* Reason a reading is not stored as clinical data (DESIGN.md "Validation and reason codes").
 * Exactly one per reading; PMP_R_OK means "stored". */
enum pmp_reason {
    PMP_R_OK = 0,
    PMP_R_DECODE = 1,
    PMP_R_SCHEMA = 2,
    PMP_R_TOPIC = 3,
    PMP_R_RANGE = 4,
    PMP_R_NOTNUM = 5,
    PMP_R_FUTURE = 6,
    PMP_R_STALE = 7,
    PMP_R_UNBOUND = 8,
    PMP_R_DUPLICATE = 9,
    PMP_R_CONFLICT = 10
};

/* What a record measures. */
enum pmp_kind {
    PMP_K_NONE = 0,
    PMP_K_BP = 1,          /* v: sys, dia, map (mmHg), pulse (bpm) */
    PMP_K_GLU = 2,         /* v: glucose (mmol/L), -, -, - ; aux: sample type, sample location */
    PMP_K_CGM = 3,         /* v: glucose (mmol/L), trend (mmol/L/min), quality (%), time offset (min) */
    PMP_K_GLU_CONTEXT = 4  /* v: carbohydrate (kg), medication (kg or L), HbA1c (%), exercise duration (s);
                              aux: carbohydrate id, meal, tester, health, exercise intensity (%),
                              medication id; 0xFF = absent */
};

/* Bits of pmp_reading.flags. */
enum pmp_flag {
    PMP_F_HAS_TIME = 0x0001,        /* t holds a measurement time */
    PMP_F_HAS_SEQ = 0x0002,         /* seq holds the device's sequence number */
    PMP_F_RANGE_LO = 0x0004,        /* censored glucose: below what the meter can measure */
    PMP_F_RANGE_HI = 0x0008,        /* censored glucose: above what the meter can measure */
    PMP_F_ARTIFACT = 0x0010,        /* body movement, cuff loose or improper position: out of windows */
    PMP_F_CONTROL = 0x0020,         /* control solution: stored, never clinical */
    PMP_F_TIME_FAULT = 0x0040,      /* meter reports its clock as faulty */
    PMP_F_CONTEXT_FOLLOWS = 0x0080, /* a 0x2A34 context record with the same seq follows */
    PMP_F_T_FROM_RX = 0x0100,       /* meter gave no time: t was taken from rx by validation */
    PMP_F_LATE = 0x0200,            /* measured more than 24 h before it arrived */
    PMP_F_BATTERY_LOW = 0x0400,     /* meter reports a low battery */
    PMP_F_DEVICE_FAULT = 0x0800     /* meter reports a sensor or device fault */
};

/* The unit a value arrived in (kept for audit; values are already converted). */
enum pmp_unit {
    PMP_U_NONE = 0,
    PMP_U_MMHG = 1,
    PMP_U_KPA = 2,
    PMP_U_KG_PER_L = 3,
    PMP_U_MOL_PER_L = 4,
    PMP_U_MMOL_PER_L = 5,
    PMP_U_MG_PER_DL = 6,
    PMP_U_KG = 7,
    PMP_U_L = 8
};

/* Why a GATT value could not be decoded. Every error maps to reason PMP_R_DECODE except
 * PMP_E_UUID (PMP_R_SCHEMA); core/codes.py holds the texts. */
enum pmp_gatt_error {
    PMP_E_OK = 0,
    PMP_E_EMPTY = 1,        /* zero-length value */
    PMP_E_TRUNCATED = 2,    /* a field announced by the flags is missing octets */
    PMP_E_DATE = 3,         /* impossible Date Time (month 13, hour 24, Feb 30, ...) */
    PMP_E_CGM_SIZE = 4,     /* CGM Size octet fits neither the flags nor flags + E2E-CRC */
    PMP_E_CGM_CRC = 5,      /* CGM E2E-CRC (CRC-16/MCRF4XX) mismatch */
    PMP_E_UUID = 6,         /* characteristic this decoder does not know */
    PMP_E_CAPACITY = 7      /* output array too small (a caller bug, never the device's) */
};

/* One reading, or one decoded GATT record: 88 bytes, 8-aligned. */
struct pmp_reading {
    int64_t t;            /* measurement time, ms UTC; meaningful when PMP_F_HAS_TIME */
    int64_t rx;           /* arrival time (hub receive or gateway arrival), ms UTC */
    uint64_t fingerprint; /* FNV-1a 64 of the content; dedup key when there is no seq */
    double v[4];          /* values in canonical units, meaning per pmp_kind; NaN = absent */
    int32_t device;       /* device index (gateway registry) */
    int32_t patient;      /* patient index, -1 until bound */
    uint32_t seq;         /* device sequence number; meaningful when PMP_F_HAS_SEQ */
    uint32_t status;      /* status bits exactly as the device sent them (0x2A35 measurement
                             status, 0x2A18 sensor status annunciation, 0x2AA7 24-bit annunciation) */
    uint16_t flags;       /* pmp_flag bits */
    uint8_t kind;         /* pmp_kind */
    uint8_t reason;       /* pmp_reason */
    uint8_t unit_in;      /* pmp_unit the main value arrived in */
    uint8_t user;         /* user slot on a shared meter; 0xFF = none */
    uint8_t aux[10];      /* small per-kind fields (see pmp_kind); 0xFF = absent */
};

/* What the hub says about one GATT value. */
struct pmp_gatt_context {
    int64_t rx;           /* hub receive time, ms UTC */
    int64_t cgm_start;    /* CGM session start, ms UTC; used when has_cgm_start */
    int32_t device;       /* device index copied into every record */
    int16_t tz_min;       /* meter local clock minus UTC, minutes */
    uint8_t has_cgm_start;
    uint8_t reserved;
};

/* Decode one characteristic value into out[0..*n_out). Returns a pmp_gatt_error. On error
 * *n_out is 0. Never reads value beyond len, never writes out beyond out_cap. */
int pmp_gatt_decode(uint16_t uuid, const uint8_t *value, size_t len,
                    const struct pmp_gatt_context *ctx,
                    struct pmp_reading *out, size_t out_cap, size_t *n_out);

/* Decode n values laid end to end in buf: value i is buf[offsets[i] .. offsets[i+1]).
 * Every value yields its records, or exactly one record with reason DECODE/SCHEMA (kind
 * from its uuid, device and rx from its context, fingerprint of the raw value) when it
 * fails. out_value[j] is the index of the value record j came from; errors[i] the
 * pmp_gatt_error of value i. Returns the number of records, or -1 when out_cap is too
 * small (n + total_bytes / 6 always suffices). */
int64_t pmp_gatt_decode_batch(const uint8_t *buf, const int64_t *offsets, size_t n,
                              const uint16_t *uuid, const struct pmp_gatt_context *ctx,
                              struct pmp_reading *out, size_t out_cap,
                              int32_t *out_value, uint8_t *errors);

#endif
