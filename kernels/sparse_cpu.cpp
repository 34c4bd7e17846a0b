// Block-sparse (BSR) and CSR weights times dense inputs on CPU, fp32: y = x @ W.T.
//
// Written for the memory bound: at batch 1 a sparse layer costs the time to read its kept
// weights once, so the loops read each kept value exactly once, in storage order, with
// nothing else (no per-weight index for BSR, one int32 per weight for CSR).
//
// BSR values are stored transposed inside each block, [blocks, bw, bh] (built by
// sparsearch.kernels._sparse_cpu), so the inner loop of both BSR paths runs over the bh
// output rows of a block: contiguous and independent lanes, which the compiler turns into
// vector FMAs without -ffast-math (a dot product over k would be a reduction, which it may
// not reorder).
//
// At batch > 1 the loops are register tiles written with AVX2 intrinsics (GCC's own
// vectoriser turned the obvious loops into per-iteration register shuffles, at a tenth of
// the FMA rate): BSR keeps 6 batch rows x 16 block rows of accumulators, loading each
// weight vector once per tile and broadcasting inputs against it; CSR transposes the
// input once, xT [in, B8] with the batch padded to a multiple of 8, and broadcasts each
// weight against a contiguous run of batch columns, producing yT [out, B8]. Without AVX2
// both fall back to plain loops. Rows (block rows) are split across threads with
// at::parallel_for.

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

constexpr int64_t kBatchPad = 8;

// ---- BSR -------------------------------------------------------------------------------

template <int BH>
void bsr_gemv_rows(const float* vt, const int64_t* crow, const int64_t* col, const float* x,
                   float* y, int64_t bw, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float acc[BH] = {0};
    for (int64_t j = crow[r]; j < crow[r + 1]; ++j) {
      const float* block = vt + j * bw * BH;
      const float* xs = x + col[j] * bw;
      for (int64_t k = 0; k < bw; ++k) {
        const float xv = xs[k];
        const float* v = block + k * BH;
        for (int i = 0; i < BH; ++i) acc[i] += v[i] * xv;
      }
    }
    std::copy(acc, acc + BH, y + r * BH);
  }
}

void bsr_gemv_rows_any(const float* vt, const int64_t* crow, const int64_t* col,
                       const float* x, float* y, int64_t bh, int64_t bw, int64_t r0,
                       int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* acc = y + r * bh;
    std::fill(acc, acc + bh, 0.f);
    for (int64_t j = crow[r]; j < crow[r + 1]; ++j) {
      const float* block = vt + j * bw * bh;
      const float* xs = x + col[j] * bw;
      for (int64_t k = 0; k < bw; ++k) {
        const float xv = xs[k];
        for (int64_t i = 0; i < bh; ++i) acc[i] += block[k * bh + i] * xv;
      }
    }
  }
}

#ifdef SPARSEARCH_AVX2
// BT batch rows x NV*8 rows of block row r (from row i0), accumulated over its blocks.
template <int NV, int BT>
inline void bsr_tile(const float* vt, const int64_t* col, int64_t j0, int64_t j1, int64_t bh,
                     int64_t bw, int64_t i0, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
  __m256 acc[BT][NV];
  for (int b = 0; b < BT; ++b)
    for (int v = 0; v < NV; ++v) acc[b][v] = _mm256_setzero_ps();
  for (int64_t j = j0; j < j1; ++j) {
    const float* block = vt + j * bw * bh + i0;
    const float* xs = x + col[j] * bw;
    for (int64_t k = 0; k < bw; ++k) {
      __m256 w[NV];
      for (int v = 0; v < NV; ++v) w[v] = _mm256_loadu_ps(block + k * bh + 8 * v);
      for (int b = 0; b < BT; ++b) {
        const __m256 xb = _mm256_broadcast_ss(xs + b * ldx + k);
        for (int v = 0; v < NV; ++v) acc[b][v] = _mm256_fmadd_ps(xb, w[v], acc[b][v]);
      }
    }
  }
  for (int b = 0; b < BT; ++b)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(y + b * ldy + i0 + 8 * v, acc[b][v]);
}

