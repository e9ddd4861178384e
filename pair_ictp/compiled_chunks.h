/* The bounded-memory evaluation of a compiled model (.pt2): the chunk loop of
 * ictp_model/model/bounded.py (BoundedEvaluation._features and _energy_and_gradients) over the
 * package's compiled steps (update_t, backward_t, vectors, outputs: their inputs in
 * ictp_export/pieces.py, the package in ictp_export/compiled.py).
 *
 * Only each layer's node features are kept; every layer is recomputed chunk by chunk of
 * receivers, with at most max_edges edges per chunk.  The result equals the package's plain
 * model up to the order of floating-point sums (tests/lammps/test_compiled.py).
 *
 * Part of ictp; GPL-2.0 like LAMMPS (see pair_ictp/LICENSE).
 */

#ifndef ICTP_COMPILED_CHUNKS_H
#define ICTP_COMPILED_CHUNKS_H

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ictp {

class CompiledChunks {
 public:
  using Loader = torch::inductor::AOTIModelPackageLoader;

  // the steps of the package at `path` for a model of `layers` layers
  CompiledChunks(const std::string &path, int layers, c10::DeviceIndex device_index) : layers(layers)
  {
    auto load = [&](const std::string &name) {
      return std::make_unique<Loader>(path, name, false, 1, device_index);
    };
    vectors = load("vectors");
    outputs = load("outputs");
    for (int t = 0; t < layers; t++) {
      if (t < layers - 1) updates.push_back(load("update_" + std::to_string(t)));
      backwards.push_back(load("backward_" + std::to_string(t)));
    }
  }

  /* The five outputs of the interface (energy, node_energy, forces, virial, atom_virial) for a
     layered graph whose edges are sorted by centre; `centres` is edge_index[0] on the host. */
  std::vector<torch::Tensor> evaluate(const torch::Tensor &positions, const torch::Tensor &species,
                                      const torch::Tensor &edge_index, const torch::Tensor &shifts,
                                      const std::vector<int64_t> &centres, const std::vector<int64_t> &receivers,
                                      int64_t max_edges)
  {
    torch::Tensor v = vectors->run({positions, edge_index, shifts})[0];
    std::vector<std::vector<Chunk>> chunks;
    for (int64_t count : receivers) chunks.push_back(make_chunks(centres, count, max_edges));
    const int64_t num_nodes = species.size(0), num_out = receivers.back();

    // forward: the inputs of every layer (layer 0 embeds the elements itself)
    std::vector<std::vector<torch::Tensor>> features{{}};
    {
      torch::NoGradGuard no_grad;
      for (int t = 0; t < layers - 1; t++) {
        std::vector<std::vector<torch::Tensor>> parts;
        for (const Chunk &c : chunks[t]) {
          Local local = local_graph(edge_index, c, num_nodes);
          std::vector<torch::Tensor> in = select(features[t], local.nodes);
          in.push_back(species.index_select(0, local.nodes));
          in.push_back(v.slice(0, c.e0, c.e1));
          in.push_back(local.edges);
          in.push_back(torch::empty({c.r1 - c.r0}, v.options().dtype(torch::kFloat32)));
          parts.push_back(updates[t]->run(in));
        }
        std::vector<torch::Tensor> h;
        if (parts.empty()) throw std::runtime_error("a layer without receivers");    // (the caller skips those)
        for (size_t k = 0; k < parts.front().size(); k++) {
          std::vector<torch::Tensor> pieces;
          for (const auto &p : parts) pieces.push_back(p[k]);
          h.push_back(torch::cat(pieces, 0));
        }
        features.push_back(h);
      }
    }

    // backward: layer by layer, λ^(t) = ∂E/∂h^(t) carried from layer t to t - 1
    torch::Tensor energy = torch::zeros({num_out}, v.options());
    torch::Tensor g = torch::zeros_like(v);
    std::vector<torch::Tensor> adjoint;
    for (int t = layers - 1; t >= 0; t--) {
      std::vector<torch::Tensor> previous;
      for (const auto &x : features[t]) previous.push_back(torch::zeros_like(x));
      for (const Chunk &c : chunks[t]) {
        Local local = local_graph(edge_index, c, num_nodes);
        const int64_t n_out = std::max<int64_t>(0, std::min(c.r1, num_out) - c.r0);    // energies that count
        std::vector<torch::Tensor> in = select(features[t], local.nodes);
        in.push_back(species.index_select(0, local.nodes));
        in.push_back(v.slice(0, c.e0, c.e1));
        in.push_back(local.edges);
        in.push_back(torch::arange(c.r1 - c.r0, v.options()).lt(static_cast<double>(n_out)).to(v.scalar_type()));
        for (const auto &a : adjoint) in.push_back(a.slice(0, c.r0, c.r1));
        std::vector<torch::Tensor> out = backwards[t]->run(in);
        if (n_out > 0) energy.slice(0, c.r0, c.r0 + n_out).add_(out[0].slice(0, 0, n_out));
        g.slice(0, c.e0, c.e1).add_(out[1]);
        for (size_t k = 0; k < previous.size(); k++) previous[k].index_add_(0, local.nodes, out[2 + k]);
      }
      adjoint = previous;
    }
    return outputs->run({energy, g, v, edge_index, positions});
  }

 private:
  struct Chunk {
    int64_t r0, r1, e0, e1;    // receivers [r0, r1) and their edges [e0, e1)
  };
  struct Local {
    torch::Tensor nodes, edges;    // the chunk's atoms (receivers first) and its edges in local indices
  };

  // consecutive receiver ranges whose edges number at most max_edges (or one receiver, if it alone has more)
  static std::vector<Chunk> make_chunks(const std::vector<int64_t> &centres, int64_t num_receivers,
                                        int64_t max_edges)
  {
    std::vector<int64_t> offsets(num_receivers + 1);    // offsets[r]: the first edge centred on r
    for (int64_t r = 0; r <= num_receivers; r++)
      offsets[r] = std::lower_bound(centres.begin(), centres.end(), r) - centres.begin();
    std::vector<Chunk> out;
    for (int64_t r0 = 0; r0 < num_receivers;) {
      const int64_t limit = offsets[r0] + max_edges;
      int64_t r1 = std::upper_bound(offsets.begin(), offsets.end(), limit) - offsets.begin() - 1;
      r1 = std::min(std::max(r1, r0 + 1), num_receivers);
      out.push_back({r0, r1, offsets[r0], offsets[r1]});
      r0 = r1;
    }
    return out;
  }

  static Local local_graph(const torch::Tensor &edge_index, const Chunk &c, int64_t num_nodes)
  {
    auto ints = edge_index.options();
    torch::Tensor senders = edge_index[1].slice(0, c.e0, c.e1);
    torch::Tensor needed = torch::zeros({num_nodes}, ints.dtype(torch::kBool));
    needed.index_fill_(0, senders, true);
    needed.slice(0, c.r0, c.r1).fill_(false);
    torch::Tensor nodes = torch::cat({torch::arange(c.r0, c.r1, ints), torch::nonzero(needed).flatten()});
    torch::Tensor local = torch::full({num_nodes}, -1, ints);
    local.index_copy_(0, nodes, torch::arange(nodes.size(0), ints));
    torch::Tensor edges = torch::stack({edge_index[0].slice(0, c.e0, c.e1) - c.r0, local.index_select(0, senders)});
    return {nodes, edges};
  }

  static std::vector<torch::Tensor> select(const std::vector<torch::Tensor> &blocks, const torch::Tensor &rows)
  {
    std::vector<torch::Tensor> out;
    for (const auto &x : blocks) out.push_back(x.index_select(0, rows));
    return out;
  }

  int layers;
  std::unique_ptr<Loader> vectors, outputs;
  std::vector<std::unique_ptr<Loader>> updates, backwards;
};

}    // namespace ictp

#endif
