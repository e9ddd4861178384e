/* The convolution's edge contraction as one CPU kernel (inference: energies and forces).
 *
 *   out[r, q, c] = sum_{e : receiver[e] = r} w[e, path[q], c] * sum_k g[e, k, q] * x[sender[e], k, c]
 *
 * g (E, K, Q): the edge harmonics contracted with one input block's coupling tables; x (N, K, C): that
 * block of the node features, channels last; w (E, P, C): the radial weights of the block's paths;
 * path (Q,): the path of each output column.  The reference (ictp_model/nn/convolution.py) gathers
 * x per edge, multiplies, weights and scatters, writing (E, Q, C) tensors several times; here each
 * receiver's sum is accumulated in place and the per-edge products never reach memory.
 *
 * ictp::edge_contract has a first derivative (ictp::edge_contract_backward, for forces) but no
 * second: training, which differentiates forces, keeps the reference path, and a backward with
 * create_graph stops with an error instead of returning wrong second derivatives.
 *
 * Registered with the dispatcher (TORCH_LIBRARY), so that eager Python, TorchScript and AOTInductor
 * packages (through the proxy executor) call the same code; built for Python by
 * ictp_model/kernels/__init__.py and into the LAMMPS plugin by CMakeLists.txt.
 *
 * Part of ictp (MIT).
 */

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

// an index out of range is an error naming the edge, not a stray read or write
void check_range(const int64_t *key, int64_t num_edges, int64_t num_keys, const char *what)
{
  for (int64_t e = 0; e < num_edges; e++)
    TORCH_CHECK(key[e] >= 0 && key[e] < num_keys, "ictp::edge_contract: edge ", e, " has ", what, " ", key[e],
                ", outside [0, ", num_keys, ")");
}

// the edges grouped by key (a counting sort): the edges of key i are order[offsets[i] : offsets[i + 1]]
void group_by(const int64_t *key, int64_t num_edges, int64_t num_keys, std::vector<int64_t> &offsets,
              std::vector<int64_t> &order)
{
  check_range(key, num_edges, num_keys, "atom index");
  offsets.assign(num_keys + 1, 0);
  for (int64_t e = 0; e < num_edges; e++) offsets[key[e] + 1]++;
  for (int64_t i = 0; i < num_keys; i++) offsets[i + 1] += offsets[i];
  order.resize(num_edges);
  std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
  for (int64_t e = 0; e < num_edges; e++) order[next[key[e]]++] = e;
}

struct Sizes {
  int64_t edges, nodes, receivers, k, q, paths, channels;
};

// KK: the input block's dimension when it is one of the common ones (unrolled), 0 otherwise
template <typename T, int KK>
void forward_kernel(const T *g, const T *x, const T *w, const int64_t *path, const int64_t *receiver,
                    const int64_t *sender, T *out, Sizes n)
{
  const int64_t K = KK > 0 ? KK : n.k, Q = n.q, C = n.channels;
  std::vector<int64_t> offsets, order;
  group_by(receiver, n.edges, n.receivers, offsets, order);
  check_range(sender, n.edges, n.nodes, "sender");
  at::parallel_for(0, n.receivers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      T *acc = out + r * Q * C;
      std::fill(acc, acc + Q * C, T(0));  // (here, not a separate pass over the whole output)
      for (int64_t i = offsets[r]; i < offsets[r + 1]; i++) {
        const int64_t e = order[i];
        const T *xs = x + sender[e] * K * C;
        const T *ge = g + e * K * Q;
        const T *we = w + e * n.paths * C;
        for (int64_t q = 0; q < Q; q++) {
          const T *wq = we + path[q] * C;
          T *o = acc + q * C;
#pragma omp simd
          for (int64_t c = 0; c < C; c++) {
            T s = 0;
            for (int64_t k = 0; k < K; k++) s += ge[k * Q + q] * xs[k * C + c];
            o[c] += wq[c] * s;
          }
        }
      }
    }
  });
}

