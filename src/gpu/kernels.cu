// vellum's GPU kernels, compiled at run time by NVRTC for the device's architecture
// (src/gpu/mod.rs). No CUDA headers are needed: 16-bit values are converted by hand.
//
// select_topk   per query, the best `kk` (score, row) pairs of a tile of scores, merged into the
//               query's running list (a shared-memory buffer, a rising threshold, bitonic sort).
// maxsim_*      late-interaction scores (sum over query tokens of the best document token).

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;

#define CAP 4096
#define PER 2
#define NEG_INF (__int_as_float(0xff800000))
#define NO_ROW 0xffffffffu

// ---------------------------------------------------------------------------------------------
// 16-bit loads.

__device__ __forceinline__ float load(const float* p, i64 i) { return p[i]; }

struct f16 { u16 bits; };
struct bf16 { u16 bits; };

__device__ __forceinline__ float load(const f16* p, i64 i) {
    float f;
    unsigned short h = p[i].bits;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ float load(const bf16* p, i64 i) {
    return __uint_as_float(((u32)p[i].bits) << 16);
}

// ---------------------------------------------------------------------------------------------
// Top-k selection.

// `a` ranks before `b`: higher score, then lower row (any fixed rule will do: the host rescores
// candidates exactly and applies vellum's own ranking rule).
__device__ __forceinline__ bool better(float a, u32 ia, float b, u32 ib) {
    return a > b || (a == b && ia < ib);
}

// Sorts s/id[0..p) best first; p is a power of two. Every thread of the block calls it.
__device__ void bitonic(float* s, u32* id, int p) {
    for (int size = 2; size <= p; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int t = threadIdx.x; t < p / 2; t += blockDim.x) {
                int i = 2 * t - (t & (stride - 1));
                int j = i + stride;
                bool swap = ((i & size) == 0) ? better(s[j], id[j], s[i], id[i])
                                              : better(s[i], id[i], s[j], id[j]);
                if (swap) {
                    float ts = s[i]; s[i] = s[j]; s[j] = ts;
                    u32 ti = id[i]; id[i] = id[j]; id[j] = ti;
                }
            }
            __syncthreads();
        }
    }
}

// Keeps the best kk of the buffer's `*count` entries (count >= kk) and raises the threshold to
// the kk-th score. Every thread of the block calls it.
__device__ void compact(float* s, u32* id, int* count, float* thresh, int kk) {
    __syncthreads();
    int n = *count;
    int p = 1;
    while (p < n) p <<= 1;
    for (int i = n + threadIdx.x; i < p; i += blockDim.x) { s[i] = NEG_INF; id[i] = NO_ROW; }
    __syncthreads();
    bitonic(s, id, p);
    if (threadIdx.x == 0) { *count = kk; *thresh = s[kk - 1]; }
    __syncthreads();
}

// One block per query. `scores` holds `ncols` scores per query (row stride `ld`) for the global
// rows row0 .. row0 + ncols. With `affine`, a row's score is `score * scale[row] + bias[row]`.
// Rows set in the `deleted` bitmap are skipped. `top_s` / `top_i` ([queries][kk], best first)
// hold the running list: read, merged with the tile, written back. kk <= CAP - blockDim.x * PER.
// Every row left out scores at most the list's last score: rows are admitted above a threshold
// that only rises, and the threshold is always the kk-th best score seen.
extern "C" __global__ void select_topk(const float* __restrict__ scores, i64 ld, int ncols,
                                       int affine, const float* __restrict__ scale,
                                       const float* __restrict__ bias,
                                       const u32* __restrict__ deleted, i64 row0, int kk,
                                       float* __restrict__ top_s, u32* __restrict__ top_i) {
    __shared__ float s[CAP];
    __shared__ u32 id[CAP];
    __shared__ int count;
    __shared__ float thresh;
    const i64 q = blockIdx.x;
    const float* row = scores + q * ld;
    float* ts = top_s + q * kk;
    u32* ti = top_i + q * kk;
    for (int i = threadIdx.x; i < kk; i += blockDim.x) { s[i] = ts[i]; id[i] = ti[i]; }
    if (threadIdx.x == 0) { count = kk; thresh = ts[kk - 1]; }
    __syncthreads();
    const int step = blockDim.x * PER;
    for (int base = 0; base < ncols; base += step) {
        const float t = thresh;
        for (int j = 0; j < PER; j++) {
            const int c = base + j * blockDim.x + threadIdx.x;
            if (c < ncols) {
                const i64 g = row0 + c;
                float v = row[c];
                if (affine) v = fmaf(v, scale[g], bias[g]);
                const bool dead = (deleted[g >> 5] >> (g & 31)) & 1u;
                if (!dead && v > t) {
                    const int p = atomicAdd(&count, 1);
                    s[p] = v;
                    id[p] = (u32)g;
                }
            }
        }
        __syncthreads();
        const bool full = count > CAP - step;
        __syncthreads();
        if (full) compact(s, id, &count, &thresh, kk);
    }
    compact(s, id, &count, &thresh, kk);
    for (int i = threadIdx.x; i < kk; i += blockDim.x) { ts[i] = s[i]; ti[i] = id[i]; }
}

