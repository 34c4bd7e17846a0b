// N:M sparse x dense on CPU: y[b, o] = sum_k W[o, k] x[b, k] for a weight that keeps N of
// every M consecutive weights of a row (Zhou et al., arXiv 2102.04010).
//
// Layout (built by sparsearch.kernels._nm_cpu.pack): rows are taken 8 at a time, one AVX2
// vector; for each row block, group g and slot s (< N) the 8 rows' values and their
// positions inside the M-group sit side by side:
//   values  [blocks, groups, N, 8] fp32
//   indices [blocks, groups, N, 8] uint8
// The M inputs of group g are loaded once as a window and the 8 rows' inputs are picked by
// in-register permutes (vpermps, plus blends for M = 16, 32) instead of memory gathers,
// which are slow on AMD cores. Batch rows are processed 8 at a time so each weight vector
// is reused 8 times from registers; the 8-row window of x stays in L2.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPARSEARCH_AVX2 1
#endif

namespace {

constexpr int kRows = 8;
constexpr int kBatchTile = 8;
// Bytes of weights (fp32 value + uint8 position each) kept hot across batch tiles.
constexpr int64_t kTileBytes = 96 * 1024;

#ifdef SPARSEARCH_AVX2
// For each of 8 lanes, window[idx[lane]] with idx < M.
template <int M>
inline __m256 select_lanes(const float* window, __m256i idx) {
  if constexpr (M == 4) {
    return _mm256_permutevar8x32_ps(
        _mm256_broadcast_ps(reinterpret_cast<const __m128*>(window)), idx);
  } else if constexpr (M == 8) {
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(window), idx);
  } else if constexpr (M == 16) {
    // vpermps reads the low 3 bits; bit 3 (moved to the sign bit) picks the half.
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(window), idx);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(window + 8), idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  } else {
    const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    const __m256 a = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(window), idx),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(window + 8), idx),
                                      bit3);
    const __m256 b =
        _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(window + 16), idx),
                         _mm256_permutevar8x32_ps(_mm256_loadu_ps(window + 24), idx), bit3);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27)));
  }
}

inline __m256i load_positions(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

inline void store_rows(float* y, __m256 acc, int64_t rows_here) {
  if (rows_here == kRows) {
    _mm256_storeu_ps(y, acc);
  } else {
    alignas(32) float tmp[kRows];
    _mm256_store_ps(tmp, acc);
    std::copy(tmp, tmp + rows_here, y);
  }
}

// One row block times BT batch rows of x.
template <int M, int BT>
void row_block(const float* values, const uint8_t* idx, const float* x, int64_t ldx,
               float* y, int64_t ldy, int64_t slots, int64_t n, int64_t rows_here) {
  __m256 acc[BT];
  for (int b = 0; b < BT; ++b) acc[b] = _mm256_setzero_ps();
  for (int64_t k = 0; k < slots; ++k) {
    const float* window = x + (k / n) * M;
    const __m256i pos = load_positions(idx + k * kRows);
    const __m256 w = _mm256_loadu_ps(values + k * kRows);
#pragma GCC unroll 8
    for (int b = 0; b < BT; ++b) {
      acc[b] = _mm256_fmadd_ps(w, select_lanes<M>(window + b * ldx, pos), acc[b]);
    }
  }
  for (int b = 0; b < BT; ++b) store_rows(y + b * ldy, acc[b], rows_here);
}

// Batch of one: four accumulators over consecutive slots hide the FMA latency.
template <int M>
void row_block_gemv(const float* values, const uint8_t* idx, const float* x, float* y,
                    int64_t slots, int64_t n, int64_t rows_here) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t k = 0;
  for (; k + 4 <= slots; k += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const int64_t s = k + u;
      acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(values + s * kRows),
                               select_lanes<M>(x + (s / n) * M, load_positions(idx + s * kRows)),
                               acc[u]);
    }
  }
  for (; k < slots; ++k) {
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(values + k * kRows),
                             select_lanes<M>(x + (k / n) * M, load_positions(idx + k * kRows)),
                             acc[0]);
  }
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  store_rows(y, sum, rows_here);
}
#else
template <int M, int BT>
void row_block(const float* values, const uint8_t* idx, const float* x, int64_t ldx,
               float* y, int64_t ldy, int64_t slots, int64_t n, int64_t rows_here) {
  for (int b = 0; b < BT; ++b) {
    float acc[kRows] = {0};
    for (int64_t k = 0; k < slots; ++k) {
      const float* window = x + b * ldx + (k / n) * M;
      for (int r = 0; r < kRows; ++r) acc[r] += values[k * kRows + r] * window[idx[k * kRows + r]];
    }
    std::copy(acc, acc + rows_here, y + b * ldy);
  }
}

template <int M>
void row_block_gemv(const float* values, const uint8_t* idx, const float* x, float* y,
                    int64_t slots, int64_t n, int64_t rows_here) {
  row_block<M, 1>(values, idx, x, 0, y, 0, slots, n, rows_here);
}
#endif

