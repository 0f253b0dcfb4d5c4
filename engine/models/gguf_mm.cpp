// studio::gguf_mm: y = x W^T with W in a GGUF block format, its integers as the file stores them.
//
// Why a kernel of our own: PyTorch's packed-int4 CPU kernel runs at about 2 GB/s of weights on an
// AVX2 machine (its vectorized path wants native bf16), a third of what decode needs to match
// llama.cpp. This one keeps the weights' integers as they are:
//     Q4_0  w = d (q - 8)   Q4_1  w = d q + m   Q8_0  w = d q     (32 weights a block, fp16 d and m)
// and rounds x per block of 32 to integers, so that a block's share of an output, d * sum(x q) +
// m * sum(x) (Q4_0: m = -8 d), is an integer dot product: to int8 (activation_bits 8, as llama.cpp
// multiplies) or int16 (16: 256 times finer, fp32's results to ~1e-5, at about int8's speed; fp32
// activations took 1.3-1.5x as long on this AVX2 CPU). Weights are read once for up to ROWS rows of
// x; rows are sequences of a decode batch (prefill, with many rows, dequantizes, gguf_dequantize,
// and calls the BLAS matmul in Python). A row's result is the same whatever rows share its call: each
// output of each row is summed in one order, fixed by K alone.
//
// Two layouts of a matrix's blocks (engine.models.packed chooses, by the rule in `interleaved` there):
// - the file's, output by output: q (N, K / 2) uint8 for Q4_x, per block 16 bytes whose low nibbles
//   are weights 0..15 and high ones 16..31 (ggml's layout); (N, K) int8 for Q8_0; d, m (N, K / 32)
//   fp16. Each output is a dot product along K in vector lanes, summed across them at its end.
// - interleaved by eight outputs, for 4-bit blocks times int8 activations: q (N / 8, K / 32, 128),
//   per block of eight outputs four vectors of 32 bytes, vector t holding bytes 4t..4t+3 of each of
//   the eight outputs' 16; d, m (N / 8, K / 32, 8). A vector's lanes are the eight outputs: four of
//   x's integers broadcast multiply four weights of each, and the block's scales multiply the eight
//   sums as one vector, with no sum across lanes, where the file's layout spends, for every output
//   and row, a sum across lanes and the scales' conversions on 18 blocks of work (K = 576). The
//   embedded model's 121 matmul calls of a decode step, alternating in one process (2-core AMD EPYC):
//   8 rows 30.9 -> 17.5 ms, 4 rows 18.9 -> 10.1, one row 8.3 -> 7.9.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define STUDIO_AVX2 1
#endif

namespace {

constexpr int64_t BLOCK = 32;
constexpr int64_t ROWS = 8;
enum Kind : int64_t { Q4_0 = 0, Q4_1 = 1, Q8_0 = 2 };

// What a row of x contributes to every output: its values rounded per block of 32 to int8 as
// llama.cpp does (ggml's Q8_0/Q8_1: scale dx = max|x| / 127) or to int16 (dx = max|x| / 32767), and
// sum(x) per block for the 4-bit formats' m term (of the rounded x, as ggml's Q8_1 keeps it): the
// result is the matmul of the rounded x, whichever term. Prepared once per call.
struct Activations {
  int64_t K = 0;
  int64_t bits = 8;
  std::vector<int8_t> qx;     // (rows, K) when bits == 8
  std::vector<int16_t> qx16;  // (rows, K) when bits == 16
  std::vector<float> dx;      // (rows, K / 32)
  std::vector<float> sums;    // (rows, K / 32)