// The backward of one edge, with u[q, c] = t[q, c] w[path q, c] (t: the output gradient of the
// edge's receiver):
//   dw[p, c] = sum_{q in p} t[q, c] m[q, c],  m[q, c] = sum_k g[k, q] x[k, c]
//   dx[k, c] += sum_q g[k, q] u[q, c],        dg[k, q] = sum_c x[k, c] u[q, c]
// dw must hold zeros; u is scratch of Q x C.
//
// Register-blocked form (K = KK >= 3, C a multiple of B): a vector of B channels of x and dx stays
// in registers across the columns q; u is kept (in cache) for dg.
template <typename T, int KK, int64_t B>
inline void edge_backward_blocked(const T *ge, const T *xs, const T *we, const T *t, const int64_t *path, T *dwe,
                                  T *dge, T *dxs, T *u, int64_t Q, int64_t C)
{
  for (int64_t c0 = 0; c0 < C; c0 += B) {
    T xr[KK][B], dxr[KK][B];
    for (int64_t k = 0; k < KK; k++)
      for (int64_t c = 0; c < B; c++) xr[k][c] = xs[k * C + c0 + c], dxr[k][c] = 0;
    for (int64_t q = 0; q < Q; q++) {
      const T *tq = t + q * C + c0, *wq = we + path[q] * C + c0;
      T *dwq = dwe + path[q] * C + c0, *uq = u + q * C + c0;
      T gq[KK];
      for (int64_t k = 0; k < KK; k++) gq[k] = ge[k * Q + q];
#pragma omp simd
      for (int64_t c = 0; c < B; c++) {
        T m = 0;
        for (int64_t k = 0; k < KK; k++) m += gq[k] * xr[k][c];
        dwq[c] += tq[c] * m;
        const T uc = tq[c] * wq[c];
        uq[c] = uc;
        for (int64_t k = 0; k < KK; k++) dxr[k][c] += gq[k] * uc;
      }
    }
    for (int64_t k = 0; k < KK; k++)
      for (int64_t c = 0; c < B; c++) dxs[k * C + c0 + c] += dxr[k][c];
  }
  for (int64_t q = 0; q < Q; q++) {
    T acc[KK][B] = {};
    for (int64_t c0 = 0; c0 < C; c0 += B)
      for (int64_t k = 0; k < KK; k++)
#pragma omp simd
        for (int64_t c = 0; c < B; c++) acc[k][c] += xs[k * C + c0 + c] * u[q * C + c0 + c];
    for (int64_t k = 0; k < KK; k++) {
      T sum = 0;
      for (int64_t c = 0; c < B; c++) sum += acc[k][c];
      dge[k * Q + q] = sum;
    }
  }
}

// Plain form (any K and C; faster than the blocked one for K = 1): column by column.  K = KK
// where KK > 0 (unrolled), else k.
template <typename T, int KK>
inline void edge_backward_plain(const T *ge, const T *xs, const T *we, const T *t, const int64_t *path, T *dwe,
                                T *dge, T *dxs, T *u, int64_t k_, int64_t Q, int64_t C)
{
  const int64_t K = KK > 0 ? KK : k_;
  for (int64_t q = 0; q < Q; q++) {
    const T *wq = we + path[q] * C;
    T *dwq = dwe + path[q] * C;
    const T *tq = t + q * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
      T m = 0;
      for (int64_t k = 0; k < K; k++) m += ge[k * Q + q] * xs[k * C + c];
      dwq[c] += tq[c] * m;
      u[c] = tq[c] * wq[c];
    }
    for (int64_t k = 0; k < K; k++) {
      const T *xk = xs + k * C;
      const T gk = ge[k * Q + q];
      T *d = dxs + k * C;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < C; c++) {
        sum += u[c] * xk[c];
        d[c] += gk * u[c];
      }
      dge[k * Q + q] = sum;
    }
  }
}