template <int NV, int BT>
void bsr_gemm_rows(const float* vt, const int64_t* crow, const int64_t* col, const float* x,
                   float* y, int64_t bh, int64_t bw, int64_t batch, int64_t in, int64_t out,
                   int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* yr = y + r * bh;
    for (int64_t i0 = 0; i0 < bh; i0 += 8 * NV) {
      int64_t b = 0;
      for (; b + BT <= batch; b += BT) {
        bsr_tile<NV, BT>(vt, col, crow[r], crow[r + 1], bh, bw, i0, x + b * in, in,
                         yr + b * out, out);
      }
      for (; b < batch; ++b) {
        bsr_tile<NV, 1>(vt, col, crow[r], crow[r + 1], bh, bw, i0, x + b * in, in,
                        yr + b * out, out);
      }
    }
  }
}
#endif

// x [B, in] -> xT [in, B8], zero-padded batch columns.
at::Tensor transpose_padded(const at::Tensor& x) {
  const int64_t batch = x.size(0);
  const int64_t padded = (batch + kBatchPad - 1) / kBatchPad * kBatchPad;
  auto xt = at::zeros({x.size(1), padded}, x.options());
  xt.narrow(1, 0, batch).copy_(x.t());
  return xt;
}

int64_t grain_for(int64_t work_per_item) {
  // Enough work per task that waking the thread pool does not dominate small layers.
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_item));
}

at::Tensor bsr_linear(const at::Tensor& x, const at::Tensor& values_t, const at::Tensor& crow,
                      const at::Tensor& col, int64_t in_features) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "bsr_linear: x must be a 2-D fp32 CPU tensor");
  TORCH_CHECK(values_t.dim() == 3 && values_t.scalar_type() == at::kFloat,
              "bsr_linear: values must be fp32 [blocks, bw, bh]");
  TORCH_CHECK(crow.scalar_type() == at::kLong && col.scalar_type() == at::kLong,
              "bsr_linear: indices must be int64");
  TORCH_CHECK(col.numel() == values_t.size(0), "bsr_linear: one column index per block");
  const int64_t bw = values_t.size(1), bh = values_t.size(2);
  const int64_t block_rows = crow.numel() - 1;
  const int64_t out = block_rows * bh, in = x.size(1), batch = x.size(0);
  TORCH_CHECK(in == in_features, "bsr_linear: x has ", in, " features, the weight ",
              in_features);
  TORCH_CHECK(in % bw == 0, "bsr_linear: in_features ", in, " is not a multiple of block width ",
              bw);
  const auto v = values_t.contiguous();
  const auto cr = crow.contiguous();
  const auto cl = col.contiguous();
  const int64_t* crp = cr.data_ptr<int64_t>();
  const int64_t* clp = cl.data_ptr<int64_t>();
  if (cl.numel()) {
    const int64_t max_col = cl.max().item<int64_t>();
    TORCH_CHECK(cl.min().item<int64_t>() >= 0 && (max_col + 1) * bw <= in,
                "bsr_linear: a block column lies outside the input");
  }
  const int64_t blocks_per_row = std::max<int64_t>(1, v.size(0) / std::max<int64_t>(1, block_rows));
  if (batch == 1) {
    const auto xc = x.contiguous();
    auto y = at::empty({1, out}, x.options());
    const float *vp = v.data_ptr<float>(), *xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, block_rows, grain_for(blocks_per_row * bh * bw), [&](int64_t r0, int64_t r1) {
      switch (bh) {
        case 8: bsr_gemv_rows<8>(vp, crp, clp, xp, yp, bw, r0, r1); break;
        case 16: bsr_gemv_rows<16>(vp, crp, clp, xp, yp, bw, r0, r1); break;
        case 32: bsr_gemv_rows<32>(vp, crp, clp, xp, yp, bw, r0, r1); break;
        case 64: bsr_gemv_rows<64>(vp, crp, clp, xp, yp, bw, r0, r1); break;
        default: bsr_gemv_rows_any(vp, crp, clp, xp, yp, bh, bw, r0, r1);
      }
    });
    return y;
  }
  const auto xc = x.contiguous();
  auto y = at::empty({batch, out}, x.options());
  if (batch == 0 || out == 0) return y;
  const float *vp = v.data_ptr<float>(), *xp = xc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, block_rows, grain_for(blocks_per_row * bh * bw * batch),
                   [&](int64_t r0, int64_t r1) {
#ifdef SPARSEARCH_AVX2
    if (bh % 16 == 0) {
      bsr_gemm_rows<2, 6>(vp, crp, clp, xp, yp, bh, bw, batch, in, out, r0, r1);
      return;
    }
    if (bh % 8 == 0) {
      bsr_gemm_rows<1, 8>(vp, crp, clp, xp, yp, bh, bw, batch, in, out, r0, r1);
      return;
    }
#endif
    for (int64_t b = 0; b < batch; ++b) {
      bsr_gemv_rows_any(vp, crp, clp, xp + b * in, yp + b * out, bh, bw, r0, r1);
    }
  });
  return y;
}