  Activations(const float* x, int64_t rows, int64_t K, int64_t bits)
      : K(K), bits(bits), dx(rows * (K / BLOCK)), sums(rows * (K / BLOCK)) {
    if (bits == 8)
      qx.resize(rows * K);
    else
      qx16.resize(rows * K);
    const float top = bits == 8 ? 127.0f : 32767.0f;
    for (int64_t i = 0; i < rows * (K / BLOCK); ++i) {
      const float* block = x + i * BLOCK;
      float largest = 0.0f;
      for (int64_t j = 0; j < BLOCK; ++j) largest = std::max(largest, std::fabs(block[j]));
      dx[i] = largest / top;
      int32_t rounded_total = 0;
      for (int64_t j = 0; j < BLOCK; ++j) {
        const int32_t v = largest > 0.0f ? static_cast<int32_t>(std::nearbyint(block[j] / dx[i])) : 0;
        if (bits == 8)
          qx[i * BLOCK + j] = static_cast<int8_t>(v);
        else
          qx16[i * BLOCK + j] = static_cast<int16_t>(v);
        rounded_total += v;
      }
      sums[i] = dx[i] * static_cast<float>(rounded_total);  // the m term sees the rounded x too
    }
  }
};

#ifdef STUDIO_AVX2
inline float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float half(const at::Half& h) { return _cvtsh_ss(h.x); }

// The 32 integers of a 4-bit block as 32 bytes in weight order (0..15 then 16..31).
inline __m256i nibbles(const uint8_t* block) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

constexpr int64_t CHUNK = 64;  // blocks whose scales a weight row converts at once (a buffer on the stack)

// One block's products with ROWS_N rows of x, each added to its row's accumulator times the block's
// factor. int8 x: the weights' bytes once, then per row maddubs (unsigned x signed bytes, pairs
// summed to int16) and madd (to int32); Q8_0's signed weights move their sign onto x, as ggml does.
// int16 x: the weights widened to int16 once, then per row two madds.
template <int64_t kind, int64_t ROWS_N>
__attribute__((always_inline)) inline void block_products(const Activations& a, const uint8_t* row, int64_t block,
                                                          const float (&factor)[ROWS_N][CHUNK], int64_t b,
                                                          __m256 (&into)[ROWS_N]) {
  const int64_t K = a.K;
  if (a.bits == 16) {
    // the block's 32 weights as two vectors of 16 int16, each multiplied by 16 int16 of x in pairs
    const __m256i bytes = kind == Q8_0
        ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + block * BLOCK))
        : nibbles(row + block * BLOCK / 2);
    const __m256i w0 = kind == Q8_0 ? _mm256_cvtepi8_epi16(_mm256_castsi256_si128(bytes))
                                    : _mm256_cvtepu8_epi16(_mm256_castsi256_si128(bytes));
    const __m256i w1 = kind == Q8_0 ? _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bytes, 1))
                                    : _mm256_cvtepu8_epi16(_mm256_extracti128_si256(bytes, 1));
    for (int64_t r = 0; r < ROWS_N; ++r) {
      const int16_t* xq = a.qx16.data() + r * K + block * BLOCK;
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 16));
      // |w| <= 127 and |x| <= 32767: each int32 lane sums 4 products, below 2^24 (exact as fp32)
      const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
      into[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&factor[r][b]), _mm256_cvtepi32_ps(sums), into[r]);
    }
  } else {
    __m256i w, sign;
    if constexpr (kind == Q8_0) {
      sign = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + block * BLOCK));
      w = _mm256_sign_epi8(sign, sign);
    } else {
      w = nibbles(row + block * BLOCK / 2);
    }
    for (int64_t r = 0; r < ROWS_N; ++r) {
      __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qx.data() + r * K + block * BLOCK));
      if constexpr (kind == Q8_0) xq = _mm256_sign_epi8(xq, sign);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      // the same integers: maddubs' int16 pair sums never saturate here (|w| <= 128, |x| <= 127)
      const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, xq);
#else
      const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(w, xq), _mm256_set1_epi16(1));
#endif
      into[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&factor[r][b]), _mm256_cvtepi32_ps(sums), into[r]);
    }
  }
}

