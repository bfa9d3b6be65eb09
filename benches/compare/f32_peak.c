// The f32 FMA ceiling of this CPU, to judge how close a compute-bound kernel (the encoder's
// matrix products) runs to it: 12 independent chains of fused multiply-adds per thread (enough
// to cover the FMA latency on Zen 4 and Intel cores), AVX-512 (16 lanes) and AVX2 (8 lanes),
// 1 thread and 2 threads. GFLOP/s counts a fused multiply-add as 2 operations.
//
//   gcc -O3 -funroll-loops -fopenmp benches/compare/f32_peak.c -o /tmp/f32_peak && /tmp/f32_peak
//
// (benches/RESULTS.md, "Encoding in f32 against the machine's FMA ceiling".)
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float chains512(long iters) {
    __m512 a[12];
    const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);  // keeps the chains live
}

__attribute__((target("avx2,fma"))) static float chains256(long iters) {
    __m256 a[12];
    const __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0];
}

int main(void) {
    const long iters = 200000000;
    for (int threads = 1; threads <= omp_get_num_procs() && threads <= 2; threads++) {
        for (int wide = 1; wide >= 0; wide--) {
            if (wide && !__builtin_cpu_supports("avx512f")) continue;
            float sink = 0;
            double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
            sink += wide ? chains512(iters) : chains256(iters);
            double s = now() - t0;
            int lanes = wide ? 16 : 8;
            printf("%s, %d thread(s): %.1f GFLOP/s%s\n", wide ? "AVX-512" : "AVX2+FMA", threads,
                   threads * iters * 12.0 * lanes * 2 / s / 1e9, sink == 1234.5f ? " " : "");
        }
    }
    return 0;
}