// one pass over the edges grouped by sender: dw and dg are each edge's own rows, and dx[s] is
// summed by the one thread that holds sender s
template <typename T, int KK>
void backward_kernel(const T *grad, const T *g, const T *x, const T *w, const int64_t *path,
                     const int64_t *receiver, const int64_t *sender, T *dg, T *dx, T *dw, Sizes n)
{
  constexpr int64_t B = 32 / sizeof(T);  // one AVX2 vector of channels
  const int64_t K = KK > 0 ? KK : n.k, Q = n.q, C = n.channels;
  const bool blocked = KK >= 3 && C % B == 0;
  std::vector<int64_t> offsets, order;
  group_by(sender, n.edges, n.nodes, offsets, order);
  check_range(receiver, n.edges, n.receivers, "receiver");
  at::parallel_for(0, n.nodes, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(Q * C);
    for (int64_t s = begin; s < end; s++) {
      const T *xs = x + s * K * C;
      T *dxs = dx + s * K * C;
      for (int64_t i = offsets[s]; i < offsets[s + 1]; i++) {
        const int64_t e = order[i];
        const T *ge = g + e * K * Q, *we = w + e * n.paths * C, *t = grad + receiver[e] * Q * C;
        T *dwe = dw + e * n.paths * C, *dge = dg + e * K * Q;
        std::fill(dwe, dwe + n.paths * C, T(0));  // the edge's own row: zeroed while it is in cache
        if constexpr (KK >= 3) {
          if (blocked) {
            edge_backward_blocked<T, KK, B>(ge, xs, we, t, path, dwe, dge, dxs, scratch.data(), Q, C);
            continue;
          }
        }
        edge_backward_plain<T, KK>(ge, xs, we, t, path, dwe, dge, dxs, scratch.data(), K, Q, C);
      }
    }
  });
}

#define ICTP_DISPATCH_K(k, kernel, ...)                                                                               \
  switch (k) {                                                                                                        \
  case 1: kernel<scalar_t, 1>(__VA_ARGS__); break;                                                                    \
  case 3: kernel<scalar_t, 3>(__VA_ARGS__); break;                                                                    \
  case 5: kernel<scalar_t, 5>(__VA_ARGS__); break;                                                                    \
  case 7: kernel<scalar_t, 7>(__VA_ARGS__); break;                                                                    \
  default: kernel<scalar_t, 0>(__VA_ARGS__);                                                                          \
  }

void check_inputs(const Tensor &g, const Tensor &x, const Tensor &w, const Tensor &path, const Tensor &receiver,
                  const Tensor &sender)
{
  TORCH_CHECK(g.dim() == 3 && x.dim() == 3 && w.dim() == 3, "ictp::edge_contract: g, x, w must be 3-dimensional");
  TORCH_CHECK(g.size(1) == x.size(1), "ictp::edge_contract: g (E, K, Q) and x (N, K, C) disagree on K");
  TORCH_CHECK(w.size(0) == g.size(0) && w.size(2) == x.size(2), "ictp::edge_contract: w must be (E, P, C)");
  TORCH_CHECK(path.numel() == g.size(2), "ictp::edge_contract: path needs one entry per column of g");
  TORCH_CHECK(receiver.numel() == g.size(0) && sender.numel() == g.size(0),
              "ictp::edge_contract: receiver and sender need one entry per edge");
  TORCH_CHECK(g.scalar_type() == x.scalar_type() && w.scalar_type() == x.scalar_type(),
              "ictp::edge_contract: g, x, w must have one dtype");
  TORCH_CHECK(path.scalar_type() == at::kLong && receiver.scalar_type() == at::kLong &&
                  sender.scalar_type() == at::kLong,
              "ictp::edge_contract: indices must be int64");
}

Tensor edge_contract_cpu(const Tensor &g_, const Tensor &x_, const Tensor &w_, const Tensor &path_,
                         const Tensor &receiver_, const Tensor &sender_, int64_t num_receivers)
{
  check_inputs(g_, x_, w_, path_, receiver_, sender_);
  Tensor g = g_.contiguous(), x = x_.contiguous(), w = w_.contiguous(), path = path_.contiguous();
  Tensor receiver = receiver_.contiguous(), sender = sender_.contiguous();
  Sizes n{g.size(0), x.size(0), num_receivers, g.size(1), g.size(2), w.size(1), x.size(2)};
  Tensor out = at::empty({num_receivers, n.q, n.channels}, x.options());  // (each row zeroed by its thread)
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ictp::edge_contract", [&] {
    ICTP_DISPATCH_K(n.k, forward_kernel, g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                    path.data_ptr<int64_t>(), receiver.data_ptr<int64_t>(), sender.data_ptr<int64_t>(),
                    out.data_ptr<scalar_t>(), n);
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> edge_contract_backward_cpu(const Tensor &grad_, const Tensor &g_,
                                                               const Tensor &x_, const Tensor &w_, const Tensor &path_,
                                                               const Tensor &receiver_, const Tensor &sender_)
{
  check_inputs(g_, x_, w_, path_, receiver_, sender_);
  Tensor grad = grad_.contiguous(), g = g_.contiguous(), x = x_.contiguous(), w = w_.contiguous();
  Tensor path = path_.contiguous(), receiver = receiver_.contiguous(), sender = sender_.contiguous();
  Sizes n{g.size(0), x.size(0), grad.size(0), g.size(1), g.size(2), w.size(1), x.size(2)};
  Tensor dg = at::empty_like(g), dx = at::zeros_like(x), dw = at::empty_like(w);  // (dw: zeroed per edge)
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ictp::edge_contract_backward", [&] {
    ICTP_DISPATCH_K(n.k, backward_kernel, grad.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                    w.data_ptr<scalar_t>(), path.data_ptr<int64_t>(), receiver.data_ptr<int64_t>(),
                    sender.data_ptr<int64_t>(), dg.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                    dw.data_ptr<scalar_t>(), n);
  });
  return {dg, dx, dw};
}