// One weight row against ROWS_N rows of x. Per chunk of blocks, first the floats, 8 blocks a vector:
// each block's factor d * dx (fp16 d converted 8 at a time) and the 4-bit formats' m term summed
// (m * sum(x); Q4_0: m = -8 d), each row's summed at once; then the integers, block by block, into
// two accumulators a row taken in turn, so that consecutive blocks' fmas do not wait on each other.
// (Scalar conversions and products per block and one accumulator, which the compiler kept in memory,
// had cost 1.3-1.5x the time: a 1536 x 576 Q4_1 matrix, one row of x, one core of a Xeon: 143 -> 110
// us. One accumulator a row would fit 8 rows in AVX2's 16 registers, but took 1.4x as long for one
// row, and a row's sums must not depend on how many rows share the call.)
template <int64_t kind, int64_t ROWS_N>
void output_row(const Activations& a, const uint8_t* row, const at::Half* d, const at::Half* m,
                float* y, int64_t y_stride) {
  const int64_t K = a.K, blocks = K / BLOCK;
  __m256 even[ROWS_N], odd[ROWS_N];
  float offset_total[ROWS_N];
  alignas(32) float factor[ROWS_N][CHUNK];
  for (int64_t r = 0; r < ROWS_N; ++r) even[r] = odd[r] = _mm256_setzero_ps(), offset_total[r] = 0.0f;
  for (int64_t first = 0; first < blocks; first += CHUNK) {
    const int64_t count = std::min(CHUNK, blocks - first);
    for (int64_t r = 0; r < ROWS_N; ++r) {
      __m256 offset = _mm256_setzero_ps();
      float offset_tail = 0.0f;
      int64_t b = 0;
      for (; b + 8 <= count; b += 8) {
        const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + first + b)));
        const int64_t at = r * blocks + first + b;
        _mm256_store_ps(factor[r] + b, _mm256_mul_ps(scale, _mm256_loadu_ps(a.dx.data() + at)));
        if constexpr (kind != Q8_0) {
          const __m256 minimum = kind == Q4_1
              ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m + first + b)))
              : _mm256_mul_ps(scale, _mm256_set1_ps(-8.0f));
          offset = _mm256_fmadd_ps(minimum, _mm256_loadu_ps(a.sums.data() + at), offset);
        }
      }
      for (; b < count; ++b) {  // a chunk's last blocks that fill no vector
        const float scale = half(d[first + b]);
        const float minimum = kind == Q4_1 ? half(m[first + b]) : kind == Q4_0 ? -8.0f * scale : 0.0f;
        factor[r][b] = scale * a.dx[r * blocks + first + b];
        if constexpr (kind != Q8_0) offset_tail += minimum * a.sums[r * blocks + first + b];
      }
      offset_total[r] += sum8(offset) + offset_tail;
    }
    int64_t b = 0;
    for (; b + 2 <= count; b += 2) {
      block_products<kind, ROWS_N>(a, row, first + b, factor, b, even);
      block_products<kind, ROWS_N>(a, row, first + b + 1, factor, b + 1, odd);
    }
    if (b < count) block_products<kind, ROWS_N>(a, row, first + b, factor, b, even);
  }
  for (int64_t r = 0; r < ROWS_N; ++r) y[r * y_stride] = sum8(_mm256_add_ps(even[r], odd[r])) + offset_total[r];
}

