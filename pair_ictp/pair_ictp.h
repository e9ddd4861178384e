/* pair_style ictp: ICTP machine-learned interatomic potentials through libtorch.
 *
 * Part of ictp. This directory is a LAMMPS plugin and, as LAMMPS is GPL-2.0, is distributed under
 * the GNU General Public License version 2 (see pair_ictp/LICENSE).
 */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(ictp,PairICTP);
// clang-format on
#else

#ifndef LMP_PAIR_ICTP_H
#define LMP_PAIR_ICTP_H

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include "pair.h"

#include "compiled_chunks.h"
#include "graph_builder.h"

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairICTP : public Pair {
 public:
  PairICTP(class LAMMPS *);
  ~PairICTP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  double memory_usage() override;

 protected:
  void allocate();
  struct Results {    // the interface's outputs (ictp_export/lammps_model.py), float64
    torch::Tensor energy, node_energy, forces, virial, atom_virial;
  };
  void load_model(const std::string &path);
  void load_compiled(const std::string &path);          // an AOTInductor package (.pt2)
  void select_device();
  void default_gpu_budget();                            // memory_mb from the GPU's size
  void build_graph();                                   // graph from the neighbour list
  Results evaluate_model(bool want_virial);
  Results run_compiled(const std::vector<torch::Tensor> &inputs);
  Results run_chunked(const std::vector<torch::Tensor> &inputs, int64_t max_edges);    // bounded memory
  void add_results(const Results &out);                 // forces, energies, virials

  torch::jit::Module model;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;    // set for a .pt2
  std::unique_ptr<ictp::CompiledChunks> chunked;    // a .pt2's bounded-memory evaluation
  bool model_loaded = false;
  torch::Device device = torch::kCPU;
  bool want_cuda = false;
  int ranks_on_gpu = 1;            // ranks of this node that share this rank's GPU
  bool keep_memory = true;    // allocator keep: glibc keeps freed memory (CPU only)
  double cutoff = 0.0;
  int num_layers = 0;
  std::vector<std::string> model_elements;
  std::vector<long> type_to_species;    // LAMMPS type -> index into model_elements
  int format_version = 0;
  double memory_mb = 0.0;          // the model's working-memory budget per evaluation; 0: its default
  double bytes_per_edge = 0.0;       // the model's working memory per edge (format 2; 0: not known)
  double default_memory_mb = 0.0;    // the model's budget when memory is not given
  double model_working_bytes = 0.0;  // the model's estimate of its working set at the last step
  bool told_chunks = false;          // the log said that the evaluation runs in chunks
  bool raised_cutghost = false;      // init_style raised comm->cutghostuser from cutghost_before
  double cutghost_before = 0.0, raised_cutghost_to = 0.0;

  // buffers kept between steps (they grow when needed): the graph and the model's inputs
  ictp::GraphBuilder graph;
  std::vector<int64_t> edge_buffer, species_buffer;
  std::vector<double> position_buffer;
};

}    // namespace LAMMPS_NS

#endif
#endif