// ---- CSR -------------------------------------------------------------------------------

void csr_gemv_rows(const float* values, const int64_t* crow, const int32_t* col,
                   const float* x, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    // Eight partial sums: independent lanes the compiler can gather and FMA as a vector.
    float acc[8] = {0};
    int64_t j = crow[r];
    const int64_t end = crow[r + 1];
    for (; j + 8 <= end; j += 8) {
      for (int l = 0; l < 8; ++l) acc[l] += values[j + l] * x[col[j + l]];
    }
    float sum = 0.f;
    for (; j < end; ++j) sum += values[j] * x[col[j]];
    for (int l = 0; l < 8; ++l) sum += acc[l];
    y[r] = sum;
  }
}

// One output row times 8*Q batch columns: each weight broadcast against contiguous runs of
// xT; two interleaved accumulator sets, so consecutive weights do not wait on each other.
#ifdef SPARSEARCH_AVX2
template <int Q>
inline void csr_tile(const float* values, const int32_t* col, int64_t j0, int64_t j1,
                     const float* xt, int64_t ldb, float* yt_row) {
  __m256 a[Q], c[Q];
  for (int q = 0; q < Q; ++q) a[q] = c[q] = _mm256_setzero_ps();
  int64_t j = j0;
  for (; j + 2 <= j1; j += 2) {
    const __m256 w0 = _mm256_broadcast_ss(values + j);
    const __m256 w1 = _mm256_broadcast_ss(values + j + 1);
    const float* p0 = xt + static_cast<int64_t>(col[j]) * ldb;
    const float* p1 = xt + static_cast<int64_t>(col[j + 1]) * ldb;
    for (int q = 0; q < Q; ++q) {
      a[q] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(p0 + 8 * q), a[q]);
      c[q] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(p1 + 8 * q), c[q]);
    }
  }
  if (j < j1) {
    const __m256 w0 = _mm256_broadcast_ss(values + j);
    const float* p0 = xt + static_cast<int64_t>(col[j]) * ldb;
    for (int q = 0; q < Q; ++q) a[q] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(p0 + 8 * q), a[q]);
  }
  for (int q = 0; q < Q; ++q) _mm256_storeu_ps(yt_row + 8 * q, _mm256_add_ps(a[q], c[q]));
}
#endif