// Eight outputs of the interleaved layout (4-bit blocks, int8 x) against R rows of x (R <= 4: with
// each row's two accumulators and its integer sums, the unpacked weights and the scales, AVX2's 16
// registers are full), y's eight columns from `y` on. Per block: the four vectors' nibbles (each
// byte's low one is weight 4t..4t+3's, its high one 16 on), times four of x's integers broadcast to
// every lane; a lane's int16 sums stay below 2^15 over the block (8 x 2 x 15 x 127), so they are
// added as int16 and widened once; then d * dx and m * sum(x) for the eight outputs as vectors.
template <int64_t kind, int R>
void eight_outputs(const Activations& a, int64_t r0, const uint8_t* q, const at::Half* d, const at::Half* m,
                   float* y, int64_t y_stride) {
  const int64_t K = a.K, blocks = K / BLOCK;
  __m256 into[R], offset[R];
  for (int r = 0; r < R; ++r) into[r] = offset[r] = _mm256_setzero_ps();
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = q + b * 128;
    __m256i sums[R];
    for (int r = 0; r < R; ++r) sums[r] = _mm256_setzero_si256();
    for (int t = 0; t < 4; ++t) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * t));
      const __m256i low = _mm256_and_si256(packed, nibble);
      const __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble);
      for (int r = 0; r < R; ++r) {
        const int8_t* x = a.qx.data() + (r0 + r) * K + b * BLOCK + 4 * t;
        int32_t first_four, second_four;  // x's integers 4t.. and 16 + 4t.., as one int32 each
        std::memcpy(&first_four, x, 4);
        std::memcpy(&second_four, x + 16, 4);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
        sums[r] = _mm256_dpbusd_epi32(sums[r], low, _mm256_set1_epi32(first_four));
        sums[r] = _mm256_dpbusd_epi32(sums[r], high, _mm256_set1_epi32(second_four));
#else
        sums[r] = _mm256_add_epi16(sums[r], _mm256_add_epi16(_mm256_maddubs_epi16(low, _mm256_set1_epi32(first_four)),
                                                             _mm256_maddubs_epi16(high, _mm256_set1_epi32(second_four))));
#endif
      }
    }
    const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + b * 8)));
    const __m256 minimum = kind == Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m + b * 8)))
                                        : _mm256_mul_ps(scale, _mm256_set1_ps(-8.0f));
    for (int r = 0; r < R; ++r) {
      const int64_t at = (r0 + r) * blocks + b;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      const __m256 dots = _mm256_cvtepi32_ps(sums[r]);
#else
      const __m256 dots = _mm256_cvtepi32_ps(_mm256_madd_epi16(sums[r], _mm256_set1_epi16(1)));
#endif
      into[r] = _mm256_fmadd_ps(_mm256_mul_ps(scale, _mm256_broadcast_ss(&a.dx[at])), dots, into[r]);
      offset[r] = _mm256_fmadd_ps(minimum, _mm256_broadcast_ss(&a.sums[at]), offset[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(y + (r0 + r) * y_stride, _mm256_add_ps(into[r], offset[r]));
}
#else
// Portable path (a CPU without AVX2/FMA/F16C): the same arithmetic, one weight at a time.
template <int64_t kind, int64_t ROWS_N>
void output_row(const Activations& a, const uint8_t* row, const at::Half* d, const at::Half* m,
                float* y, int64_t y_stride) {
  const int64_t K = a.K, blocks = K / BLOCK;
  for (int64_t r = 0; r < ROWS_N; ++r) {
    float total = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) {
      float dot = 0.0f;
      for (int64_t j = 0; j < BLOCK; ++j) {
        float w;
        if constexpr (kind == Q8_0) {
          w = static_cast<float>(reinterpret_cast<const int8_t*>(row)[b * BLOCK + j]);
        } else {
          const uint8_t byte = row[b * BLOCK / 2 + j % 16];
          w = static_cast<float>(j < 16 ? byte & 0x0F : byte >> 4);
        }
        const int64_t i = r * K + b * BLOCK + j;
        dot += w * static_cast<float>(a.bits == 8 ? a.qx[i] : a.qx16[i]);
      }
      const float scale = static_cast<float>(d[b]);
      const float minimum = kind == Q4_1 ? static_cast<float>(m[b]) : kind == Q4_0 ? -8.0f * scale : 0.0f;
      total += scale * a.dx[r * blocks + b] * dot + minimum * a.sums[r * blocks + b];
    }
    y[r * y_stride] = total;
  }
}

template <int64_t kind, int R>
void eight_outputs(const Activations& a, int64_t r0, const uint8_t* q, const at::Half* d, const at::Half* m,
                   float* y, int64_t y_stride) {
  const int64_t K = a.K, blocks = K / BLOCK;
  for (int r = 0; r < R; ++r) {
    for (int lane = 0; lane < 8; ++lane) {
      float total = 0.0f, offset = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t dot = 0;
        for (int64_t j = 0; j < BLOCK; ++j) {
          const uint8_t byte = q[b * 128 + (j % 16) / 4 * 32 + lane * 4 + j % 4];
          dot += (j < 16 ? byte & 0x0F : byte >> 4) * a.qx[(r0 + r) * K + b * BLOCK + j];
        }
        const float scale = static_cast<float>(d[b * 8 + lane]);
        const float minimum = kind == Q4_1 ? static_cast<float>(m[b * 8 + lane]) : -8.0f * scale;
        total += scale * a.dx[(r0 + r) * blocks + b] * static_cast<float>(dot);
        offset += minimum * a.sums[(r0 + r) * blocks + b];
      }
      y[(r0 + r) * y_stride + lane] = total + offset;
    }
  }
}
#endif