// Fills a [n] list with (-inf, NO_ROW): the empty running list.
extern "C" __global__ void clear_top(int n, float* __restrict__ top_s, u32* __restrict__ top_i) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { top_s[i] = NEG_INF; top_i[i] = NO_ROW; }
}

// ---------------------------------------------------------------------------------------------
// MaxSim.

#define GROUP 32

// MaxSim of query `qi` against document `doc`, by one block; thread 0 returns the score.
// Query tokens are prepared on the host (normalised for cosine) and stacked in f32;
// `q_off[qi] .. q_off[qi + 1]` are the query's tokens. `tok_aux` is per document token: the
// inverse norm (cosine) or the squared norm (L2); `q_sq` the query tokens' squared norms (L2).
// metric: 0 inner product, 1 cosine, 2 L2 (2 q.x - |q|^2 - |x|^2). Shared memory: the query
// tokens padded to whole groups of 32, then one partial maximum per token and warp.
template <typename T>
__device__ float maxsim_block(const T* __restrict__ tokens, const i64* __restrict__ doc_off,
                              const float* __restrict__ tok_aux,
                              const float* __restrict__ queries, const int* __restrict__ q_off,
                              const float* __restrict__ q_sq, int dim, int metric, int qi,
                              i64 doc, float* sh) {
    const int q0 = q_off[qi];
    const int lq = q_off[qi + 1] - q0;
    const int padded = (lq + GROUP - 1) / GROUP * GROUP;
    const int nw = blockDim.x >> 5;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* qs = sh;
    float* red = sh + padded * dim;
    for (int i = threadIdx.x; i < padded * dim; i += blockDim.x)
        qs[i] = i < lq * dim ? queries[(i64)q0 * dim + i] : 0.0f;
    __syncthreads();
    const i64 t0 = doc_off[doc], t1 = doc_off[doc + 1];
    for (int g = 0; g < padded; g += GROUP) {
        float best[GROUP];
#pragma unroll
        for (int r = 0; r < GROUP; r++) best[r] = NEG_INF;
        for (i64 t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
            float acc[GROUP];
#pragma unroll
            for (int r = 0; r < GROUP; r++) acc[r] = 0.0f;
            for (int e = 0; e < dim; e++) {
                const float x = load(tokens, t * dim + e);
#pragma unroll
                for (int r = 0; r < GROUP; r++) acc[r] = fmaf(qs[(g + r) * dim + e], x, acc[r]);
            }
            const float aux = metric == 0 ? 0.0f : tok_aux[t];
#pragma unroll
            for (int r = 0; r < GROUP; r++) {
                float v = acc[r];
                if (metric == 1) v = v * aux;
                else if (metric == 2 && g + r < lq) v = 2.0f * v - q_sq[q0 + g + r] - aux;
                best[r] = fmaxf(best[r], v);
            }
        }
#pragma unroll
        for (int r = 0; r < GROUP; r++) {
            float b = best[r];
            for (int o = 16; o > 0; o >>= 1) b = fmaxf(b, __shfl_xor_sync(0xffffffffu, b, o));
            if (lane == 0 && g + r < lq) red[(g + r) * nw + warp] = b;
        }
    }
    __syncthreads();
    float sum = 0.0f;
    if (threadIdx.x == 0 && t1 > t0) {
        for (int i = 0; i < lq; i++) {
            float b = NEG_INF;
            for (int w = 0; w < nw; w++) b = fmaxf(b, red[i * nw + w]);
            sum += b;
        }
    }
    return sum;
}

