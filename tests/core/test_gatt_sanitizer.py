"""The C decoders under AddressSanitizer + UndefinedBehaviorSanitizer, fuzzed.

Two harnesses share one seeded corpus (random octets, well-formed values, mutated values,
each with a random context including int64/int16 extremes):

- core/gatt.c compiled with the PMP_SANITIZE flags of core/_build_ffi.py together with a
  small C driver, which decodes every value alone (output capacities 0, 1, 2 and enough)
  and the corpus again in batches;
- the cffi extension itself built with ``PMP_SANITIZE=1`` into a temporary directory and
  driven from Python with libasan preloaded.

Both copy every value into its own malloc block of exactly its length, so a read one octet
past the value is an ASan report. Any sanitizer report fails the test.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from core import _build_ffi
from core.layout import GATT_CONTEXT_DTYPE
from tests.core import gatt_values as gv

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = 20240229
VALUES_PER_SOURCE = 30000

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pmp.h"

struct entry { uint16_t uuid; uint32_t len; struct pmp_gatt_context ctx; const uint8_t *value; };

static void *take(size_t n) { return malloc(n ? n : 1); }

static void decode_one(const struct entry *e)
{
    uint8_t *value = malloc(e->len);  /* exactly len octets: any over-read is reported */
    if (e->len)
        memcpy(value, e->value, e->len);
    size_t caps[4] = {0, 1, 2, e->len / 6 + 1};
    for (int c = 0; c < 4; c++) {
        struct pmp_reading *out = malloc(caps[c] * sizeof *out);
        size_t n_out = 99;
        int err = pmp_gatt_decode(e->uuid, value, e->len, &e->ctx, out, caps[c], &n_out);
        if (n_out > caps[c] || (err != PMP_E_OK && n_out != 0) || err < 0 || err > PMP_E_CAPACITY) {
            fprintf(stderr, "contract broken: uuid %04x len %u err %d n_out %zu\n", e->uuid, e->len, err, n_out);
            exit(3);
        }
        free(out);
    }
    free(value);
}

static void decode_batch(const struct entry *e, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += e[i].len;
    uint8_t *buf = take(total);
    int64_t *offsets = malloc((n + 1) * sizeof *offsets);
    uint16_t *uuid = take(n * sizeof *uuid);
    struct pmp_gatt_context *ctx = take(n * sizeof *ctx);
    offsets[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].len)
            memcpy(buf + offsets[i], e[i].value, e[i].len);
        offsets[i + 1] = offsets[i] + e[i].len;
        uuid[i] = e[i].uuid;
        ctx[i] = e[i].ctx;
    }
    size_t caps[2] = {n + total / 6, n / 2};
    for (int c = 0; c < 2; c++) {
        struct pmp_reading *out = take(caps[c] * sizeof *out);
        int32_t *out_value = take(caps[c] * sizeof *out_value);
        uint8_t *errors = take(n);
        int64_t got = pmp_gatt_decode_batch(buf, offsets, n, uuid, ctx, out, caps[c], out_value, errors);
        if ((c == 0 && got < (int64_t)n) || got > (int64_t)caps[c]) {
            fprintf(stderr, "batch contract broken: n %zu cap %zu got %lld\n", n, caps[c], (long long)got);
            exit(3);
        }
        free(out); free(out_value); free(errors);
    }
    free(buf); free(offsets); free(uuid); free(ctx);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 2;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = take((size_t)size);
    if (fread(data, 1, (size_t)size, f) != (size_t)size)
        return 2;
    fclose(f);
    size_t cap = 1024, n = 0, at = 0;
    struct entry *entries = malloc(cap * sizeof *entries);
    while (at < (size_t)size) {
        if (n == cap)
            entries = realloc(entries, (cap *= 2) * sizeof *entries);
        struct entry *e = &entries[n++];
        memcpy(&e->uuid, data + at, 2);
        memcpy(&e->len, data + at + 2, 4);
        memcpy(&e->ctx, data + at + 6, sizeof e->ctx);
        e->value = data + at + 6 + sizeof e->ctx;
        at += 6 + sizeof e->ctx + e->len;
    }
    for (size_t i = 0; i < n; i++)
        decode_one(&entries[i]);
    for (size_t i = 0; i < n; i += 61)
        decode_batch(&entries[i], n - i < 61 ? n - i : 61);
    printf("decoded %zu values\n", n);
    free(entries);
    free(data);
    return 0;
}
"""

def sanitizer_report(stderr: str) -> bool:
    return "Sanitizer" in stderr or "runtime error" in stderr


EXTREME_INT64 = [-(2**63), -1, 0, 1, 2**63 - 1, 2**63 - 60_000 * 65535]


def random_context(rng: random.Random) -> bytes:
    ctx = np.zeros(1, dtype=GATT_CONTEXT_DTYPE)
    ctx["rx"] = rng.choice(EXTREME_INT64 + [rng.randrange(-(2**63), 2**63)])
    ctx["cgm_start"] = rng.choice(EXTREME_INT64 + [rng.randrange(-(2**63), 2**63)])
    ctx["device"] = rng.randrange(-(2**31), 2**31)
    ctx["tz_min"] = rng.choice([-(2**15), 2**15 - 1, 0, rng.randrange(-(2**15), 2**15)])
    ctx["has_cgm_start"] = rng.randrange(256)
    return ctx.tobytes()