// Outputs [begin, end) of the file's layout for `rows` rows of x (at most ROWS; `a` holds them), with
// the row count fixed at compile time so that each row's accumulator stays in a register.
template <int64_t kind>
void output_range(const Activations& a, int64_t rows, const uint8_t* q, int64_t q_stride,
                  const at::Half* d, const at::Half* m, float* y, int64_t y_stride, int64_t begin, int64_t end) {
  const int64_t blocks = a.K / BLOCK;
  for (int64_t n = begin; n < end; ++n) {
    const uint8_t* row = q + n * q_stride;
    const at::Half* dn = d + n * blocks;
    const at::Half* mn = m + n * blocks;
    switch (rows) {
#define STUDIO_ROWS(R) \
  case R:              \
    output_row<kind, R>(a, row, dn, mn, y + n, y_stride); \
    break;
      STUDIO_ROWS(1) STUDIO_ROWS(2) STUDIO_ROWS(3) STUDIO_ROWS(4)
      STUDIO_ROWS(5) STUDIO_ROWS(6) STUDIO_ROWS(7) STUDIO_ROWS(8)
#undef STUDIO_ROWS
    }
  }
}

// Groups of eight outputs [begin, end) of the interleaved layout, four rows of x at a time (the
// group's blocks stay in cache between them).
template <int64_t kind>
void eight_output_range(const Activations& a, int64_t rows, const uint8_t* q, const at::Half* d, const at::Half* m,
                        float* y, int64_t y_stride, int64_t begin, int64_t end) {
  const int64_t blocks = a.K / BLOCK;
  for (int64_t g = begin; g < end; ++g) {
    const uint8_t* qg = q + g * blocks * 128;
    const at::Half* dg = d + g * blocks * 8;
    const at::Half* mg = m + g * blocks * 8;
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
      switch (std::min<int64_t>(4, rows - r0)) {
#define STUDIO_ROWS(R) \
  case R:              \
    eight_outputs<kind, R>(a, r0, qg, dg, mg, y + g * 8, y_stride); \
    break;
        STUDIO_ROWS(1) STUDIO_ROWS(2) STUDIO_ROWS(3) STUDIO_ROWS(4)
#undef STUDIO_ROWS
      }
    }
  }
}