class EdgeContract : public torch::autograd::Function<EdgeContract> {
public:
  static Tensor forward(torch::autograd::AutogradContext *ctx, const Tensor &g, const Tensor &x, const Tensor &w,
                        const Tensor &path, const Tensor &receiver, const Tensor &sender, c10::SymInt num_receivers)
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("ictp::edge_contract", "")
                         .typed<Tensor(const Tensor &, const Tensor &, const Tensor &, const Tensor &, const Tensor &,
                                       const Tensor &, c10::SymInt)>();
    ctx->save_for_backward({g, x, w, path, receiver, sender});
    return op.call(g, x, w, path, receiver, sender, std::move(num_receivers));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads)
  {
    TORCH_CHECK(!c10::GradMode::is_enabled(),
                "ictp::edge_contract has no second derivative: training (which differentiates forces) uses the "
                "reference convolution; turn the edge kernel off (ICTPNetwork.use_edge_kernel(False))");
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("ictp::edge_contract_backward", "")
                         .typed<std::tuple<Tensor, Tensor, Tensor>(const Tensor &, const Tensor &, const Tensor &,
                                                                   const Tensor &, const Tensor &, const Tensor &,
                                                                   const Tensor &)>();
    auto saved = ctx->get_saved_variables();
    auto [dg, dx, dw] = op.call(grads[0], saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
    return {dg, dx, dw, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor edge_contract_autograd(const Tensor &g, const Tensor &x, const Tensor &w, const Tensor &path,
                              const Tensor &receiver, const Tensor &sender, c10::SymInt num_receivers)
{
  return EdgeContract::apply(g, x, w, path, receiver, sender, std::move(num_receivers));
}

} // namespace

namespace ictp {

// Registers the ops unless this process holds them already: the Python package and the LAMMPS
// plugin both carry this file, and LAMMPS may run inside a Python process (a second TORCH_LIBRARY
// for one namespace would abort).
void register_kernels()
{
  static std::once_flag once;
  std::call_once(once, [] {
    if (c10::Dispatcher::singleton().findSchema({"ictp::edge_contract", ""}).has_value()) return;
    static torch::Library def(torch::Library::DEF, "ictp", std::nullopt, __FILE__, __LINE__);
    def.def("edge_contract(Tensor g, Tensor x, Tensor w, Tensor path, Tensor receiver, Tensor sender, "
            "SymInt num_receivers) -> Tensor");
    def.def("edge_contract_backward(Tensor grad, Tensor g, Tensor x, Tensor w, Tensor path, Tensor receiver, "
            "Tensor sender) -> (Tensor, Tensor, Tensor)");
    static torch::Library cpu(torch::Library::IMPL, "ictp", c10::DispatchKey::CPU, __FILE__, __LINE__);
    cpu.impl("edge_contract", edge_contract_cpu);
    cpu.impl("edge_contract_backward", edge_contract_backward_cpu);
    static torch::Library autograd(torch::Library::IMPL, "ictp", c10::DispatchKey::Autograd, __FILE__, __LINE__);
    autograd.impl("edge_contract", edge_contract_autograd);
  });
}

} // namespace ictp

#ifdef ICTP_REGISTER_ON_LOAD  // the Python build (ictp_model/kernels/__init__.py)
namespace {
struct RegisterOnLoad {
  RegisterOnLoad() { ictp::register_kernels(); }
} register_on_load;
} // namespace
#endif