// Every (query, document) of a chunk: block (x, y) scores document doc0 + x against query y into
// out[y * ld + x].
#define MAXSIM_ALL(NAME, T)                                                                       \
    extern "C" __global__ void NAME(const T* __restrict__ tokens, const i64* __restrict__ doc_off, \
                                    const float* __restrict__ tok_aux,                            \
                                    const float* __restrict__ queries,                            \
                                    const int* __restrict__ q_off, const float* __restrict__ q_sq, \
                                    int dim, int metric, i64 doc0, i64 ld,                        \
                                    float* __restrict__ out) {                                    \
        extern __shared__ float sh[];                                                             \
        const float v = maxsim_block<T>(tokens, doc_off, tok_aux, queries, q_off, q_sq, dim,      \
                                        metric, blockIdx.y, doc0 + blockIdx.x, sh);               \
        if (threadIdx.x == 0) out[(i64)blockIdx.y * ld + blockIdx.x] = v;                         \
    }

// Listed (query, document) pairs: block x scores pair x into out[x].
#define MAXSIM_PAIRS(NAME, T)                                                                     \
    extern "C" __global__ void NAME(const T* __restrict__ tokens, const i64* __restrict__ doc_off, \
                                    const float* __restrict__ tok_aux,                            \
                                    const float* __restrict__ queries,                            \
                                    const int* __restrict__ q_off, const float* __restrict__ q_sq, \
                                    int dim, int metric, const int* __restrict__ pair_query,      \
                                    const u32* __restrict__ pair_doc, float* __restrict__ out) {  \
        extern __shared__ float sh[];                                                             \
        const float v = maxsim_block<T>(tokens, doc_off, tok_aux, queries, q_off, q_sq, dim,      \
                                        metric, pair_query[blockIdx.x], pair_doc[blockIdx.x], sh); \
        if (threadIdx.x == 0) out[blockIdx.x] = v;                                                \
    }

MAXSIM_ALL(maxsim_all_f32, float)
MAXSIM_ALL(maxsim_all_f16, f16)
MAXSIM_ALL(maxsim_all_bf16, bf16)
MAXSIM_PAIRS(maxsim_pairs_f32, float)
MAXSIM_PAIRS(maxsim_pairs_f16, f16)
MAXSIM_PAIRS(maxsim_pairs_bf16, bf16)

// ---------------------------------------------------------------------------------------------
// BERT-family encoder passes (src/encode/backend/cuda_bert.rs). Activations are f32, packed: a
// row per token of every text of the batch, no padding.

__device__ float block_sum(float v, float* red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += red[i];
    return t;
}

__device__ float block_max(float v, float* red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = NEG_INF;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) t = fmaxf(t, red[i]);
    return t;
}

// Layer norm of the row in `buf` (h values; `sum` their sum) into `out`.
__device__ void layer_norm_row(const float* buf, float sum, int h, const float* gamma,
                               const float* beta, float eps, float* red, float* out) {
    const float mean = sum / h;
    float s2 = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        const float d = buf[i] - mean;
        s2 += d * d;
    }
    const float var = block_sum(s2, red) / h;
    const float inv = 1.0f / sqrtf(var + eps);
    for (int i = threadIdx.x; i < h; i += blockDim.x)
        out[i] = (buf[i] - mean) * inv * gamma[i] + beta[i];
}