// x [W_1; W_2; ...]^T: the products of x with matrices of one format side by side, (M, N_1 + N_2 + ...),
// as if they were one matrix (a layer's q, k and v projections; its gate and up). x is prepared once
// and one parallel loop covers all the outputs, where a small matrix alone leaves a core idle for
// part of its call (the compiled step groups them: engine.models.gguf_group).
at::Tensor gguf_mm_group(const at::Tensor& x, at::TensorList qs, at::TensorList ds,
                         const c10::List<c10::optional<at::Tensor>>& ms, int64_t kind, int64_t activation_bits) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "gguf_mm: x must be (M, K) fp32");
  TORCH_CHECK(kind == Q4_0 || kind == Q4_1 || kind == Q8_0, "gguf_mm: unknown block kind ", kind);
  TORCH_CHECK(activation_bits == 8 || activation_bits == 16, "gguf_mm: activation_bits must be 8 or 16");
  TORCH_CHECK(!qs.empty() && ds.size() == qs.size() && ms.size() == qs.size(), "gguf_mm: one q, d and m a matrix");
  const int64_t M = x.size(0), K = x.size(1);
  TORCH_CHECK(K % BLOCK == 0, "gguf_mm: K must be a multiple of 32");
  struct Matrix {
    at::Tensor q, d, m;
    bool interleaved;
    int64_t first;       // its first output column
    int64_t first_unit;  // its first unit of the parallel loop: an output, or eight interleaved
    int64_t units;
  };
  std::vector<Matrix> matrices;
  int64_t total = 0, units = 0;
  for (size_t i = 0; i < qs.size(); ++i) {
    const at::Tensor &q = qs[i], &d = ds[i];
    const c10::optional<at::Tensor> m = ms.get(i);
    const bool interleaved = q.dim() == 3;
    TORCH_CHECK(!interleaved || (kind != Q8_0 && activation_bits == 8),
                "gguf_mm: only 4-bit blocks times int8 activations are interleaved");
    const int64_t N = interleaved ? q.size(0) * 8 : q.size(0);
    TORCH_CHECK(d.scalar_type() == at::kHalf && d.dim() == (interleaved ? 3 : 2),
                "gguf_mm: d must be (N, K / 32) fp16, or (N / 8, K / 32, 8) interleaved");
    TORCH_CHECK(kind != Q4_1 || (m.has_value() && m->sizes() == d.sizes() && m->scalar_type() == at::kHalf),
                "gguf_mm: Q4_1 needs m shaped like d");
    TORCH_CHECK(interleaved ? d.size(0) * 8 == N && d.size(1) == K / BLOCK && d.size(2) == 8 &&
                                  q.size(1) == K / BLOCK && q.size(2) == 128
                            : d.size(0) == N && d.size(1) == K / BLOCK && q.dim() == 2 &&
                                  q.size(1) == (kind == Q8_0 ? K : K / 2),
                "gguf_mm: q and d have the wrong shapes for x and the block kind");
    const at::Tensor dc = d.contiguous();
    const int64_t matrix_units = interleaved ? N / 8 : N;
    matrices.push_back({q.contiguous(), dc, kind == Q4_1 ? m->contiguous() : dc, interleaved, total, units,
                        matrix_units});
    total += N;
    units += matrix_units;
  }
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({M, total}, x.options());
  for (int64_t first = 0; first < M; first += ROWS) {  // weights are read once per ROWS rows
    const int64_t rows = std::min(ROWS, M - first);
    const float* xp = xc.const_data_ptr<float>() + first * K;
    const Activations a(xp, rows, K, activation_bits);
    at::parallel_for(0, units, 4, [&](int64_t begin, int64_t end) {
      for (const Matrix& w : matrices) {
        const int64_t lo = std::max(begin, w.first_unit) - w.first_unit;
        const int64_t hi = std::min(end, w.first_unit + w.units) - w.first_unit;
        if (lo >= hi) continue;
        const auto* qp = w.q.const_data_ptr<uint8_t>();
        const auto* dp = w.d.const_data_ptr<at::Half>();
        const auto* mp = w.m.const_data_ptr<at::Half>();
        float* yp = y.data_ptr<float>() + first * total + w.first;  // rows of y are `total` apart
        if (w.interleaved && kind == Q4_1)
          eight_output_range<Q4_1>(a, rows, qp, dp, mp, yp, total, lo, hi);
        else if (w.interleaved)
          eight_output_range<Q4_0>(a, rows, qp, dp, mp, yp, total, lo, hi);
        else if (kind == Q8_0)
          output_range<Q8_0>(a, rows, qp, w.q.size(1), dp, mp, yp, total, lo, hi);
        else if (kind == Q4_1)
          output_range<Q4_1>(a, rows, qp, w.q.size(1), dp, mp, yp, total, lo, hi);
        else
          output_range<Q4_0>(a, rows, qp, w.q.size(1), dp, mp, yp, total, lo, hi);
      }
    });
  }
  return y;
}

at::Tensor gguf_mm(const at::Tensor& x, const at::Tensor& q, const at::Tensor& d, const c10::optional<at::Tensor>& m,
                   int64_t kind, int64_t activation_bits) {
  return gguf_mm_group(x, {q}, {d}, c10::List<c10::optional<at::Tensor>>({m}), kind, activation_bits);
}