template <int M, int BT>
void batch_tile(const float* values, const uint8_t* idx, const float* x, float* y,
                int64_t in_features, int64_t out_features, int64_t slots, int64_t n,
                int64_t block_begin, int64_t block_end) {
  const int64_t block_stride = slots * kRows;
  for (int64_t blk = block_begin; blk < block_end; ++blk) {
    const int64_t rows_here = std::min<int64_t>(kRows, out_features - blk * kRows);
    row_block<M, BT>(values + blk * block_stride, idx + blk * block_stride, x, in_features,
                     y + blk * kRows, out_features, slots, n, rows_here);
  }
}

template <int M>
void nm_linear_impl(const float* values, const uint8_t* idx, const float* x, float* y,
                    int64_t batch, int64_t in_features, int64_t out_features, int64_t n) {
  const int64_t slots = in_features / M * n;
  const int64_t blocks = (out_features + kRows - 1) / kRows;
  const int64_t block_stride = slots * kRows;
  // Enough work per task that the thread pool's wake-up cost does not dominate small layers.
  const int64_t work_per_block = std::max<int64_t>(1, slots * kRows * std::min<int64_t>(batch, kBatchTile));
  const int64_t grain = std::max<int64_t>(1, 65536 / work_per_block);
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    if (batch == 1) {
      for (int64_t blk = begin; blk < end; ++blk) {
        row_block_gemv<M>(values + blk * block_stride, idx + blk * block_stride, x,
                          y + blk * kRows, slots, n,
                          std::min<int64_t>(kRows, out_features - blk * kRows));
      }
      return;
    }
    // Row tiles whose weights stay in L2 while every batch tile of x streams past them.
    const int64_t tile = std::max<int64_t>(1, kTileBytes / (block_stride * 5));
    for (int64_t t0 = begin; t0 < end; t0 += tile) {
      const int64_t t1 = std::min(end, t0 + tile);
      int64_t b0 = 0;
      for (; b0 + kBatchTile <= batch; b0 += kBatchTile) {
        batch_tile<M, kBatchTile>(values, idx, x + b0 * in_features, y + b0 * out_features,
                                  in_features, out_features, slots, n, t0, t1);
      }
      const float* xr = x + b0 * in_features;
      float* yr = y + b0 * out_features;
      switch (batch - b0) {
        case 0: break;
        case 1: batch_tile<M, 1>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
        case 2: batch_tile<M, 2>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
        case 3: batch_tile<M, 3>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
        case 4: batch_tile<M, 4>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
        case 5: batch_tile<M, 5>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
        case 6: batch_tile<M, 6>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
        default: batch_tile<M, 7>(values, idx, xr, yr, in_features, out_features, slots, n, t0, t1); break;
      }
    }
  });
}

at::Tensor nm_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& indices,
                     int64_t out_features, int64_t m) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "nm_linear: x must be a 2-D fp32 CPU tensor");
  TORCH_CHECK(values.dim() == 4 && values.size(3) == kRows && values.scalar_type() == at::kFloat,
              "nm_linear: values must be fp32 [blocks, groups, n, 8]");
  TORCH_CHECK(indices.sizes() == values.sizes() && indices.scalar_type() == at::kByte,
              "nm_linear: indices must be uint8 shaped like values");
  TORCH_CHECK(values.size(0) * kRows >= out_features, "nm_linear: too few row blocks");
  const auto xc = x.contiguous();
  const auto v = values.contiguous();
  const auto ix = indices.contiguous();
  const int64_t batch = xc.size(0), in_features = xc.size(1), n = v.size(2);
  TORCH_CHECK(v.size(1) * m == in_features, "nm_linear: groups * m != in_features");
  auto y = at::empty({batch, out_features}, xc.options());
  if (batch == 0 || out_features == 0) return y;
  const float* vp = v.data_ptr<float>();
  const uint8_t* ip = ix.data_ptr<uint8_t>();
  const float* xp = xc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  switch (m) {
    case 4: nm_linear_impl<4>(vp, ip, xp, yp, batch, in_features, out_features, n); break;
    case 8: nm_linear_impl<8>(vp, ip, xp, yp, batch, in_features, out_features, n); break;
    case 16: nm_linear_impl<16>(vp, ip, xp, yp, batch, in_features, out_features, n); break;
    case 32: nm_linear_impl<32>(vp, ip, xp, yp, batch, in_features, out_features, n); break;
    default: TORCH_CHECK(false, "nm_linear: M must be 4, 8, 16 or 32, got ", m);
  }
  return y;
}

}  // namespace

TORCH_LIBRARY(sparsearch_kernels, lib) {
  lib.def("nm_linear(Tensor x, Tensor values, Tensor indices, int out_features, int m) -> Tensor");
}

TORCH_LIBRARY_IMPL(sparsearch_kernels, CPU, lib) { lib.impl("nm_linear", &nm_linear); }