// One block per token: x[t] = LN(word[id] + position[pos] + type0). Shared: h floats.
extern "C" __global__ void embed_ln(const u32* __restrict__ ids, const u32* __restrict__ pos,
                                    const float* __restrict__ word,
                                    const float* __restrict__ position,
                                    const float* __restrict__ type0,
                                    const float* __restrict__ gamma,
                                    const float* __restrict__ beta, int h, float eps,
                                    float* __restrict__ x) {
    extern __shared__ float buf[];
    __shared__ float red[32];
    const i64 t = blockIdx.x;
    const i64 id = ids[t], p = pos[t];
    float s = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        const float v = word[id * h + i] + position[p * h + i] + type0[i];
        buf[i] = v;
        s += v;
    }
    s = block_sum(s, red);
    layer_norm_row(buf, s, h, gamma, beta, eps, red, x + t * h);
}

// One block per row: out = LN(in + bias + residual). Shared: h floats.
extern "C" __global__ void bias_residual_ln(const float* __restrict__ in,
                                            const float* __restrict__ bias,
                                            const float* __restrict__ residual,
                                            const float* __restrict__ gamma,
                                            const float* __restrict__ beta, int h, float eps,
                                            float* __restrict__ out) {
    extern __shared__ float buf[];
    __shared__ float red[32];
    const i64 r = blockIdx.x;
    float s = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        const float v = in[r * h + i] + bias[i] + residual[r * h + i];
        buf[i] = v;
        s += v;
    }
    s = block_sum(s, red);
    layer_norm_row(buf, s, h, gamma, beta, eps, red, out + r * h);
}

// One block per row: out = LN(in) (pre-norm layers). Shared: h floats.
extern "C" __global__ void layer_norm(const float* __restrict__ in,
                                      const float* __restrict__ gamma,
                                      const float* __restrict__ beta, int h, float eps,
                                      float* __restrict__ out) {
    extern __shared__ float buf[];
    __shared__ float red[32];
    const i64 r = blockIdx.x;
    float s = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        const float v = in[r * h + i];
        buf[i] = v;
        s += v;
    }
    s = block_sum(s, red);
    layer_norm_row(buf, s, h, gamma, beta, eps, red, out + r * h);
}

// x[i] += in[i] + bias[i % n] (a pre-norm layer's residual).
extern "C" __global__ void residual_add(float* __restrict__ x, const float* __restrict__ in,
                                        const float* __restrict__ bias, i64 total, int n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) x[i] += in[i] + bias[i % n];
}

// act: 0 none, 1 GELU (erf), 2 GELU (tanh), 3 ReLU, 4 quick GELU (x * sigmoid(1.702 x),
// OpenAI's CLIP).
__device__ __forceinline__ float activate(float v, int act) {
    if (act == 1) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (act == 2) return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    if (act == 3) return fmaxf(v, 0.0f);
    if (act == 4) return v / (1.0f + expf(-1.702f * v));
    return v;
}

// x[i] = act(x[i] + bias[i % n]).
extern "C" __global__ void bias_act(float* __restrict__ x, const float* __restrict__ bias,
                                    i64 total, int n, int act) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    x[i] = activate(x[i] + bias[i % n], act);
}

// GeGLU (ModernBERT's MLP): rows of wi hold [a | g] (2n values); out[r, i] =
// act(a[i] + bias[i]) * (g[i] + bias[n + i]) over rows * n values.
extern "C" __global__ void geglu(const float* __restrict__ wi, const float* __restrict__ bias,
                                 i64 total, int n, int act, float* __restrict__ out) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const i64 r = i / n;
    const int c = (int)(i % n);
    const float* row = wi + r * 2 * n;
    out[i] = activate(row[c] + bias[c], act) * (row[n + c] + bias[n + c]);
}

// Rotary positions (RoFormer; transformers' rotate_half convention) on the q and k parts of
// qkv rows ([q | k | v], 3h values): for each head and i < d/2, with a = inv_freq[i] * pos[row],
// (x1, x2) = (x[i], x[i + d/2]) becomes (x1 cos a - x2 sin a, x2 cos a + x1 sin a).
// One thread per (row, q or k head, i): rows * 2 * heads * d/2 threads.
extern "C" __global__ void rotary(float* __restrict__ qkv, const u32* __restrict__ pos,
                                  const float* __restrict__ inv_freq, i64 rows, int h,
                                  int heads) {
    const int d = h / heads, half = d / 2;
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * 2 * heads * half) return;
    const int f = (int)(i % half);
    const i64 rh = i / half;
    const int head = (int)(rh % (2 * heads));
    const i64 r = rh / (2 * heads);
    const float a = inv_freq[f] * (float)pos[r];
    const float c = cosf(a), s = sinf(a);
    float* x = qkv + r * 3 * h + (i64)head * d;
    const float x1 = x[f], x2 = x[f + half];
    x[f] = x1 * c - x2 * s;
    x[f + half] = x2 * c + x1 * s;
}