// The blocks' (N, K) weights in fp32 by ggml's formula, for prefill's BLAS matmul: one pass writing
// them, where the formula in PyTorch's ops took three (~200 ms a forward of the embedded model). Each
// product of an integer (at most 8 bits) and an fp16 scale (11) is exact in fp32, so the result is
// the formula's whatever the order or fusing of the arithmetic. Either layout (see the top).
at::Tensor gguf_dequantize(const at::Tensor& q, const at::Tensor& d, const c10::optional<at::Tensor>& m, int64_t kind) {
  TORCH_CHECK(kind == Q4_0 || kind == Q4_1 || kind == Q8_0, "gguf_dequantize: unknown block kind ", kind);
  const bool interleaved = q.dim() == 3;
  TORCH_CHECK(!interleaved || kind != Q8_0, "gguf_dequantize: only 4-bit blocks are interleaved");
  TORCH_CHECK(d.scalar_type() == at::kHalf && d.dim() == (interleaved ? 3 : 2),
              "gguf_dequantize: d must be (N, K / 32) fp16, or (N / 8, K / 32, 8) interleaved");
  TORCH_CHECK(kind != Q4_1 || (m.has_value() && m->sizes() == d.sizes() && m->scalar_type() == at::kHalf),
              "gguf_dequantize: Q4_1 needs m shaped like d");
  const int64_t N = interleaved ? d.size(0) * 8 : d.size(0), blocks = d.size(1), K = blocks * BLOCK;
  TORCH_CHECK(interleaved ? q.size(0) * 8 == N && q.size(1) == blocks && q.size(2) == 128 && d.size(2) == 8
                          : q.dim() == 2 && q.size(0) == N && q.size(1) == (kind == Q8_0 ? K : K / 2),
              "gguf_dequantize: q has the wrong shape for its kind");
  const at::Tensor qc = q.contiguous(), dc = d.contiguous(), mc = kind == Q4_1 ? m->contiguous() : dc;
  at::Tensor w = at::empty({N, K}, d.options().dtype(at::kFloat));
  const auto* qp = qc.const_data_ptr<uint8_t>();
  const auto* dp = dc.const_data_ptr<at::Half>();
  const auto* mp = mc.const_data_ptr<at::Half>();
  float* wp = w.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t b = 0; b < blocks; ++b) {
        // where output n's block b keeps its scales and its bytes
        const int64_t at = interleaved ? ((n / 8) * blocks + b) * 8 + n % 8 : n * blocks + b;
        const float scale = static_cast<float>(dp[at]);
        float* out = wp + n * K + b * BLOCK;
        if (kind == Q8_0) {
          const auto* in = reinterpret_cast<const int8_t*>(qp + (n * blocks + b) * BLOCK);
          for (int64_t j = 0; j < BLOCK; ++j) out[j] = static_cast<float>(in[j]) * scale;
          continue;
        }
        uint8_t in[BLOCK / 2];  // weight j in byte j's low nibble, j + 16 in its high
        if (interleaved) {
          const uint8_t* group = qp + ((n / 8) * blocks + b) * 128 + (n % 8) * 4;
          for (int64_t t = 0; t < 4; ++t) std::memcpy(in + 4 * t, group + 32 * t, 4);
        } else {
          std::memcpy(in, qp + (n * blocks + b) * (BLOCK / 2), BLOCK / 2);
        }
        const float minimum = kind == Q4_1 ? static_cast<float>(mp[at]) : 0.0f;
        const int subtract = kind == Q4_0 ? 8 : 0;
        for (int64_t j = 0; j < BLOCK / 2; ++j) {
          out[j] = static_cast<float>((in[j] & 0x0F) - subtract) * scale + minimum;
          out[j + BLOCK / 2] = static_cast<float>((in[j] >> 4) - subtract) * scale + minimum;
        }
      }
    }
  });
  return w;
}

}  // namespace

TORCH_LIBRARY(studio, library) {
  library.def("gguf_mm(Tensor x, Tensor q, Tensor d, Tensor? m, int kind, int activation_bits) -> Tensor");
  library.def(
      "gguf_mm_group(Tensor x, Tensor[] q, Tensor[] d, Tensor?[] m, int kind, int activation_bits) -> Tensor");
  library.def("gguf_dequantize(Tensor q, Tensor d, Tensor? m, int kind) -> Tensor");
}

TORCH_LIBRARY_IMPL(studio, CPU, library) {
  library.impl("gguf_mm", &gguf_mm);
  library.impl("gguf_mm_group", &gguf_mm_group);
  library.impl("gguf_dequantize", &gguf_dequantize);
}