def corpus(rng: random.Random, per_source: int = VALUES_PER_SOURCE) -> bytes:
    """Random bytes, well-formed values and mutated values, each with a random context."""
    pick = rng.randint
    items = []
    for _ in range(per_source):
        uuid = rng.choice(gv.KNOWN_UUIDS + (rng.randrange(0x10000),))
        items.append((uuid, rng.randbytes(rng.randrange(0, 80))))
        uuid = rng.choice(gv.KNOWN_UUIDS)
        valid = gv.random_value(uuid, pick)
        items.append((uuid, valid))
        items.append((uuid, gv.mutate(valid, pick)))
    return b"".join(
        uuid.to_bytes(2, "little") + len(value).to_bytes(4, "little") + random_context(rng) + value
        for uuid, value in items
    )


@pytest.fixture(scope="module")
def sanitized_driver(tmp_path_factory) -> pathlib.Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: the sanitizer test needs gcc (scripts/install installs it)")
    tmp = tmp_path_factory.mktemp("gatt_sanitize")
    (tmp / "driver.c").write_text(DRIVER)
    flags = _build_ffi.BASE_CFLAGS + _build_ffi.SANITIZE_FLAGS
    exe = tmp / "driver"
    subprocess.run(
        [cc, *flags, "-I", str(ROOT / "include"), str(ROOT / "core" / "gatt.c"), str(tmp / "driver.c"),
         "-o", str(exe), "-fsanitize=address,undefined"],
        check=True, capture_output=True, text=True,
    )
    return exe


def test_fuzzed_decoders_are_sanitizer_clean(sanitized_driver, tmp_path):
    corpus_file = tmp_path / "corpus.bin"
    corpus_file.write_bytes(corpus(random.Random(SEED)))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    done = subprocess.run([str(sanitized_driver), str(corpus_file)], capture_output=True, text=True, env=env)
    assert not sanitizer_report(done.stderr), done.stderr[-4000:]
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == f"decoded {3 * VALUES_PER_SOURCE} values"


PYTHON_DRIVER = r"""
import importlib.util, sys
import cffi

spec = importlib.util.spec_from_file_location("_gatt_c", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
ffi, lib = module.ffi, module.lib
libc_ffi = cffi.FFI()
libc_ffi.cdef("void *malloc(size_t); void free(void *);")
libc = libc_ffi.dlopen(None)


def exact(octets):
    block = libc.malloc(len(octets))
    pointer = ffi.cast("uint8_t *", int(libc_ffi.cast("uintptr_t", block)))
    ffi.memmove(pointer, octets, len(octets))
    return block, pointer


data = open(sys.argv[2], "rb").read()
context_size = ffi.sizeof("struct pmp_gatt_context")
at = count = 0
n_out = ffi.new("size_t *")
while at < len(data):
    uuid = int.from_bytes(data[at:at + 2], "little")
    length = int.from_bytes(data[at + 2:at + 6], "little")
    ctx = ffi.new("struct pmp_gatt_context *")
    ffi.memmove(ctx, data[at + 6:at + 6 + context_size], context_size)
    block, value = exact(data[at + 6 + context_size:at + 6 + context_size + length])
    cap = length // 6 + 1
    out = ffi.new("struct pmp_reading[]", cap)
    lib.pmp_gatt_decode(uuid, value, length, ctx, out, cap, n_out)
    libc.free(block)
    at += 6 + context_size + length
    count += 1
print(f"decoded {count} values")
"""


def test_pmp_sanitize_build_is_sanitizer_clean(tmp_path):
    """``PMP_SANITIZE=1`` builds an instrumented extension; fuzzing it reports nothing."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "gatt.c").symlink_to(ROOT / "core" / "gatt.c")  # cffi builds in tmpdir
    build = ("import sys, core._build_ffi as b; assert b.SANITIZE; "
             "print(b.make_ffi().compile(tmpdir=sys.argv[1]))")
    built = subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, PMP_SANITIZE="1"), check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    extension = pathlib.Path(built.stdout.strip().splitlines()[-1])
    assert b"libasan.so" in extension.read_bytes()
    corpus_file = tmp_path / "corpus.bin"
    corpus_file.write_bytes(corpus(random.Random(SEED + 1), VALUES_PER_SOURCE // 3))
    (tmp_path / "drive.py").write_text(PYTHON_DRIVER)
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                             check=True).stdout.strip()
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    done = subprocess.run([sys.executable, str(tmp_path / "drive.py"), str(extension), str(corpus_file)],
                          capture_output=True, text=True, env=env, check=False)
    assert not sanitizer_report(done.stderr), done.stderr[-4000:]
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == f"decoded {VALUES_PER_SOURCE} values"


def test_sanitizer_build_catches_an_over_read(sanitized_driver, tmp_path):
    """The harness is live: a driver that reads one octet past a value is reported."""
    bad = tmp_path / "bad.c"
    bad.write_text("#include <stdlib.h>\nint main(void) { volatile unsigned char *p = malloc(3);"
                   " return p[3]; }\n")
    exe = tmp_path / "bad"
    subprocess.run([shutil.which("cc") or "gcc", *_build_ffi.SANITIZE_FLAGS, str(bad), "-o", str(exe)], check=True)
    done = subprocess.run([str(exe)], capture_output=True, text=True,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert done.returncode != 0
    assert sanitizer_report(done.stderr)