void csr_gemm_rows(const float* values, const int64_t* crow, const int32_t* col,
                   const float* xt, float* yt, int64_t ldb, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* yr = yt + r * ldb;
#ifdef SPARSEARCH_AVX2
    int64_t b0 = 0;
    for (; b0 + 32 <= ldb; b0 += 32) csr_tile<4>(values, col, crow[r], crow[r + 1], xt + b0, ldb, yr + b0);
    switch ((ldb - b0) / 8) {
      case 0: break;
      case 1: csr_tile<1>(values, col, crow[r], crow[r + 1], xt + b0, ldb, yr + b0); break;
      case 2: csr_tile<2>(values, col, crow[r], crow[r + 1], xt + b0, ldb, yr + b0); break;
      default: csr_tile<3>(values, col, crow[r], crow[r + 1], xt + b0, ldb, yr + b0); break;
    }
#else
    std::fill(yr, yr + ldb, 0.f);
    for (int64_t j = crow[r]; j < crow[r + 1]; ++j) {
      const float w = values[j];
      const float* xr = xt + static_cast<int64_t>(col[j]) * ldb;
      for (int64_t b = 0; b < ldb; ++b) yr[b] += w * xr[b];
    }
#endif
  }
}

at::Tensor csr_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& crow,
                      const at::Tensor& col, int64_t in_features) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "csr_linear: x must be a 2-D fp32 CPU tensor");
  TORCH_CHECK(values.dim() == 1 && values.scalar_type() == at::kFloat,
              "csr_linear: values must be 1-D fp32");
  TORCH_CHECK(crow.scalar_type() == at::kLong && col.scalar_type() == at::kInt,
              "csr_linear: crow must be int64 and col int32");
  TORCH_CHECK(col.numel() == values.numel(), "csr_linear: one column index per value");
  const int64_t out = crow.numel() - 1, batch = x.size(0);
  const auto v = values.contiguous();
  const auto cr = crow.contiguous();
  const auto cl = col.contiguous();
  // Column indices are checked once when the operands are built (a scan here would read
  // them twice per call, half again the weights' own traffic).
  TORCH_CHECK(crow.numel() >= 1, "csr_linear: crow must hold out + 1 offsets");
  TORCH_CHECK(x.size(1) == in_features, "csr_linear: x has ", x.size(1),
              " features, the weight ", in_features);
  const float* vp = v.data_ptr<float>();
  const int64_t* crp = cr.data_ptr<int64_t>();
  const int32_t* clp = cl.data_ptr<int32_t>();
  const int64_t per_row = std::max<int64_t>(1, v.numel() / std::max<int64_t>(1, out));
  if (batch == 1) {
    const auto xc = x.contiguous();
    auto y = at::empty({1, out}, x.options());
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, out, grain_for(per_row * 2), [&](int64_t r0, int64_t r1) {
      csr_gemv_rows(vp, crp, clp, xp, yp, r0, r1);
    });
    return y;
  }
  const auto xt = transpose_padded(x);
  const int64_t ldb = xt.size(1);
  auto yt = at::empty({out, ldb}, x.options());
  if (batch == 0 || out == 0) return yt.narrow(1, 0, batch).t();
  const float* xp = xt.data_ptr<float>();
  float* yp = yt.data_ptr<float>();
  at::parallel_for(0, out, grain_for(per_row * ldb), [&](int64_t r0, int64_t r1) {
    csr_gemm_rows(vp, crp, clp, xp, yp, ldb, r0, r1);
  });
  return yt.narrow(1, 0, batch).t();
}

}  // namespace

TORCH_LIBRARY(sparsearch_sparse, lib) {
  lib.def("bsr_linear(Tensor x, Tensor values_t, Tensor crow, Tensor col, int in_features) -> Tensor");
  lib.def("csr_linear(Tensor x, Tensor values, Tensor crow, Tensor col, int in_features) -> Tensor");
}

TORCH_LIBRARY_IMPL(sparsearch_sparse, CPU, lib) {
  lib.impl("bsr_linear", &bsr_linear);
  lib.impl("csr_linear", &csr_linear);
}