// Multi-head attention of packed texts: block (t, head) computes token t's context for one head.
// qkv rows hold [q | k | v] (3h values, biases added); text tok_seq[t] starts at row
// seq_start[s] and its tokens attend to its first seq_keys[s] tokens (with `causal`, also only
// to tokens at or before their own position; with window >= 0, only to tokens at most `window`
// positions away, ModernBERT's local layers). A row left without keys gets a zero context.
// Shared: max keys floats.
extern "C" __global__ void attention(const float* __restrict__ qkv,
                                     const u32* __restrict__ tok_seq,
                                     const u32* __restrict__ seq_start,
                                     const u32* __restrict__ seq_keys, int h, int heads,
                                     float scale, int causal, int window,
                                     float* __restrict__ ctx) {
    extern __shared__ float p[];
    __shared__ float red[32];
    const i64 t = blockIdx.x;
    const int hd = blockIdx.y, dh = h / heads;
    const u32 s = tok_seq[t];
    const i64 start = seq_start[s];
    const int r = (int)(t - start);
    int lo = 0, hi = seq_keys[s];
    if (causal) hi = min(hi, r + 1);
    if (window >= 0) {
        lo = max(0, r - window);
        hi = min(hi, r + window + 1);
    }
    const int nk = max(hi - lo, 0);
    if (nk == 0) {
        for (int e = threadIdx.x; e < dh; e += blockDim.x) ctx[t * h + hd * dh + e] = 0.0f;
        return;
    }
    const float* q = qkv + t * 3 * h + hd * dh;
    const i64 first = start + lo;
    float mx = NEG_INF;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) {
        const float* k = qkv + (first + j) * 3 * h + h + hd * dh;
        float d = 0.0f;
        for (int e = 0; e < dh; e++) d = fmaf(q[e], k[e], d);
        d *= scale;
        p[j] = d;
        mx = fmaxf(mx, d);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    __syncthreads();
    const float inv = 1.0f / sum;
    for (int e = threadIdx.x; e < dh; e += blockDim.x) {
        const float* v = qkv + first * 3 * h + 2 * h + hd * dh + e;
        float acc = 0.0f;
        for (int j = 0; j < nk; j++) acc = fmaf(p[j], v[(i64)j * 3 * h], acc);
        ctx[t * h + hd * dh + e] = acc * inv;
    }
}

// Pooling of packed texts (the dense encoders' last step, so only one row per text leaves the
// device): block s writes text s's vector of h values, its first row (mode 0), its last row
// (mode 1) or the mean of its seq_len[s] rows (mode 2: summed in row order, times 1/len, as
// vellum's CPU pooling does).
extern "C" __global__ void pool_rows(const float* __restrict__ x,
                                     const u32* __restrict__ seq_start,
                                     const u32* __restrict__ seq_len, int h, int mode,
                                     float* __restrict__ out) {
    const i64 s = blockIdx.x;
    const i64 start = seq_start[s];
    const int len = seq_len[s];
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float v;
        if (mode == 0) v = x[start * h + i];
        else if (mode == 1) v = x[(start + len - 1) * h + i];
        else {
            float acc = 0.0f;
            for (int t = 0; t < len; t++) acc += x[(start + t) * h + i];
            v = acc * (1.0f / (float)len);
        }
        out[s * h + i] = v;
    }
}

// f32 -> f16 (kind 0) or bf16 (kind 1), round to nearest even.
extern "C" __global__ void to_half(const float* __restrict__ x, u16* __restrict__ y, i64 n,
                                   int kind) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = x[i];
    if (kind == 0) {
        unsigned short b;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(v));
        y[i] = b;
    } else {
        const u32 u = __float_as_uint(v);
        y[i] = (v != v) ? (u16)0x7fc0 : (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}
